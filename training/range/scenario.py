"""Scenario files: the site, its benign behaviour and the attack schedule, in YAML.

A scenario is one YAML mapping (see ``training/range/scenarios/site_a.yaml``)::

    site: site_a                 # site id written into labeled windows
    seed: 11                     # seeds benign jitter, payload padding, wordlists
    subnet: 10.77.1.0/24         # private IPv4 subnet; the gateway is host .1
    warmup_s: 20                 # benign-only time before the first attack may start
    duration_s: 200              # total recording time, seconds
    devices:
      - name: thermostat-1       # [a-z0-9-], unique
        host: 21                 # optional host number in the subnet (default: 10, 11, ...)
        telemetry: {period_s: 5, jitter_s: 1, payload_bytes: 60, topic: home/thermostat-1/temp}
        subscribe: [home/thermostat-1/cmd]      # long-lived MQTT subscriptions
        coap_server: true        # libcoap coap-server on udp/5683
        http_ui: false           # python -m http.server on tcp/8080
        ssh_server: false        # OpenSSH sshd on tcp/22 (password auth, no valid account)
        dns: {period_s: 30, names: [time.iot.lan]}
        poll: {period_s: 8, coap: [thermostat-1], http: [camera-1]}   # client polls of other devices
        commands: {period_s: 20, topics: [home/thermostat-1/cmd]}     # MQTT publishes to other devices
    attacker: {host: 66}
    attacks:
      - {technique: nmap_syn_scan, target: subnet, start_s: 25, duration_s: 15, intensity: 1.0}

A file may start with ``extends: site_a``: the keys of that scenario file (beside it) are taken, and
the keys given here replace them whole (e.g. the same devices with another ``seed`` and ``attacks``).

Benign network services (all optional; real daemons, see ``training/range/README.md``)::

    dhcp: {lease_s: 120}         # site: dnsmasq DHCP lease time, s (120..86400; dnsmasq's floor is 120 s)
    ipv6: {prefix: 'fd4d:4c01:7701::/64', ra_interval_s: 30}   # site: ULA prefix announced by the gateway
                                 # (dnsmasq router advertisements, router lifetime 0: never a default router)
    cloud: {host: 250}           # site: host number of the "cloud" namespace (TLS endpoint, names *.cloud.lan);
                                 # default: the highest free host number, created only when a device uses tls
    devices:
      - name: camera-1
        dhcp: true               # address from the gateway's DHCP server (busybox udhcpc: DISCOVER/REQUEST at
                                 # start, renewals every lease_s / 2); the lease is bound to the device's host
        ntp: {period_s: 64}      # chronyd -Q against the gateway's chronyd (queries only, never sets a clock)
        mdns:                    # avahi-daemon (no D-Bus, private mount namespace) publishing DNS-SD services
          publish: ['_http._tcp:8080', '_rtsp._tcp:554']   # DNS-SD type:port (type _name._tcp or _name._udp)
          resolve: [hub]         # devices (with mdns) whose <name>.local the device looks up (nss-mdns)
          period_s: 30           # lookup period, s
        ssdp: {announce: true, notify_interval_s: 60, search_period_s: 90}
                                 # announce: minidlnad UPnP server (NOTIFY, M-SEARCH answers, description on
                                 # tcp/8200); search_period_s: M-SEARCH + description fetch (training.range.ssdp)
        tls: {period_s: 45, protocol: https, payload_bytes: 1500}   # or a list; protocol https (curl GET of a
                                 # payload_bytes file from openssl s_server) or mqtts (mosquitto_pub, tcp/8883;
                                 # above 16,384 bytes a bulk upload of random bytes, e.g. a camera's clip);
                                 # start_s: first session that many seconds after the start (quiet before)
        ipv6: {ping: [gateway, hub], period_s: 20}   # or `true`: IPv6 on eth0 (link-local, DAD, router
                                 # solicitations, MLD, SLAAC from the site prefix); ping6 of the named hosts
        join_s: 150              # a device set up late: every behaviour loop above (telemetry, DNS, NTP, TLS,
                                 # mDNS, polls, ...) starts that many seconds after the site, so its first
                                 # minute is one burst; its servers listen and its DHCP lease is taken from
                                 # the start
        telnet_server: true      # busybox telnetd on tcp/23 with a device login prompt (one site password)
        web_admin: true          # busybox httpd on tcp/80 behind HTTP basic auth (one site password)
        poll: {period_s: 8, telnet: [plc-1], admin: [router-ui]}   # also: telnet logins, admin-page fetches

``target`` is ``subnet``, ``gateway``, ``cloud`` (when the site has one), a device name, or an address
inside the subnet. An attack may set ``port`` (1..65535) and ``payload_bytes`` for techniques whose
command takes them (``marlids range techniques``). Every key is checked: an unknown key, an unknown
technique, a target that does not run the service a technique needs (``ssh``, ``http``, ``coap``,
``mqtt``, ``telnet``, ``admin``) or an attack outside ``[warmup_s, duration_s]`` raises ``ValueError``
naming the key, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.range.techniques import TECHNIQUES, get_technique

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_DNSSD_RE = re.compile(r"^_[a-z0-9][a-z0-9-]{0,14}\._(tcp|udp):([0-9]{1,5})$")
#: Services the gateway always runs.
GATEWAY_SERVICES = ("mqtt", "dns")
#: Services of the cloud namespace (when the site has one).
CLOUD_SERVICES = ("https", "mqtts")
#: TLS session kinds of a device's ``tls`` entries.
TLS_PROTOCOLS = ("https", "mqtts")
#: dnsmasq's floor for a DHCP lease, seconds.
MIN_LEASE_S = 120
#: Largest ``mqtts`` payload sent inline (``mosquitto_pub -m``); larger ones are bulk uploads from a file.
INLINE_PAYLOAD_MAX = 16_384
#: Largest payload of an ``https`` session (a JSON file served by openssl s_server, fetched within curl's 8 s)
#: and of an ``mqtts`` one (a bulk upload), bytes.
TLS_PAYLOAD_MAX = {"https": 1_000_000, "mqtts": 20_000_000}


@dataclass(frozen=True)
class Telemetry:
    """Periodic MQTT publish: every ``period_s`` ± ``jitter_s`` seconds, ``payload_bytes`` ± 25 %."""

    period_s: float
    topic: str
    payload_bytes: int = 64
    jitter_s: float = 0.5
    qos: int = 0


@dataclass(frozen=True)
class DnsLookups:
    """Periodic DNS lookups of ``names`` against the gateway resolver."""

    period_s: float
    names: tuple[str, ...]


@dataclass(frozen=True)
class Poll:
    """Client polls of other devices, every ``period_s`` seconds (± 25 %).

    CoAP GET of each device in ``coap``, HTTP GET of each in ``http`` (tcp/8080), a telnet login and
    status command on each in ``telnet`` (tcp/23), an authenticated admin-page fetch from each in
    ``admin`` (HTTP basic auth, tcp/80).
    """

    period_s: float
    coap: tuple[str, ...] = ()
    http: tuple[str, ...] = ()
    telnet: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()


@dataclass(frozen=True)
class Commands:
    """Periodic MQTT publishes to ``topics`` (commands for other devices)."""

    period_s: float
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Ntp:
    """Periodic NTP queries of the gateway's chronyd (``chronyd -Q``: measure only), every ``period_s`` s."""

    period_s: float


