"""``marlids range record``: build an isolated IoT site, run benign behaviour and attacks, capture.

Topology (all inside namespaces named ``mlr-<pid>-*``, nothing in the host namespace)::

    mlr-<pid>-br   bridge br0 (no address) ─── tcpdump -i br0 -w <site>.pcap
      ├─ p-gw    ── mlr-<pid>-gw    host .1   mosquitto (MQTT broker, tcp/1883), dnsmasq (DNS udp/53;
      │                                       DHCP udp/67 and IPv6 router advertisements when used),
      │                                       chronyd (NTP udp/123, local stratum, never sets a clock)
      ├─ p-cloud ── mlr-<pid>-cloud host .C   (when a device uses tls) "cloud": openssl s_server
      │                                       (HTTPS tcp/443), mosquitto (MQTTS tcp/8883), lab CA
      ├─ p-d0    ── mlr-<pid>-d0    host .N   benign device: telemetry, subscriptions, servers, polls,
      │                                       udhcpc, chronyd -Q, avahi-daemon, minidlnad, TLS, ping6
      ├─ ...
      └─ p-atk   ── mlr-<pid>-atk   attacker: technique library (nmap, hping3, hydra, ...)

Benign behaviour per device (from the scenario): MQTT telemetry (``mosquitto_pub``, one connection
per message, jittered period, varied payload size), long-lived MQTT subscriptions
(``mosquitto_sub``), libcoap ``coap-server``, ``python -m http.server`` device UI, OpenSSH ``sshd``,
DNS lookups (``busybox nslookup``) against dnsmasq on the gateway, CoAP (``coap-client``) and HTTP
(``curl``) polls of other devices, MQTT command publishes; when the scenario asks for them: DHCP
(``busybox udhcpc`` against dnsmasq, the address then comes from the lease), NTP queries (``chronyd
-Q``), mDNS/DNS-SD (``avahi-daemon`` without D-Bus in a private mount namespace, look-ups through
nss-mdns), SSDP (``minidlnad`` announcing, :mod:`training.range.ssdp` searching), TLS sessions to the
cloud namespace (``curl`` HTTPS, ``mosquitto_pub`` MQTTS), IPv6 neighbour discovery and ``ping6``,
telnet logins (``busybox telnetd`` / ``busybox telnet``) and basic-auth admin pages (``busybox httpd``).
All randomness (jitter, padding, phase, wordlists, passwords) comes from the scenario seed (bash
``RANDOM`` seeded per loop); only the lab's TLS keys are fresh random (``openssl``).

Attacks run in the attacker namespace at ``t0 + start_s`` under ``timeout``; ``start_ts``/``end_ts``
of the ground truth are ``time.time()`` just before and after each command.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.paths import REPO
from training.range.groundtruth import GroundTruthRow, write_ground_truth
from training.range.netns import Range
from training.range.scenario import INLINE_PAYLOAD_MAX, Attack, Device, Scenario
from training.range.techniques import TECHNIQUES

log = logging.getLogger(__name__)


#: Executables the range itself needs (services, benign clients, capture).
BASE_TOOLS = ("ip", "ss", "sysctl", "tcpdump", "timeout", "bash", "mosquitto", "mosquitto_pub", "mosquitto_sub",
              "dnsmasq", "busybox", "curl", "coap-server-notls", "coap-client-notls")
QUIET_FLAG = ".attacking"  # present in <work>/atk while an attack is (about to be) running
QUIET_MARGIN_S = 6.0  # > one 5 s window
DNS_NAMES = ("time.iot.lan", "broker.iot.lan", "api.cloud.lan", "updates.vendor.lan", "ntp.iot.lan")
ISOLATION_CHECK_S = 15.0  # period of the isolation re-check during a recording (IPv6 RAs arrive late)
#: busybox applets the range uses, by the device option that needs them.
BUSYBOX_APPLETS = {"telnet_server": "telnetd", "web_admin": "httpd", "dhcp": "udhcpc", "ipv6": "ping6"}


class RangeError(RuntimeError):
    """A recording could not start or run (not root, tool missing, service failed)."""


@dataclass
class RecordResult:
    """What :func:`record` produced."""

    pcap: Path
    ground_truth: Path
    rows: list[GroundTruthRow]
    duration_s: float
    pids: list[int] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    attack_logs: dict[str, str] = field(default_factory=dict)


def _busybox_applets() -> set[str]:
    out = subprocess.run(["busybox", "--list"], capture_output=True, text=True, check=False).stdout
    return set(out.split())


def missing_tools(scenario: Scenario | None = None) -> list[str]:
    """Executables (and busybox applets, as ``busybox <applet>``) needed but not available.

    Parameters
    ----------
    scenario : Scenario, optional
        Check only what this scenario uses; default every service and technique of the range.
    """
    devs = scenario.devices if scenario is not None else ()

    def uses(pred) -> bool:
        return scenario is None or any(pred(d) for d in devs)

    need = set(BASE_TOOLS)
    if uses(lambda d: d.ssh_server):
        need |= {"/usr/sbin/sshd", "ssh-keygen"}
    if uses(lambda d: d.ntp):
        need.add("chronyd")
    if uses(lambda d: d.mdns):
        need |= {"avahi-daemon", "unshare", "mount", "getent"}
    if uses(lambda d: d.ssdp and d.ssdp.announce):
        need.add("minidlnad")
    if uses(lambda d: d.tls):
        need.add("openssl")
    techs = TECHNIQUES.values() if scenario is None else [TECHNIQUES[a.technique] for a in scenario.attacks]
    need |= {t.tool for t in techs}
    miss = sorted(t for t in need if shutil.which(t) is None)
    if shutil.which("busybox"):
        have = _busybox_applets()
        miss += [f"busybox {a}" for k, a in sorted(BUSYBOX_APPLETS.items())
                 if uses(lambda d, k=k: getattr(d, k)) and a not in have]
    if uses(lambda d: d.mdns) and not Path("/etc/avahi/services").is_dir():
        miss.append("/etc/avahi/services (avahi-daemon)")
    nss_mdns = any(next(Path(root).glob("*/libnss_mdns4.so.2"), None) for root in ("/usr/lib", "/lib"))
    if uses(lambda d: d.mdns) and not nss_mdns:
        miss.append("libnss_mdns4 (libnss-mdns)")
    return miss


def check_can_record(scenario: Scenario | None = None) -> None:
    """Raise :class:`RangeError` when not root or when a tool is missing."""
    if os.geteuid() != 0:
        raise RangeError("`marlids range record` needs root (it creates network namespaces); run it with sudo")
    miss = missing_tools(scenario)
    if miss:
        raise RangeError(f"missing tools: {', '.join(miss)} (install the APT_PACKAGES of scripts/setup.sh; "
                         "busybox applets such as telnetd come with busybox-static)")


# ---- benign behaviour scripts -----------------------------------------------------------------

def _jsleep(period_s: float, jitter_s: float) -> str:
    base = max(50, int((period_s - jitter_s) * 1000))
    span = max(1, int(2 * jitter_s * 1000))
    return (f'jsleep() {{ local ms=$(( {base} + (RANDOM * 32768 + RANDOM) % {span} )); '
            'sleep "$((ms/1000)).$(printf %03d $((ms%1000)))"; }')


def _loop(seed: int, period_s: float, jitter_s: float, body: str, phase_s: float) -> str:
    return "\n".join([
        f"RANDOM={seed % 32768}",
        _jsleep(period_s, jitter_s),
        f"sleep {phase_s:.3f}",
        "i=0",
        "while true; do",
        "  i=$((i+1))",
        body,
        "  jsleep",
        "done",
    ])


def _telemetry_script(dev: Device, k: int, gw: str, seed: int, rng: random.Random) -> str:
    t = dev.telemetry[k]
    lo = max(8, int(t.payload_bytes * 0.75))
    span = max(1, int(t.payload_bytes * 0.5))
    pad = "x" * (lo + span + 8)
    body = (
        f'  n=$(( {lo} - 40 + RANDOM % {span} )); [ $n -lt 1 ] && n=1\n'
        f'  P={pad}\n'
        f'  msg=$(printf \'{{"dev":"%s","seq":%d,"v":%d.%d,"pad":"%s"}}\' {dev.name} $i '
        '$((RANDOM % 40)) $((RANDOM % 10)) "${P:0:$n}")\n'
        f'  mosquitto_pub -h {gw} -i {dev.name}-t{k} -t {shlex.quote(t.topic)} -q {t.qos} -m "$msg" '
        '>/dev/null 2>&1'
    )
    return _loop(seed, t.period_s, t.jitter_s, body, rng.uniform(0.2, min(t.period_s, 5.0)))


def _dns_script(names: tuple[str, ...], period_s: float, gw: str, seed: int, rng: random.Random,
                quiet_flag: Path | None = None) -> str:
    arr = " ".join(shlex.quote(n) for n in names)
    guard = f"[ -e {shlex.quote(str(quiet_flag))} ] || " if quiet_flag else ""
    body = (f"  N=({arr}); name=${{N[$((RANDOM % ${{#N[@]}}))]}}\n"
            f"  {guard}busybox nslookup \"$name\" {gw} >/dev/null 2>&1")
    return _loop(seed, period_s, period_s * 0.2, body, rng.uniform(0.5, min(period_s, 8.0)))


def _poll_script(dev: Device, scen: Scenario, seed: int, rng: random.Random) -> str:
    lines = []
    secret = shlex.quote(site_secret(scen))
    for n in dev.poll.coap:
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  if [ $((i % 5)) -eq 1 ]; then path=.well-known/core; else path=time; fi\n"
                     f"  coap-client-notls -m get -B 2 coap://{ip}/$path >/dev/null 2>&1")
    for n in dev.poll.http:
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  if [ $((i % 4)) -eq 1 ]; then path=; else path=status.json; fi\n"
                     f"  curl -s -m 3 -o /dev/null http://{ip}:8080/$path")
    for n in dev.poll.telnet:  # an operator console: log in, ask for the status, log out
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  ( sleep 1; echo admin; sleep 1; echo {secret}; sleep 1; echo status; sleep 1; echo exit; "
                     f"sleep 1 ) | timeout 12 busybox telnet {ip} 23 >/dev/null 2>&1")
    for n in dev.poll.admin:  # a browser: sometimes asks without credentials first (401, then basic auth)
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  if [ $((i % 3)) -eq 1 ]; then auth=--anyauth; else auth=--basic; fi\n"
                     f"  curl -s -m 3 $auth -u admin:{secret} -o /dev/null http://{ip}/status.html")
    return _loop(seed, dev.poll.period_s, dev.poll.period_s * 0.25, "\n".join(lines),
                 rng.uniform(0.5, min(dev.poll.period_s, 5.0)))


def _commands_script(dev: Device, gw: str, seed: int, rng: random.Random) -> str:
    arr = " ".join(shlex.quote(t) for t in dev.commands.topics)
    body = (f"  T=({arr}); topic=${{T[$((RANDOM % ${{#T[@]}}))]}}\n"
            f"  mosquitto_pub -h {gw} -i {dev.name}-cmd -t \"$topic\" -q 1 "
            "-m \"{\\\"cmd\\\":\\\"set\\\",\\\"value\\\":$((RANDOM % 100))}\" >/dev/null 2>&1")
    return _loop(seed, dev.commands.period_s, dev.commands.period_s * 0.25, body,
                 rng.uniform(1.0, min(dev.commands.period_s, 8.0)))


def _subscribe_script(dev: Device, gw: str) -> str:
    topics = " ".join(f"-t {shlex.quote(t)}" for t in dev.subscribe)
    return f"while true; do mosquitto_sub -h {gw} -i {dev.name}-sub -k 30 {topics} >/dev/null 2>&1; sleep 1; done"


def _ntp_script(dev: Device, gw: str, d: Path, seed: int, rng: random.Random) -> str:
    # chronyd -Q: measure the offset against the gateway and print it; never adjusts a clock
    body = (f"  chronyd -Q -t 8 -u root \"server {gw} iburst maxsamples $((1 + RANDOM % 3))\" \"cmdport 0\" "
            f"\"bindcmdaddress /\" \"pidfile {d}/chronyd-q.pid\" >/dev/null 2>&1")
    return _loop(seed, dev.ntp.period_s, dev.ntp.period_s * 0.1, body, rng.uniform(0.5, min(dev.ntp.period_s, 6.0)))


def _tls_script(dev: Device, k: int, scen: Scenario, ca: Path, seed: int, rng: random.Random, d: Path) -> str:
    t = dev.tls[k]
    gw, cloud = scen.gateway_ip, scen.cloud_ip
    phase = rng.uniform(0.5, min(t.period_s, 8.0))  # drawn even with start_s: the stream stays the same
    if t.start_s is not None:
        phase = t.start_s
    if t.protocol == "https":
        body = (f"  busybox nslookup api.cloud.lan {gw} >/dev/null 2>&1\n"
                f"  curl -s -m 8 --cacert {ca} --resolve api.cloud.lan:443:{cloud} -A {dev.name}/1.0 "
                f"-o /dev/null https://api.cloud.lan/v1/{dev.name}/{k}.json")
    elif t.payload_bytes > INLINE_PAYLOAD_MAX:  # bulk upload: a clip of random bytes, one message
        lo = int(t.payload_bytes * 0.75)
        span = max(1, int(t.payload_bytes * 0.5))
        clip = d / f"clip{k}.bin"
        body = (f"  busybox nslookup mqtt.cloud.lan {gw} >/dev/null 2>&1\n"
                f"  head -c $(( {lo} + (RANDOM * 32768 + RANDOM) % {span} )) /dev/urandom > {clip}\n"
                f"  mosquitto_pub --cafile {ca} -h {cloud} -p 8883 -i {dev.name}-tls{k} -t devices/{dev.name}/clip "
                f"-q 1 -f {clip} >/dev/null 2>&1\n"
                f"  rm -f {clip}")
    else:
        lo = max(8, int(t.payload_bytes * 0.75))
        span = max(1, int(t.payload_bytes * 0.5))
        body = (f"  busybox nslookup mqtt.cloud.lan {gw} >/dev/null 2>&1\n"
                f"  n=$(( {lo} - 30 + RANDOM % {span} )); [ $n -lt 1 ] && n=1\n"
                f"  P={'y' * (lo + span + 8)}\n"
                f"  mosquitto_pub --cafile {ca} -h {cloud} -p 8883 -i {dev.name}-tls{k} -t devices/{dev.name}/state "
                f"-q 1 -m \"{{\\\"seq\\\":$i,\\\"pad\\\":\\\"${{P:0:$n}}\\\"}}\" >/dev/null 2>&1")
    return _loop(seed, t.period_s, t.jitter_s, body, phase)


def _ssdp_search_script(dev: Device, ip: str, seed: int, rng: random.Random) -> str:
    period = dev.ssdp.search_period_s
    body = (f"  {shlex.quote(sys.executable)} -m training.range.ssdp --source {ip} --mx $((1 + RANDOM % 3)) "
            "--seed $RANDOM >/dev/null 2>&1")
    return (f"export PYTHONPATH={shlex.quote(str(REPO))}\n"
            + _loop(seed, period, period * 0.2, body, rng.uniform(1.0, min(period, 10.0))))


def eui64_address(prefix: str | ipaddress.IPv6Network, mac: str) -> str:
    """The SLAAC (modified EUI-64, RFC 4291 app. A) address of ``mac`` in the /64 ``prefix``.

    Examples
    --------
    >>> eui64_address("fe80::/64", "02:4d:4c:01:02:03")
    'fe80::4d:4cff:fe01:203'
    """
    b = [int(x, 16) for x in mac.split(":")]
    iid = bytes([b[0] ^ 0x02, b[1], b[2], 0xFF, 0xFE, b[3], b[4], b[5]])
    net = ipaddress.IPv6Network(prefix, strict=False)
    return str(net.network_address + int.from_bytes(iid, "big"))


def _v6_address(r: Range, scen: Scenario, name: str) -> str:
    """IPv6 address a device pings for ``name``: the ULA one with a site prefix, else link-local."""
    if name == "gateway":
        node = r.nodes["gw"]
        if scen.ipv6_prefix:
            return str(scen.ipv6_prefix.network_address + 1)
    else:
        node = r.nodes[f"d{[d.name for d in scen.devices].index(name)}"]
    return eui64_address(scen.ipv6_prefix or "fe80::/64", node.mac)


def _ipv6_script(dev: Device, r: Range, scen: Scenario, seed: int, rng: random.Random) -> str:
    addrs = " ".join(_v6_address(r, scen, n) for n in dev.ipv6.ping)
    body = (f"  for a in {addrs}; do busybox ping6 -I eth0 -c 2 -W 2 -w 4 $a >/dev/null 2>&1; done\n"
            "  if [ $((i % 4)) -eq 1 ]; then busybox ping6 -I eth0 -c 1 -W 1 -w 2 ff02::1 >/dev/null 2>&1; fi")
    return _loop(seed, dev.ipv6.period_s, dev.ipv6.period_s * 0.2, body, rng.uniform(1.0, min(dev.ipv6.period_s, 8.0)))


def _mdns_script(dev: Device, scen: Scenario, d: Path, seed: int, rng: random.Random) -> str:
    """avahi-daemon plus look-ups, run under ``unshare -m`` (mounts stay in that private namespace)."""
    names = " ".join(f"{n}.local" for n in dev.mdns.resolve) or f"{dev.name}.local"
    ips = " ".join(scen.ip(scen.device(n).host) for n in dev.mdns.resolve) or scen.ip(dev.host)
    prelude = "\n".join([
        "set -e",
        # avahi's pid file and socket live in /run/avahi-daemon, its services in /etc/avahi/services: both
        # global, so private tmpfs copies here; nss-mdns for getent through a private nsswitch.conf
        "mount --make-rprivate / 2>/dev/null || true",
        "mount -t tmpfs -o size=1m,mode=0755 marlids-run /run",
        "mkdir -p /run/avahi-daemon",
        "mount -t tmpfs -o size=1m,mode=0755 marlids-avahi /etc/avahi/services",
        f"cp {d}/avahi/*.service /etc/avahi/services/ 2>/dev/null || true",
        f"mount --bind {d}/avahi/nsswitch.conf /etc/nsswitch.conf",
        "set +e",
        (f"avahi-daemon -f {d}/avahi/avahi-daemon.conf --no-drop-root --no-chroot --no-proc-title --no-rlimits "
         f">>{d}/avahi.log 2>&1 &"),
        "for k in $(seq 50); do [ -S /run/avahi-daemon/socket ] && break; sleep 0.1; done",
    ])
    body = (f"  N=({names}); A=({ips}); k=$((RANDOM % ${{#N[@]}}))\n"
            "  getent hosts ${N[$k]} >/dev/null 2>&1\n"
            "  if [ $((i % 3)) -eq 2 ]; then getent hosts ${A[$k]} >/dev/null 2>&1; fi")
    return prelude + "\n" + _loop(seed, dev.mdns.period_s, dev.mdns.period_s * 0.3, body,
                                  rng.uniform(1.0, min(dev.mdns.period_s, 8.0)))


def site_secret(scen: Scenario) -> str:
    """The site's device password (telnet console, web admin); seeded, never in an attack wordlist."""
    rnd = random.Random(f"{scen.seed}-{scen.site}-secret")
    return "Lab-" + "".join(rnd.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(10))


