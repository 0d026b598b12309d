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

``target`` is ``subnet``, ``gateway``, a device name, or an address inside the subnet. Every key is
checked: an unknown key, an unknown technique, a target that does not run the service a technique
needs (``ssh``, ``http``, ``coap``, ``mqtt``) or an attack outside ``[warmup_s, duration_s]`` raises
``ValueError`` naming the key, the value and what is allowed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.range.techniques import TECHNIQUES, get_technique

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
#: Services the gateway always runs.
GATEWAY_SERVICES = ("mqtt", "dns")


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
    """Client polls: CoAP GET of each device in ``coap``, HTTP GET of each device in ``http``."""

    period_s: float
    coap: tuple[str, ...] = ()
    http: tuple[str, ...] = ()


@dataclass(frozen=True)
class Commands:
    """Periodic MQTT publishes to ``topics`` (commands for other devices)."""

    period_s: float
    topics: tuple[str, ...]


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
    dns: DnsLookups | None = None
    poll: Poll | None = None
    commands: Commands | None = None

    @property
    def services(self) -> tuple[str, ...]:
        """Services this device serves (``coap``, ``http``, ``ssh``)."""
        return tuple(s for s, on in (("coap", self.coap_server), ("http", self.http_ui),
                                     ("ssh", self.ssh_server)) if on)