@dataclass(frozen=True)
class Mdns:
    """mDNS/DNS-SD: avahi-daemon publishing ``publish`` ((type, port) pairs) and resolving ``resolve``.

    ``resolve`` names devices whose ``<name>.local`` address (and reverse name) is looked up every
    ``period_s`` seconds through nss-mdns (answered from avahi's cache while the records live).
    """

    publish: tuple[tuple[str, int], ...] = ()
    resolve: tuple[str, ...] = ()
    period_s: float = 30.0


@dataclass(frozen=True)
class Ssdp:
    """SSDP/UPnP: ``announce`` runs a UPnP media server (minidlnad, NOTIFY every ``notify_interval_s`` s);
    ``search_period_s`` (None: never) sends an M-SEARCH and fetches the answering descriptions."""

    announce: bool = False
    notify_interval_s: float = 60.0
    search_period_s: float | None = None


@dataclass(frozen=True)
class TlsSession:
    """Periodic TLS session to the cloud namespace: ``https`` (GET of ``payload_bytes``) or ``mqtts``
    (one PUBLISH of ``payload_bytes``), every ``period_s`` ± ``jitter_s`` seconds.

    An ``mqtts`` payload above :data:`INLINE_PAYLOAD_MAX` bytes is a bulk upload: random (incompressible)
    bytes of ``payload_bytes`` ± 25 % sent as one message, as a camera uploads a clip. ``start_s`` delays the
    first session to that many seconds after the device starts (default: within its first period), so a
    device can stay quiet through a site's grace period and upload later.
    """

    period_s: float
    protocol: str = "https"
    payload_bytes: int = 800
    jitter_s: float = 2.0
    start_s: float | None = None