# ---- services ---------------------------------------------------------------------------------

def _write(path: Path, text: str, mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mode is not None:
        path.chmod(mode)
    return path


def _wait_port(rng_: Range, ns: str, ip: str, port: int, udp: bool = False, timeout_s: float = 8.0) -> None:
    """Wait until something listens on ``ip:port`` inside ``ns`` (checked with ``ss``)."""
    deadline = time.monotonic() + timeout_s
    flag = "-uln" if udp else "-tln"
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-H", flag], capture_output=True, text=True,
                             check=False).stdout
        if any(f"{ip}:{port}" in ln or f"*:{port}" in ln or f"0.0.0.0:{port}" in ln or f"0.0.0.0%eth0:{port}" in ln
               for ln in out.splitlines()):
            return
        time.sleep(0.2)
    raise RangeError(f"service on {ip}:{port}/{'udp' if udp else 'tcp'} in {ns} did not come up within {timeout_s} s")


def _dnsmasq_args(r: Range, scen: Scenario, work: Path) -> list[str]:
    gw = scen.gateway_ip
    cloud = scen.cloud_ip or gw
    args = ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--no-poll", "--bind-interfaces", f"--listen-address={gw}", "--pid-file=",
            f"--address=/iot.lan/{gw}", f"--address=/cloud.lan/{cloud}",
            f"--address=/vendor.lan/{gw}", *[f"--host-record={d.name}.iot.lan,{scen.ip(d.host)}" for d in scen.devices],
            "--log-facility=-"]
    if scen.uses_dhcp or scen.ipv6_prefix:
        args.append("--interface=eth0")
    if scen.uses_dhcp:
        # static leases only (MAC -> the scenario's address); no router option: devices get no route
        args += [f"--dhcp-range={scen.subnet.network_address},static,{scen.subnet.netmask},{scen.dhcp_lease_s}",
                 "--dhcp-option=3", f"--dhcp-option=6,{gw}", "--dhcp-option=15,iot.lan",
                 f"--dhcp-leasefile={work / 'gw' / 'dnsmasq.leases'}", "--dhcp-authoritative", "--no-ping",
                 "--log-dhcp"]
        if scen.uses_ntp:
            args.append(f"--dhcp-option=42,{gw}")
        args += [f"--dhcp-host={r.nodes[f'd{i}'].mac},{scen.ip(d.host)},{d.name}"
                 for i, d in enumerate(scen.devices) if d.dhcp]
    if scen.ipv6_prefix:
        # router advertisements of the ULA prefix with router lifetime 0: hosts take SLAAC addresses,
        # never a default route
        interval = int(scen.ra_interval_s)
        args += ["--enable-ra", f"--dhcp-range=::,constructor:eth0,ra-only,64,{max(600, 3 * interval)}",
                 f"--ra-param=eth0,{interval},0"]
    return args