@dataclass(frozen=True)
class Attack:
    """One schedule entry: ``technique`` against ``target`` at ``start_s`` for ``duration_s``."""

    technique: str
    target: str
    start_s: float
    duration_s: float
    intensity: float = 1.0


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
            When ``target`` is not ``subnet``, ``gateway``, a device name or an address of the site.
        """
        if target == "subnet":
            return str(self.subnet), ()
        if target == "gateway":
            return self.gateway_ip, GATEWAY_SERVICES
        for d in self.devices:
            if target in (d.name, self.ip(d.host)):
                return self.ip(d.host), d.services
        if target == self.gateway_ip:
            return self.gateway_ip, GATEWAY_SERVICES
        raise ValueError(
            f"attack target={target!r}; allowed: 'subnet', 'gateway', a device name "
            f"({', '.join(d.name for d in self.devices)}) or one of their addresses"
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
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}={value!r}; expected a number") from None
    if v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{where}={value!r}; expected {'>= 0' if allow_zero else '> 0'}")
    return v


def _strs(where: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}={value!r}; expected a list of non-empty strings")
    return tuple(value)


def _device(i: int, d: Any, default_host: int) -> Device:
    where = f"devices[{i}]"
    _check_keys(where, d, {"name", "host", "telemetry", "subscribe", "coap_server", "http_ui",
                           "ssh_server", "dns", "poll", "commands"}, {"name"})
    name = d["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"{where}.name={name!r}; expected [a-z0-9-], at most 32 characters")
    tel_raw = d.get("telemetry", [])
    tel_raw = [tel_raw] if isinstance(tel_raw, dict) else tel_raw
    if not isinstance(tel_raw, list):
        raise ValueError(f"{where}.telemetry={tel_raw!r}; expected a mapping or a list of mappings")
    tel = []
    for j, t in enumerate(tel_raw):
        w = f"{where}.telemetry[{j}]"
        _check_keys(w, t, {"period_s", "topic", "payload_bytes", "jitter_s", "qos"}, {"period_s", "topic"})
        qos = int(t.get("qos", 0))
        if qos not in (0, 1, 2):
            raise ValueError(f"{w}.qos={t.get('qos')!r}; allowed: 0, 1, 2")
        tel.append(Telemetry(period_s=_pos(f"{w}.period_s", t["period_s"]), topic=str(t["topic"]),
                             payload_bytes=int(_pos(f"{w}.payload_bytes", t.get("payload_bytes", 64))),
                             jitter_s=_pos(f"{w}.jitter_s", t.get("jitter_s", 0.5), allow_zero=True),
                             qos=qos))
    dns = None
    if "dns" in d:
        _check_keys(f"{where}.dns", d["dns"], {"period_s", "names"}, {"period_s", "names"})
        dns = DnsLookups(_pos(f"{where}.dns.period_s", d["dns"]["period_s"]),
                         _strs(f"{where}.dns.names", d["dns"]["names"]))
    poll = None
    if "poll" in d:
        _check_keys(f"{where}.poll", d["poll"], {"period_s", "coap", "http"}, {"period_s"})
        poll = Poll(_pos(f"{where}.poll.period_s", d["poll"]["period_s"]),
                    _strs(f"{where}.poll.coap", d["poll"].get("coap", [])) if d["poll"].get("coap") else (),
                    _strs(f"{where}.poll.http", d["poll"].get("http", [])) if d["poll"].get("http") else ())
    commands = None
    if "commands" in d:
        _check_keys(f"{where}.commands", d["commands"], {"period_s", "topics"}, {"period_s", "topics"})
        commands = Commands(_pos(f"{where}.commands.period_s", d["commands"]["period_s"]),
                            _strs(f"{where}.commands.topics", d["commands"]["topics"]))
    flags = {}
    for k in ("coap_server", "http_ui", "ssh_server"):
        v = d.get(k, False)
        if not isinstance(v, bool):
            raise ValueError(f"{where}.{k}={v!r}; expected true or false")
        flags[k] = v
    return Device(name=name, host=int(d.get("host", default_host)), telemetry=tuple(tel),
                  subscribe=_strs(f"{where}.subscribe", d["subscribe"]) if d.get("subscribe") else (),
                  dns=dns, poll=poll, commands=commands, **flags)


def parse_scenario(raw: Any, *, source: str = "<dict>") -> Scenario:
    """Validate a scenario mapping (as loaded from YAML) and build a :class:`Scenario`.

    Raises
    ------
    ValueError
        On any invalid key or value; the message names the key path, the value and what is allowed.
    """
    _check_keys("scenario", raw, {"site", "seed", "subnet", "warmup_s", "duration_s", "devices",
                                  "attacker", "attacks", "description"},
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
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ValueError(f"device names must be unique; got {names}")
    by_name = {d.name: d for d in devices}
    for d in devices:
        if d.poll:
            for svc, lst, flag in (("coap", d.poll.coap, "coap_server"), ("http", d.poll.http, "http_ui")):
                for n in lst:
                    if n not in by_name:
                        raise ValueError(f"device {d.name!r} poll.{svc} names {n!r}; allowed: {names}")
                    if not getattr(by_name[n], flag):
                        raise ValueError(f"device {d.name!r} polls {svc} on {n!r}, which has {flag}: false")
    scen = Scenario(site=site, seed=seed, subnet=subnet, warmup_s=warmup, duration_s=duration,
                    devices=devices, attacker_host=attacker_host, source=source)
    attacks = []
    atk_raw = raw.get("attacks") or []
    if not isinstance(atk_raw, list):
        raise ValueError(f"attacks={atk_raw!r}; expected a list of mappings")
    for i, a in enumerate(atk_raw):
        w = f"attacks[{i}]"
        _check_keys(w, a, {"technique", "target", "start_s", "duration_s", "intensity"},
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
        if tech.name == "arp_spoof" and addr == scen.gateway_ip:
            raise ValueError(f"{w}.target='gateway': arp_spoof impersonates the gateway; target a device")
        start = _pos(f"{w}.start_s", a["start_s"], allow_zero=True)
        dur = _pos(f"{w}.duration_s", a.get("duration_s", tech.default_duration_s))
        intensity = _pos(f"{w}.intensity", a.get("intensity", 1.0))
        if start < warmup or start + dur > duration:
            raise ValueError(f"{w}: start_s={start} duration_s={dur} must lie within "
                             f"[warmup_s={warmup}, duration_s={duration}]")
        attacks.append(Attack(tech.name, target, start, dur, intensity))
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
    "Poll",
    "Scenario",
    "Telemetry",
    "load_scenario",
    "parse_scenario",
]