@dataclass(frozen=True)
class Ipv6:
    """IPv6 on the device's link (link-local, DAD, RS, MLD, SLAAC); ``ping`` hosts every ``period_s`` s."""

    ping: tuple[str, ...] = ()
    period_s: float = 30.0


@dataclass(frozen=True)
class Device:
    """One benign device namespace."""

    name: str
    host: int
    telemetry: tuple[Telemetry, ...] = ()
    subscribe: tuple[str, ...] = ()
    coap_server: bool = False
    http_ui: bool = False
    ssh_server: bool = False
    telnet_server: bool = False
    web_admin: bool = False
    dns: DnsLookups | None = None
    poll: Poll | None = None
    commands: Commands | None = None
    dhcp: bool = False
    ntp: Ntp | None = None
    mdns: Mdns | None = None
    ssdp: Ssdp | None = None
    tls: tuple[TlsSession, ...] = ()
    ipv6: Ipv6 | None = None
    join_s: float | None = None

    @property
    def services(self) -> tuple[str, ...]:
        """Services this device serves (``coap``, ``http``, ``ssh``, ``telnet``, ``admin``, ``upnp``)."""
        return tuple(s for s, on in (("coap", self.coap_server), ("http", self.http_ui),
                                     ("ssh", self.ssh_server), ("telnet", self.telnet_server),
                                     ("admin", self.web_admin),
                                     ("upnp", bool(self.ssdp and self.ssdp.announce))) if on)