def _start_gateway(r: Range, scen: Scenario, work: Path) -> None:
    gw = r.nodes["gw"]
    conf = _write(work / "gw" / "mosquitto.conf",
                  f"listener 1883 {gw.ip}\nallow_anonymous true\npersistence false\n"
                  "log_dest stdout\nlog_type error\nlog_type warning\nmax_keepalive 120\n")
    r.popen(gw.ns, ["mosquitto", "-c", str(conf)], log_path=work / "gw" / "mosquitto.log")
    r.popen(gw.ns, _dnsmasq_args(r, scen, work), log_path=work / "gw" / "dnsmasq.log")
    if scen.uses_ntp:
        # chronyd serves its own clock (local stratum 8) and never adjusts it (-x)
        cconf = _write(work / "gw" / "chrony.conf",
                       f"local stratum 8\nallow {scen.subnet}\nbindaddress {gw.ip}\nport 123\ncmdport 0\n"
                       f"bindcmdaddress /\npidfile {work / 'gw' / 'chronyd.pid'}\n")
        r.popen(gw.ns, ["chronyd", "-d", "-x", "-u", "root", "-f", str(cconf)], log_path=work / "gw" / "chronyd.log")
    _wait_port(r, gw.ns, gw.ip, 1883)
    _wait_port(r, gw.ns, gw.ip, 53, udp=True)
    if scen.uses_dhcp:
        _wait_port(r, gw.ns, gw.ip, 67, udp=True)
    if scen.uses_ntp:
        _wait_port(r, gw.ns, gw.ip, 123, udp=True)