@dataclass(frozen=True)
class Attack:
    """One schedule entry: ``technique`` against ``target`` at ``start_s`` for ``duration_s``.

    ``port`` and ``payload_bytes`` override the technique's defaults (None: the default).
    """

    technique: str
    target: str
    start_s: float
    duration_s: float
    intensity: float = 1.0
    port: int | None = None
    payload_bytes: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario (see module docstring)."""

    site: str
    seed: int
    subnet: ipaddress.IPv4Network
    warmup_s: float
    duration_s: float
    devices: tuple[Device, ...]
    attacker_host: int
    attacks: tuple[Attack, ...] = field(default=())
    source: str = ""
    dhcp_lease_s: int = MIN_LEASE_S
    ipv6_prefix: ipaddress.IPv6Network | None = None
    ra_interval_s: float = 30.0
    cloud_host: int | None = None

    def ip(self, host: int) -> str:
        """Address of host number ``host`` in the subnet."""
        return str(self.subnet.network_address + host)

    @property
    def gateway_ip(self) -> str:
        """The gateway address (host 1)."""
        return self.ip(1)

    @property
    def attacker_ip(self) -> str:
        """The attacker address."""
        return self.ip(self.attacker_host)

    @property
    def cloud_ip(self) -> str | None:
        """Address of the cloud namespace, or None when the site has none."""
        return None if self.cloud_host is None else self.ip(self.cloud_host)

    @property
    def uses_dhcp(self) -> bool:
        """True when a device takes its address by DHCP (the gateway then serves DHCP)."""
        return any(d.dhcp for d in self.devices)

    @property
    def uses_ntp(self) -> bool:
        """True when a device queries NTP (the gateway then runs chronyd)."""
        return any(d.ntp for d in self.devices)

    @property
    def uses_ipv6(self) -> bool:
        """True when a device has IPv6 on (the gateway then has IPv6 on its link too)."""
        return any(d.ipv6 for d in self.devices)

    def device(self, name: str) -> Device:
        """The device called ``name``; ``KeyError`` if absent."""
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def resolve_target(self, target: str) -> tuple[str, tuple[str, ...]]:
        """Return ``(address or CIDR, services)`` for a schedule target.

        Raises
        ------
        ValueError
            When ``target`` is not ``subnet``, ``gateway``, ``cloud`` (if the site has one), a device
            name or an address of the site.
        """
        if target == "subnet":
            return str(self.subnet), ()
        if target == "gateway":
            return self.gateway_ip, GATEWAY_SERVICES
        if target == "cloud" and self.cloud_ip:
            return self.cloud_ip, CLOUD_SERVICES
        for d in self.devices:
            if target in (d.name, self.ip(d.host)):
                return self.ip(d.host), d.services
        if target == self.gateway_ip:
            return self.gateway_ip, GATEWAY_SERVICES
        if self.cloud_ip and target == self.cloud_ip:
            return self.cloud_ip, CLOUD_SERVICES
        raise ValueError(
            f"attack target={target!r}; allowed: 'subnet', 'gateway', {'cloud, ' if self.cloud_ip else ''}"
            f"a device name ({', '.join(d.name for d in self.devices)}) or one of their addresses"
        )


def _check_keys(where: str, d: Any, allowed: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping, got {type(d).__name__}: {d!r}")
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - set(d)
    if missing:
        raise ValueError(f"{where}: missing required key(s) {sorted(missing)}")
    return d


def _pos(where: str, value: Any, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}={value!r}; expected a number")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r}; expected a number") from None
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{where}={value!r}; expected {'>= 0' if allow_zero else '> 0'}")
    return v


def _int_in(where: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{where}={value!r}; expected an integer in {lo}..{hi}")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{where}={value!r}; expected an integer in {lo}..{hi}")
    return int(value)


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}={value!r}; expected true or false")
    return value


def _strs(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}={value!r}; expected a list of non-empty strings")
    return tuple(value)


def _opt_strs(where: str, d: dict, key: str) -> tuple[str, ...]:
    return _strs(f"{where}.{key}", d[key]) if d.get(key) else ()


def _list_of_maps(where: str, raw: Any) -> list:
    raw = [raw] if isinstance(raw, dict) else raw
    if not isinstance(raw, list):
        raise ValueError(f"{where}={raw!r}; expected a mapping or a list of mappings")
    return raw


def _mdns(where: str, raw: Any) -> Mdns:
    _check_keys(where, raw, {"publish", "resolve", "period_s"})
    publish = []
    for j, item in enumerate(_opt_strs(where, raw, "publish")):
        m = _DNSSD_RE.match(item)
        if not m or not 1 <= int(m.group(2)) <= 65535:
            raise ValueError(f"{where}.publish[{j}]={item!r}; expected a DNS-SD 'type:port' like "
                             "'_http._tcp:8080' (type _name._tcp or _name._udp, port 1..65535)")
        publish.append((item.rsplit(":", 1)[0], int(m.group(2))))
    return Mdns(tuple(publish), _opt_strs(where, raw, "resolve"), _pos(f"{where}.period_s", raw.get("period_s", 30)))


def _ssdp(where: str, raw: Any) -> Ssdp:
    _check_keys(where, raw, {"announce", "notify_interval_s", "search_period_s"})
    announce = _bool(f"{where}.announce", raw.get("announce", False))
    notify = _pos(f"{where}.notify_interval_s", raw.get("notify_interval_s", 60))
    if notify < 10:
        raise ValueError(f"{where}.notify_interval_s={raw['notify_interval_s']!r}; expected >= 10")
    search = raw.get("search_period_s")
    search = None if search is None else _pos(f"{where}.search_period_s", search)
    if not announce and search is None:
        raise ValueError(f"{where}={raw!r}; expected announce: true and/or search_period_s")
    return Ssdp(announce, notify, search)


def _tls(where: str, raw: Any) -> tuple[TlsSession, ...]:
    out = []
    for j, t in enumerate(_list_of_maps(where, raw)):
        w = f"{where}[{j}]"
        _check_keys(w, t, {"period_s", "protocol", "payload_bytes", "jitter_s", "start_s"}, {"period_s"})
        proto = t.get("protocol", "https")
        if proto not in TLS_PROTOCOLS:
            raise ValueError(f"{w}.protocol={proto!r}; allowed: {', '.join(TLS_PROTOCOLS)}")
        out.append(TlsSession(_pos(f"{w}.period_s", t["period_s"]), proto,
                              _int_in(f"{w}.payload_bytes", t.get("payload_bytes", 800), 1, TLS_PAYLOAD_MAX[proto]),
                              _pos(f"{w}.jitter_s", t.get("jitter_s", 2.0), allow_zero=True),
                              _pos(f"{w}.start_s", t["start_s"], allow_zero=True) if "start_s" in t else None))
    return tuple(out)


def _ipv6(where: str, raw: Any) -> Ipv6 | None:
    if isinstance(raw, bool):
        return Ipv6() if raw else None
    _check_keys(where, raw, {"ping", "period_s"})
    return Ipv6(_opt_strs(where, raw, "ping"), _pos(f"{where}.period_s", raw.get("period_s", 30)))


_DEVICE_KEYS = {"name", "host", "telemetry", "subscribe", "coap_server", "http_ui", "ssh_server", "telnet_server",
                "web_admin", "dns", "poll", "commands", "dhcp", "ntp", "mdns", "ssdp", "tls", "ipv6", "join_s"}


def _device(i: int, d: Any, default_host: int) -> Device:
    where = f"devices[{i}]"
    _check_keys(where, d, _DEVICE_KEYS, {"name"})
    name = d["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{where}.name={name!r}; expected [a-z0-9-], at most 32 characters")
    tel = []
    for j, t in enumerate(_list_of_maps(f"{where}.telemetry", d.get("telemetry", []))):
        w = f"{where}.telemetry[{j}]"
        _check_keys(w, t, {"period_s", "topic", "payload_bytes", "jitter_s", "qos"}, {"period_s", "topic"})
        qos = t.get("qos", 0)
        if qos not in (0, 1, 2) or isinstance(qos, bool):
            raise ValueError(f"{w}.qos={qos!r}; allowed: 0, 1, 2")
        tel.append(Telemetry(period_s=_pos(f"{w}.period_s", t["period_s"]), topic=str(t["topic"]),
                             payload_bytes=int(_pos(f"{w}.payload_bytes", t.get("payload_bytes", 64))),
                             jitter_s=_pos(f"{w}.jitter_s", t.get("jitter_s", 0.5), allow_zero=True),
                             qos=int(qos)))
    dns = None
    if "dns" in d:
        _check_keys(f"{where}.dns", d["dns"], {"period_s", "names"}, {"period_s", "names"})
        dns = DnsLookups(_pos(f"{where}.dns.period_s", d["dns"]["period_s"]),
                         _strs(f"{where}.dns.names", d["dns"]["names"]))
    poll = None
    if "poll" in d:
        w = f"{where}.poll"
        _check_keys(w, d["poll"], {"period_s", "coap", "http", "telnet", "admin"}, {"period_s"})
        poll = Poll(_pos(f"{w}.period_s", d["poll"]["period_s"]),
                    *(_opt_strs(w, d["poll"], k) for k in ("coap", "http", "telnet", "admin")))
    commands = None
    if "commands" in d:
        _check_keys(f"{where}.commands", d["commands"], {"period_s", "topics"}, {"period_s", "topics"})
        commands = Commands(_pos(f"{where}.commands.period_s", d["commands"]["period_s"]),
                            _strs(f"{where}.commands.topics", d["commands"]["topics"]))
    ntp = None
    if "ntp" in d:
        _check_keys(f"{where}.ntp", d["ntp"], {"period_s"}, {"period_s"})
        ntp = Ntp(_pos(f"{where}.ntp.period_s", d["ntp"]["period_s"]))
        if ntp.period_s < 4:
            raise ValueError(f"{where}.ntp.period_s={d['ntp']['period_s']!r}; expected >= 4 (one query takes ~2 s)")
    flags = {k: _bool(f"{where}.{k}", d.get(k, False))
             for k in ("coap_server", "http_ui", "ssh_server", "telnet_server", "web_admin", "dhcp")}
    host = d.get("host", default_host)
    if isinstance(host, bool) or not isinstance(host, int):
        raise ValueError(f"{where}.host={host!r}; expected an integer host number")
    return Device(name=name, host=host, telemetry=tuple(tel),
                  subscribe=_strs(f"{where}.subscribe", d["subscribe"]) if d.get("subscribe") else (),
                  dns=dns, poll=poll, commands=commands, ntp=ntp,
                  mdns=_mdns(f"{where}.mdns", d["mdns"]) if "mdns" in d else None,
                  ssdp=_ssdp(f"{where}.ssdp", d["ssdp"]) if "ssdp" in d else None,
                  tls=_tls(f"{where}.tls", d["tls"]) if "tls" in d else (),
                  ipv6=_ipv6(f"{where}.ipv6", d["ipv6"]) if "ipv6" in d else None,
                  join_s=_pos(f"{where}.join_s", d["join_s"]) if "join_s" in d else None,
                  **flags)


def _check_peers(devices: tuple[Device, ...]) -> None:
    """Cross-device references: polls, mDNS look-ups and ping6 targets must name suitable devices."""
    by_name = {d.name: d for d in devices}
    names = list(by_name)
    for d in devices:
        refs = []  # (key, named device, what it needs, message when it lacks it)
        if d.poll:
            for svc, lst, flag in (("coap", d.poll.coap, "coap_server"), ("http", d.poll.http, "http_ui"),
                                   ("telnet", d.poll.telnet, "telnet_server"), ("admin", d.poll.admin, "web_admin")):
                refs += [(f"poll.{svc}", n, lambda x, f=flag: getattr(x, f),
                          f"polls {svc} on {n!r}, which has {flag}: false") for n in lst]
        if d.mdns:
            refs += [("mdns.resolve", n, lambda x: x.mdns, f"mdns.resolve names {n!r}, which has no mdns")
                     for n in d.mdns.resolve]
        if d.ipv6:
            refs += [("ipv6.ping", n, lambda x: x.ipv6, f"ipv6.ping names {n!r}, which has no ipv6")
                     for n in d.ipv6.ping if n != "gateway"]
        for key, n, ok, msg in refs:
            if n not in by_name:
                extra = " or 'gateway'" if key == "ipv6.ping" else ""
                raise ValueError(f"device {d.name!r} {key} names {n!r}; allowed: {names}{extra}")
            if not ok(by_name[n]):
                raise ValueError(f"device {d.name!r} {msg}")


def parse_scenario(raw: Any, *, source: str = "<dict>") -> Scenario:
    """Validate a scenario mapping (as loaded from YAML) and build a :class:`Scenario`.

    Raises
    ------
    ValueError
        On any invalid key or value; the message names the key path, the value and what is allowed.
    """
    _check_keys("scenario", raw, {"site", "seed", "subnet", "warmup_s", "duration_s", "devices",
                                  "attacker", "attacks", "description", "dhcp", "ipv6", "cloud"},
                {"site", "seed", "subnet", "duration_s", "devices"})
    site = raw["site"]
    if not isinstance(site, str) or not _NAME_RE.match(site.replace("_", "-")):
        raise ValueError(f"site={site!r}; expected [a-z0-9_-], at most 32 characters")
    try:
        seed = int(raw["seed"])
    except (TypeError, ValueError):
        raise ValueError(f"seed={raw['seed']!r}; expected an integer") from None
    try:
        subnet = ipaddress.IPv4Network(str(raw["subnet"]), strict=True)
    except ValueError as exc:
        raise ValueError(f"subnet={raw['subnet']!r}; expected an IPv4 network like 10.77.1.0/24 ({exc})") from None
    if not subnet.is_private or not 16 <= subnet.prefixlen <= 28:
        raise ValueError(f"subnet={str(subnet)!r}; expected a private IPv4 network with prefix /16 to /28")
    duration = _pos("duration_s", raw["duration_s"])
    warmup = _pos("warmup_s", raw.get("warmup_s", 10), allow_zero=True)
    if warmup >= duration:
        raise ValueError(f"warmup_s={warmup!r}; expected < duration_s={duration!r}")
    devs_raw = raw["devices"]
    if not isinstance(devs_raw, list) or not devs_raw:
        raise ValueError(f"devices={devs_raw!r}; expected a non-empty list of device mappings")
    devices = tuple(_device(i, d, 10 + i) for i, d in enumerate(devs_raw))
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ValueError(f"device names must be unique; got {names}")
    _check_peers(devices)
    for i, d in enumerate(devices):
        if d.join_s is not None and d.join_s >= duration:
            raise ValueError(f"devices[{i}].join_s={d.join_s:g} must be below duration_s={duration:g} "
                             f"({d.name!r} would never join the recording)")
    att = _check_keys("attacker", raw.get("attacker", {}), {"host"})
    attacker_host = int(att.get("host", 200))
    max_host = subnet.num_addresses - 2
    hosts: dict[int, str] = {1: "gateway"}
    for name, h in [(d.name, d.host) for d in devices] + [("attacker", attacker_host)]:
        if not 2 <= h <= max_host:
            raise ValueError(f"host={h!r} of {name!r}; allowed 2..{max_host} in {subnet}")
        if h in hosts:
            raise ValueError(f"host={h!r} of {name!r} already used by {hosts[h]!r}")
        hosts[h] = name
    # site-level services
    dhcp = _check_keys("dhcp", raw.get("dhcp") or {}, {"lease_s"})
    lease = _pos("dhcp.lease_s", dhcp.get("lease_s", MIN_LEASE_S))
    if not MIN_LEASE_S <= lease <= 86400 or int(lease) != lease:
        raise ValueError(f"dhcp.lease_s={dhcp.get('lease_s')!r}; expected an integer in {MIN_LEASE_S}..86400 "
                         f"(dnsmasq never leases for less than {MIN_LEASE_S} s)")
    v6 = _check_keys("ipv6", raw.get("ipv6") or {}, {"prefix", "ra_interval_s"})
    prefix = None
    if "prefix" in v6:
        try:
            prefix = ipaddress.IPv6Network(str(v6["prefix"]), strict=True)
        except ValueError as exc:
            raise ValueError(f"ipv6.prefix={v6['prefix']!r}; expected a ULA /64 like fd4d:4c01:7701::/64 ({exc})") from None
        if prefix.prefixlen != 64 or not prefix.subnet_of(ipaddress.IPv6Network("fc00::/7")):
            raise ValueError(f"ipv6.prefix={v6['prefix']!r}; expected a unique-local (fc00::/7) /64 prefix")
        if not any(d.ipv6 for d in devices):
            raise ValueError("ipv6.prefix is set but no device has ipv6; add `ipv6: true` to a device")
    ra_interval = _pos("ipv6.ra_interval_s", v6.get("ra_interval_s", 30))
    if not 4 <= ra_interval <= 1800:
        raise ValueError(f"ipv6.ra_interval_s={v6['ra_interval_s']!r}; expected 4..1800")
    cloud = _check_keys("cloud", raw.get("cloud") or {}, {"host"})
    cloud_host = None
    if any(d.tls for d in devices) or "host" in cloud:
        cloud_host = cloud.get("host")
        if cloud_host is None:
            cloud_host = max(h for h in range(2, max_host + 1) if h not in hosts)
        if isinstance(cloud_host, bool) or not isinstance(cloud_host, int) or not 2 <= cloud_host <= max_host:
            raise ValueError(f"cloud.host={cloud_host!r}; allowed 2..{max_host} in {subnet}")
        if cloud_host in hosts:
            raise ValueError(f"cloud.host={cloud_host!r} already used by {hosts[cloud_host]!r}")
    scen = Scenario(site=site, seed=seed, subnet=subnet, warmup_s=warmup, duration_s=duration,
                    devices=devices, attacker_host=attacker_host, source=source, dhcp_lease_s=int(lease),
                    ipv6_prefix=prefix, ra_interval_s=ra_interval, cloud_host=cloud_host)
    attacks = []
    atk_raw = raw.get("attacks") or []
    if not isinstance(atk_raw, list):
        raise ValueError(f"attacks={atk_raw!r}; expected a list of mappings")
    for i, a in enumerate(atk_raw):
        w = f"attacks[{i}]"
        _check_keys(w, a, {"technique", "target", "start_s", "duration_s", "intensity", "port", "payload_bytes"},
                    {"technique", "target", "start_s"})
        try:
            tech = get_technique(a["technique"])
        except ValueError as exc:
            raise ValueError(f"{w}.technique: {exc}") from None
        target = str(a["target"])
        try:
            addr, services = scen.resolve_target(target)
        except ValueError as exc:
            raise ValueError(f"{w}.{exc}") from None
        if "/" in addr and tech.target != "subnet":
            raise ValueError(f"{w}.target={target!r}: {tech.name} needs one host, not a subnet")
        if tech.service and tech.service not in services:
            raise ValueError(f"{w}.target={target!r}: {tech.name} needs a target running "
                             f"{tech.service!r}; it runs {list(services) or 'nothing'}")
        if tech.name == "arp_spoof" and addr in (scen.gateway_ip, scen.cloud_ip):
            raise ValueError(f"{w}.target={target!r}: arp_spoof impersonates the gateway; target a device")
        port = data = None
        if "port" in a:
            if "{port}" not in tech.command:
                raise ValueError(f"{w}.port: {tech.name} takes no port; techniques with one: "
                                 f"{', '.join(n for n, t in TECHNIQUES.items() if '{port}' in t.command)}")
            port = _int_in(f"{w}.port", a["port"], 1, 65535)
        if "payload_bytes" in a:
            if "{data}" not in tech.command:
                raise ValueError(f"{w}.payload_bytes: {tech.name} takes no payload size; techniques with one: "
                                 f"{', '.join(n for n, t in TECHNIQUES.items() if '{data}' in t.command)}")
            data = _int_in(f"{w}.payload_bytes", a["payload_bytes"], 0, 1400)
        start = _pos(f"{w}.start_s", a["start_s"], allow_zero=True)
        dur = _pos(f"{w}.duration_s", a.get("duration_s", tech.default_duration_s))
        intensity = _pos(f"{w}.intensity", a.get("intensity", 1.0))
        if start < warmup or start + dur > duration:
            raise ValueError(f"{w}: start_s={start} duration_s={dur} must lie within "
                             f"[warmup_s={warmup}, duration_s={duration}]")
        attacks.append(Attack(tech.name, target, start, dur, intensity, port, data))
    return Scenario(**{**scen.__dict__, "attacks": tuple(sorted(attacks, key=lambda x: x.start_s))})


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a YAML scenario file.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the YAML is malformed or a key/value is invalid (see :func:`parse_scenario`).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        bundled = Path(__file__).parent / "scenarios" / f"{path.name.removesuffix('.yaml')}.yaml"
        if bundled.is_file():
            path = bundled
        else:
            raise FileNotFoundError(
                f"scenario {str(path)!r} does not exist (bundled: "
                f"{', '.join(p.stem for p in sorted(bundled.parent.glob('*.yaml')))})")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"scenario {str(path)!r} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and "extends" in raw:
        base_name = raw.pop("extends")
        base_path = path.parent / f"{str(base_name).removesuffix('.yaml')}.yaml"
        if not isinstance(base_name, str) or not base_path.is_file() or base_path.resolve() == path.resolve():
            raise ValueError(f"scenario {path.name}: extends={base_name!r}; expected the name of another "
                             f"scenario file beside it ({', '.join(p.stem for p in sorted(path.parent.glob('*.yaml')))})")
        base = yaml.safe_load(base_path.read_text())
        if isinstance(base, dict) and "extends" in base:
            raise ValueError(f"scenario {path.name}: extends={base_name!r}, which itself extends another; "
                             "one level only")
        raw = {**base, **raw}
    try:
        return parse_scenario(raw, source=str(path))
    except ValueError as exc:
        raise ValueError(f"scenario {path.name}: {exc}") from None


__all__ = [
    "TECHNIQUES",
    "Attack",
    "Commands",
    "Device",
    "DnsLookups",
    "Ipv6",
    "Mdns",
    "Ntp",
    "Poll",
    "Scenario",
    "Ssdp",
    "Telemetry",
    "TlsSession",
    "load_scenario",
    "parse_scenario",
]