def _lab_pki(d: Path, cloud_ip: str) -> tuple[Path, Path, Path]:
    """A throw-away lab CA and the cloud's server certificate (EC P-256, 2 days); returns (ca, cert, key)."""
    d.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=marlids range lab CA",
         "-keyout", "ca.key", "-out", "ca.pem"],
        ["openssl", "req", *ec, "-subj", "/CN=api.cloud.lan", "-keyout", "server.key", "-out", "server.csr"],
        ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-days", "2", "-extfile", "ext.cnf", "-out", "server.pem"],
    ]
    _write(d / "ext.cnf", f"subjectAltName=DNS:api.cloud.lan,DNS:mqtt.cloud.lan,IP:{cloud_ip}\n"
                          "extendedKeyUsage=serverAuth\n")
    for argv in steps:
        res = subprocess.run(argv, cwd=d, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RangeError(f"lab certificate step `{' '.join(argv[:3])}` failed: {res.stderr.strip()[-300:]}")
    return d / "ca.pem", d / "server.pem", d / "server.key"


def _start_cloud(r: Range, scen: Scenario, work: Path) -> Path | None:
    """Start the cloud namespace's TLS services; return the lab CA certificate (None: no cloud)."""
    if scen.cloud_host is None:
        return None
    node = r.nodes["cloud"]
    d = work / "cloud"
    ca, cert, key = _lab_pki(d / "tls", node.ip)
    www = d / "www"
    for dev in scen.devices:
        for k, t in enumerate(dev.tls):
            if t.protocol == "https":
                rnd = random.Random(f"{scen.seed}-{dev.name}-tls{k}")
                head = f'{{"device":"{dev.name}","config":{k},"interval_s":{rnd.randint(10, 600)},"blob":"'
                pad = "".join(rnd.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(
                    max(0, t.payload_bytes - len(head) - 3)))
                _write(www / "v1" / dev.name / f"{k}.json", head + pad + '"}\n')
    _write(www / "index.html", "<html><body>api.cloud.lan</body></html>\n")
    r.popen(node.ns, ["openssl", "s_server", "-accept", f"{node.ip}:443", "-cert", str(cert), "-key", str(key),
                      "-WWW", "-quiet"], log_path=d / "s_server.log", cwd=www)
    conf = _write(d / "mosquitto.conf",
                  f"listener 8883 {node.ip}\nallow_anonymous true\npersistence false\nuser root\n"
                  f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
                  "log_dest stdout\nlog_type error\nlog_type warning\nmax_keepalive 120\n")
    r.popen(node.ns, ["mosquitto", "-c", str(conf)], log_path=d / "mosquitto.log")
    _wait_port(r, node.ns, node.ip, 443)
    _wait_port(r, node.ns, node.ip, 8883)
    return ca


def _start_dhcp_clients(r: Range, scen: Scenario, work: Path, timeout_s: float = 20.0) -> None:
    """Start busybox udhcpc on every DHCP device and wait until each holds its leased address."""
    waiting = {}
    for i, dev in enumerate(scen.devices):
        if not dev.dhcp:
            continue
        tag = f"d{i}"
        node = r.nodes[tag]
        script = _write(work / tag / "udhcpc.sh", "\n".join([
            "#!/bin/sh",
            f"# udhcpc event script of {dev.name}: configure the leased address only (no route, no resolver)",
            'case "$1" in',
            "  bound|renew)",
            f'    [ "$ip" = "{node.ip}" ] || {{ echo "lease $ip is not {node.ip}; ignored"; exit 1; }}',
            f'    ip addr replace "$ip/{scen.subnet.prefixlen}" dev "$interface" ;;',
            "esac",
            "exit 0",
        ]) + "\n", mode=0o755)
        r.popen(node.ns, ["busybox", "udhcpc", "-f", "-i", "eth0", "-s", str(script), "-r", node.ip,
                          "-x", f"hostname:{dev.name}", "-O", "ntpsrv", "-t", "5", "-T", "2", "-A", "3"],
                log_path=work / tag / "udhcpc.log")
        waiting[tag] = node
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for tag, node in list(waiting.items()):
            out = subprocess.run(["ip", "-n", node.ns, "-4", "-o", "addr", "show", "dev", "eth0"],
                                 capture_output=True, text=True, check=False).stdout
            if f"inet {node.ip}/" in out:
                del waiting[tag]
        time.sleep(0.2)
    if waiting:
        logs = {t: (work / t / "udhcpc.log").read_text(errors="replace")[-200:] for t in waiting}
        raise RangeError(f"DHCP lease not obtained within {timeout_s} s by {sorted(waiting)}: {logs}")


def _telnet_login(dev: Device, secret: str) -> str:
    return "\n".join([
        "#!/bin/bash",
        f"# console login of {dev.name} (marlids range): one account, admin and the site password",
        f"host={dev.name}",
        "for try in 1 2 3; do",
        "  printf '%s login: ' \"$host\"",
        "  IFS= read -r -t 60 user || exit 0; user=${user%$'\\r'}",
        "  printf 'Password: '",
        "  IFS= read -r -s -t 60 pw || exit 0; pw=${pw%$'\\r'}",
        "  printf '\\r\\n'",
        f"  if [ \"$user\" = admin ] && [ \"$pw\" = {shlex.quote(secret)} ]; then",
        "    printf '\\r\\nBusyBox v1.35.0 built-in shell (ash)\\r\\n\\r\\n'",
        "    while printf '%s# ' \"$host\" && IFS= read -r -t 120 cmd; do",
        "      cmd=${cmd%$'\\r'}",
        "      case \"$cmd\" in",
        ("        status) printf 'uptime %d s, temp %d.%d C, state RUN, io %04x\\r\\n' $SECONDS $((RANDOM % 40)) "
         "$((RANDOM % 10)) $RANDOM ;;"),
        "        exit|logout|quit) exit 0 ;;",
        "        '') ;;",
        "        *) printf 'sh: %s: not found\\r\\n' \"${cmd%% *}\" ;;",
        "      esac",
        "    done",
        "    exit 0",
        "  fi",
        "  sleep 1",
        "  printf 'Login incorrect\\r\\n'",
        "done",
    ]) + "\n"


def _start_device_services(r: Range, scen: Scenario, dev: Device, tag: str, work: Path) -> None:
    node = r.nodes[tag]
    d = work / tag
    secret = site_secret(scen)
    if dev.coap_server:
        r.popen(node.ns, ["coap-server-notls", "-A", node.ip, "-p", "5683", "-v", "0"], log_path=d / "coap.log")
    if dev.http_ui:
        www = d / "www"
        rnd = random.Random(f"{scen.seed}-{dev.name}-www")
        _write(www / "index.html", f"<html><head><title>{dev.name}</title></head><body><h1>{dev.name}</h1>"
               + "<p>" + "device settings " * rnd.randint(20, 80) + "</p></body></html>\n")
        _write(www / "status.json", f'{{"device":"{dev.name}","fw":"1.{rnd.randint(0, 9)}.{rnd.randint(0, 20)}",'
               f'"uptime":{rnd.randint(100, 99999)},"ok":true}}\n')
        r.popen(node.ns, [sys.executable, "-m", "http.server", "8080", "--bind", node.ip, "--directory", str(www)],
                log_path=d / "http.log")
    if dev.ssh_server:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # OpenSSH's privilege-separation directory
        key = d / "ssh_host_ed25519_key"
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True,
                       capture_output=True)
        conf = _write(d / "sshd_config",
                      f"Port 22\nListenAddress {node.ip}\nHostKey {key}\nPidFile none\nUsePAM no\n"
                      "PasswordAuthentication yes\nKbdInteractiveAuthentication no\nPermitRootLogin no\n"
                      "AllowUsers marlids-range-nobody\nMaxAuthTries 10\nMaxStartups 40:30:100\n"
                      "LoginGraceTime 20\nLogLevel ERROR\n")
        r.popen(node.ns, ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)], log_path=d / "sshd.log")
    if dev.telnet_server:
        login = _write(d / "telnet-login.sh", _telnet_login(dev, secret), mode=0o755)
        issue = _write(d / "issue", f"\r\n{dev.name} (BusyBox v1.35.0)\r\n\r\n")
        r.popen(node.ns, ["busybox", "telnetd", "-F", "-p", "23", "-b", node.ip, "-l", str(login), "-f", str(issue)],
                log_path=d / "telnetd.log")
    if dev.web_admin:
        adm = d / "admin"
        rnd = random.Random(f"{scen.seed}-{dev.name}-admin")
        _write(adm / "index.html", f"<html><head><title>{dev.name} admin</title></head><body><form>"
               + "<input name=opt> " * rnd.randint(5, 30) + "</form></body></html>\n")
        _write(adm / "status.html", f"<html><body><pre>{dev.name} uptime {rnd.randint(100, 99999)} s, "
               f"firmware 2.{rnd.randint(0, 9)}.{rnd.randint(0, 30)}</pre></body></html>\n")
        conf = _write(d / "httpd.conf", f"/:admin:{secret}\n", mode=0o600)
        r.popen(node.ns, ["busybox", "httpd", "-f", "-p", f"{node.ip}:80", "-h", str(adm), "-c", str(conf)],
                log_path=d / "httpd.log")
    if dev.ssdp and dev.ssdp.announce:
        dl = d / "dlna"
        (dl / "media").mkdir(parents=True, exist_ok=True)
        (dl / "db").mkdir(parents=True, exist_ok=True)
        rnd = random.Random(f"{scen.seed}-{dev.name}-upnp")
        conf = _write(dl / "minidlna.conf", "\n".join([
            f"media_dir={dl / 'media'}", f"db_dir={dl / 'db'}", f"log_dir={dl}", f"listening_ip={node.ip}",
            "port=8200", f"friendly_name={dev.name}", f"serial={rnd.randint(10**7, 10**8 - 1)}",
            f"model_name={dev.name.split('-')[0]} media", "inotify=no",
            f"notify_interval={int(dev.ssdp.notify_interval_s)}",
            f"uuid={uuid.UUID(int=rnd.getrandbits(128), version=4)}",
            "log_level=general,artwork,database,inotify,scanner,metadata,http,ssdp,tivo=warn"]) + "\n")
        r.popen(node.ns, ["minidlnad", "-S", "-f", str(conf), "-P", str(dl / "minidlna.pid")], log_path=d / "dlna.log")
    if dev.mdns:
        av = d / "avahi"
        _write(av / "avahi-daemon.conf", "\n".join([
            "[server]", f"host-name={dev.name}", "domain-name=local", "use-ipv4=yes",
            f"use-ipv6={'yes' if dev.ipv6 else 'no'}", "allow-interfaces=eth0", "enable-dbus=no",
            "ratelimit-interval-usec=1000000", "ratelimit-burst=1000",
            "[wide-area]", "enable-wide-area=no",
            "[publish]", "publish-hinfo=no", "publish-workstation=no", "publish-addresses=yes",
            "[reflector]", "enable-reflector=no"]) + "\n")
        _write(av / "nsswitch.conf", "passwd: files\ngroup: files\nhosts: files mdns4\n")
        rnd = random.Random(f"{scen.seed}-{dev.name}-mdns")
        for k, (stype, port) in enumerate(dev.mdns.publish):
            _write(av / f"s{k}.service", "\n".join([
                '<?xml version="1.0" standalone="no"?>',
                '<!DOCTYPE service-group SYSTEM "avahi-service.dtd">',
                f"<service-group><name>{dev.name} {stype.split('.')[0].lstrip('_')}</name>",
                f"<service><type>{stype}</type><port>{port}</port>",
                f"<txt-record>model={dev.name.split('-')[0]}-{rnd.randint(100, 999)}</txt-record>",
                f"<txt-record>fw=1.{rnd.randint(0, 9)}.{rnd.randint(0, 40)}</txt-record>",
                "</service></service-group>"]) + "\n")
    for port, udp, on in ((5683, True, dev.coap_server), (8080, False, dev.http_ui), (22, False, dev.ssh_server),
                          (23, False, dev.telnet_server), (80, False, dev.web_admin),
                          (8200, False, bool(dev.ssdp and dev.ssdp.announce))):
        if on:
            _wait_port(r, node.ns, node.ip, port, udp=udp)


def _start_benign(r: Range, scen: Scenario, work: Path, ca: Path | None = None) -> int:
    """Start every benign behaviour loop; return how many were started."""
    rng = random.Random(scen.seed)
    gw = scen.gateway_ip
    n = 0

    def bash(tag: str, name: str, script: str, prefix: tuple[str, ...] = (), join_s: float | None = None) -> None:
        nonlocal n
        if join_s:  # a device set up late: the loop (and its own random phase) starts after join_s
            script = f"sleep {join_s:.3f}\n{script}"
        path = _write(work / tag / f"{name}.sh", script + "\n")
        r.popen(r.nodes[tag].ns, [*prefix, "bash", str(path)], log_path=work / tag / f"{name}.log")
        n += 1

    for i, dev in enumerate(scen.devices):
        tag = f"d{i}"
        sub_seed = scen.seed * 1000 + i * 10
        dbash = functools.partial(bash, join_s=dev.join_s)
        if dev.subscribe:
            dbash(tag, "subscribe", _subscribe_script(dev, gw))
        for k in range(len(dev.telemetry)):
            dbash(tag, f"telemetry{k}", _telemetry_script(dev, k, gw, sub_seed + k, rng))
        if dev.dns:
            dbash(tag, "dns", _dns_script(dev.dns.names, dev.dns.period_s, gw, sub_seed + 5, rng))
        if dev.poll:
            dbash(tag, "poll", _poll_script(dev, scen, sub_seed + 6, rng))
        if dev.commands:
            dbash(tag, "commands", _commands_script(dev, gw, sub_seed + 7, rng))
        # the options below draw from a second stream, so that adding them leaves the loops above unchanged
        rng2 = random.Random(f"{scen.seed}-{dev.name}-services")
        if dev.ntp:
            dbash(tag, "ntp", _ntp_script(dev, gw, work / tag, sub_seed + 8, rng2))
        for k in range(len(dev.tls)):
            dbash(tag, f"tls{k}", _tls_script(dev, k, scen, ca, sub_seed + 9 + 100 * k, rng2, work / tag))
        if dev.ssdp and dev.ssdp.search_period_s:
            dbash(tag, "ssdp", _ssdp_search_script(dev, r.nodes[tag].ip, sub_seed + 3, rng2))
        if dev.ipv6 and dev.ipv6.ping:
            dbash(tag, "ping6", _ipv6_script(dev, r, scen, sub_seed + 4, rng2))
        if dev.mdns:
            dbash(tag, "mdns", _mdns_script(dev, scen, work / tag, sub_seed + 2, rng2),
                  prefix=("unshare", "-m", "--propagation", "private"))
    # the attacker also looks like a device when it is not attacking: occasional DNS lookups, paused
    # from QUIET_MARGIN_S before to QUIET_MARGIN_S after every attack (see _run_attack), so that no
    # window of the gateway is labeled malicious only because of the attacker's benign lookups
    bash("atk", "dns", _dns_script(DNS_NAMES[:3], 40.0, gw, scen.seed * 1000 + 999, rng,
                                   quiet_flag=work / "atk" / QUIET_FLAG))
    return n


# ---- attacks ----------------------------------------------------------------------------------

def _wordlist(path: Path, count: int, seed: int) -> Path:
    rnd = random.Random(seed)
    base = ["admin", "123456", "password", "root", "12345", "default", "guest", "user", "1234", "support",
            "iot", "camera", "letmein", "changeme", "admin123", "pass", "qwerty", "service", "tech", "system"]
    words = list(base)
    while len(words) < count:
        words.append(f"{rnd.choice(base)}{rnd.randint(0, 9999)}")
    return _write(path, "\n".join(words[:count]) + "\n")


def _run_attack(r: Range, scen: Scenario, atk: Attack, idx: int, t0: float, work: Path,
                rows: list[GroundTruthRow], logs: dict[str, str], lock: threading.Lock,
                stop: threading.Event, status: dict) -> None:
    tech = TECHNIQUES[atk.technique]
    target, _ = scen.resolve_target(atk.target)
    if not ipaddress.ip_network(target, strict=False).subnet_of(scen.subnet):  # never leave the site
        raise RangeError(f"attack target {target} is outside the site subnet {scen.subnet}; refusing")
    wl = f"wordlist-{idx}.txt"  # relative: attacks run with cwd = <work>/atk
    count_guess = max(1, round(tech.default_count * atk.intensity))
    if "{wordlist}" in tech.command:
        _wordlist(work / "atk" / wl, count_guess, scen.seed + idx)
    cmd, _count = tech.render(target=target, duration_s=atk.duration_s, intensity=atk.intensity,
                             gateway=scen.gateway_ip, iface="eth0", wordlist=wl, python=sys.executable,
                             hosts=len(scen.devices) + 1 if "/" in target else 1, port=atk.port,
                             data=atk.payload_bytes)
    wrapped = f"timeout -k 3 {int(atk.duration_s) + 5} bash -c {shlex.quote(cmd)}"
    if stop.wait(max(0.0, t0 + atk.start_s - QUIET_MARGIN_S - time.time())):
        return
    _quiet(work, lock, status, +1)
    try:
        if stop.wait(max(0.0, t0 + atk.start_s - time.time())):
            return
        _attack_once(r, scen, atk, idx, work, rows, logs, lock, stop, status, tech, target, cmd, wrapped)
        stop.wait(QUIET_MARGIN_S)
    finally:
        _quiet(work, lock, status, -1)


def _quiet(work: Path, lock: threading.Lock, status: dict, delta: int) -> None:
    """Count running attacks; the attacker's benign loop pauses while the flag file exists."""
    with lock:
        status["active"] = status.get("active", 0) + delta
        flag = work / "atk" / QUIET_FLAG
        if status["active"] > 0:
            flag.touch()
        elif flag.exists():
            flag.unlink()


def _attack_once(r: Range, scen: Scenario, atk: Attack, idx: int, work: Path, rows: list[GroundTruthRow],
                 logs: dict[str, str], lock: threading.Lock, stop: threading.Event, status: dict,
                 tech, target: str, cmd: str, wrapped: str) -> None:
    status["attack"] = f"{atk.technique} → {atk.target}"
    logp = work / "atk" / f"attack-{idx}-{atk.technique}.log"
    start = time.time()
    try:
        p = r.popen(r.nodes["atk"].ns, ["bash", "-c", wrapped], log_path=logp, cwd=work / "atk",
                    env={"PYTHONPATH": str(REPO)})
    except RuntimeError:
        return
    rc = p.wait()
    end = time.time()
    status["attack"] = ""
    logs[f"{idx}:{atk.technique}"] = logp.read_text(errors="replace")[-2000:] if logp.exists() else ""
    log.info("attack %s -> %s: %.1f s, exit %s", atk.technique, target, end - start, rc)
    if stop.is_set() and rc not in (0, 124):
        return
    with lock:
        rows.append(GroundTruthRow(start, end, scen.attacker_ip, target, tech.name, tech.technique_id, cmd))


# ---- entry point ------------------------------------------------------------------------------

def record(scenario: Scenario, out_dir: str | Path, *, name: str | None = None,
           progress: bool = True, duration_s: float | None = None) -> RecordResult:
    """Record ``scenario`` into ``out_dir/<name>.pcap`` + ``<name>.groundtruth.csv``.

    Parameters
    ----------
    scenario : Scenario
        A validated scenario (:func:`training.range.scenario.load_scenario`).
    out_dir : str or Path
        Output directory (created).
    name : str, optional
        File stem; default the scenario's site id.
    progress : bool
        Show a rich progress bar on stderr.
    duration_s : float, optional
        Override the scenario's total duration (attacks that would not fit are skipped).

    Returns
    -------
    RecordResult

    Raises
    ------
    RangeError
        When not root, a tool is missing or a service does not come up. Everything started is torn
        down before the error propagates (also on ``KeyboardInterrupt`` and SIGTERM).
    """
    check_can_record(scenario)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or scenario.site
    pcap = out_dir / f"{stem}.pcap"
    gt_path = out_dir / f"{stem}.groundtruth.csv"
    total = float(duration_s or scenario.duration_s)
    attacks = [a for a in scenario.attacks if a.start_s + a.duration_s <= total]
    work = Path(tempfile.mkdtemp(prefix="mlr-work-"))
    rows: list[GroundTruthRow] = []
    logs: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    status = {"attack": ""}
    prev_term = None
    if threading.current_thread() is threading.main_thread():
        def _term(signum, frame):  # SIGTERM -> same teardown path as Ctrl-C
            raise KeyboardInterrupt(f"signal {signum}")
        prev_term = signal.signal(signal.SIGTERM, _term)
    rng_ = Range(scenario.subnet)
    threads: list[threading.Thread] = []
    try:
        with rng_:
            rng_.create_bridge()
            rng_.add_node("gw", 1)
            for i, dev in enumerate(scenario.devices):
                rng_.add_node(f"d{i}", dev.host, address=not dev.dhcp)  # DHCP devices: address from the lease
            if scenario.cloud_host is not None:
                rng_.add_node("cloud", scenario.cloud_host)
            atk_node = rng_.add_node("atk", scenario.attacker_host)
            # the attacker forwards what it intercepts (ARP poisoning = adversary in the middle), silently
            subprocess.run(["ip", "netns", "exec", atk_node.ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
                            "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.eth0.send_redirects=0"],
                           check=True, capture_output=True)
            rng_.check_isolation()
            created = list(rng_.namespaces)
            if pcap.exists():
                pcap.unlink()
            tcpd_log = work / "tcpdump.log"
            tcpd = rng_.popen(rng_.bridge_ns, ["tcpdump", "-i", "br0", "-n", "-U", "-s", "0", "-w", str(pcap)],
                              log_path=tcpd_log)
            deadline = time.monotonic() + 10
            while "listening on" not in (tcpd_log.read_text() if tcpd_log.exists() else ""):
                if tcpd.poll() is not None or time.monotonic() > deadline:
                    raise RangeError(f"tcpdump did not start: {tcpd_log.read_text().strip()[-300:]}")
                time.sleep(0.1)
            if scenario.uses_ipv6:  # after tcpdump starts, so DAD, MLD and router solicitations are captured
                rng_.enable_ipv6("gw", router=True)
                if scenario.ipv6_prefix:
                    subprocess.run(["ip", "-n", rng_.nodes["gw"].ns, "addr", "add",
                                    f"{scenario.ipv6_prefix.network_address + 1}/64", "dev", "eth0", "nodad"],
                                   check=True, capture_output=True)
                for i, dev in enumerate(scenario.devices):
                    if dev.ipv6:
                        rng_.enable_ipv6(f"d{i}")
            _start_gateway(rng_, scenario, work)
            ca = _start_cloud(rng_, scenario, work)
            _start_dhcp_clients(rng_, scenario, work)
            for i, dev in enumerate(scenario.devices):
                _start_device_services(rng_, scenario, dev, f"d{i}", work)
            n_loops = _start_benign(rng_, scenario, work, ca)
            rng_.check_isolation()
            t0 = time.time()
            log.info("site %s up: %d devices, %d benign loops, %d attacks over %.0f s -> %s",
                     scenario.site, len(scenario.devices), n_loops, len(attacks), total, pcap)
            for idx, atk in enumerate(attacks):
                th = threading.Thread(target=_run_attack, daemon=True,
                                      args=(rng_, scenario, atk, idx, t0, work, rows, logs, lock, stop, status))
                th.start()
                threads.append(th)
            _progress_loop(t0, total, status, progress, scenario.site, check=rng_.check_isolation)
            for th in threads:
                th.join(timeout=max(1.0, t0 + total + 30 - time.time()))
            time.sleep(1.0)
            Range.stop(tcpd, signal.SIGINT, wait_s=5.0)
            st = out_dir.stat()
            os.chown(pcap, st.st_uid, st.st_gid)  # tcpdump drops to its own user when writing
    except BaseException:
        stop.set()
        raise
    finally:
        stop.set()
        if prev_term is not None:
            signal.signal(signal.SIGTERM, prev_term)
        shutil.rmtree(work, ignore_errors=True)
    write_ground_truth(rows, gt_path)
    log.info("wrote %s (%.1f MB) and %s (%d attacks)", pcap, pcap.stat().st_size / 1e6, gt_path, len(rows))
    return RecordResult(pcap=pcap, ground_truth=gt_path, rows=sorted(rows, key=lambda r: r.start_ts),
                        duration_s=time.time() - t0, pids=rng_.pids, namespaces=created, attack_logs=logs)


def _progress_loop(t0: float, total: float, status: dict, show: bool, site: str,
                   check: Callable[[], None] | None = None) -> None:
    """Wait until ``t0 + total``; every ISOLATION_CHECK_S call ``check`` (it raises to abort)."""
    next_check = time.time() + ISOLATION_CHECK_S

    def tick() -> None:
        nonlocal next_check
        if check is not None and time.time() >= next_check:
            next_check = time.time() + ISOLATION_CHECK_S
            try:
                check()
            except RuntimeError as exc:
                raise RangeError(f"isolation check failed during the recording: {exc}") from None

    if not show:
        while time.time() < t0 + total:
            tick()
            time.sleep(0.5)
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=False) as prog:
        task = prog.add_task(f"{site}: benign", total=total)
        while (now := time.time()) < t0 + total:
            a = status.get("attack")
            prog.update(task, completed=now - t0, description=f"{site}: {a or 'benign'}")
            tick()
            time.sleep(0.5)
        prog.update(task, completed=total, description=f"{site}: done")
