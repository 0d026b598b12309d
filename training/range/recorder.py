"""``marlids range record``: build an isolated IoT site, run benign behaviour and attacks, capture.

Topology (all inside namespaces named ``mlr-<pid>-*``, nothing in the host namespace)::

    mlr-<pid>-br   bridge br0 (no address) ─── tcpdump -i br0 -w <site>.pcap
      ├─ p-gw  ── mlr-<pid>-gw    host .1   mosquitto (MQTT broker, tcp/1883), dnsmasq (udp/53)
      ├─ p-d0  ── mlr-<pid>-d0    host .N   benign device: telemetry, subscriptions, servers, polls
      ├─ ...
      └─ p-atk ── mlr-<pid>-atk   attacker: technique library (nmap, hping3, hydra, ...)

Benign behaviour per device (from the scenario): MQTT telemetry (``mosquitto_pub``, one connection
per message, jittered period, varied payload size), long-lived MQTT subscriptions
(``mosquitto_sub``), libcoap ``coap-server``, ``python -m http.server`` device UI, OpenSSH ``sshd``,
DNS lookups (``busybox nslookup``) against dnsmasq on the gateway, CoAP (``coap-client``) and HTTP
(``curl``) polls of other devices, MQTT command publishes. All randomness (jitter, padding, phase,
wordlists) comes from the scenario seed (bash ``RANDOM`` seeded per loop).

Attacks run in the attacker namespace at ``t0 + start_s`` under ``timeout``; ``start_ts``/``end_ts``
of the ground truth are ``time.time()`` just before and after each command.
"""

from __future__ import annotations

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
from dataclasses import dataclass, field
from pathlib import Path

from training.range.groundtruth import GroundTruthRow, write_ground_truth
from training.range.netns import Range
from training.range.scenario import Attack, Device, Scenario
from training.range.techniques import TECHNIQUES

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Executables the range itself needs (services, benign clients, capture).
BASE_TOOLS = ("ip", "ss", "sysctl", "tcpdump", "timeout", "bash", "mosquitto", "mosquitto_pub", "mosquitto_sub",
              "dnsmasq", "busybox", "curl", "coap-server-notls", "coap-client-notls")
QUIET_FLAG = ".attacking"  # present in <work>/atk while an attack is (about to be) running
QUIET_MARGIN_S = 6.0  # > one 5 s window
DNS_NAMES = ("time.iot.lan", "broker.iot.lan", "api.cloud.lan", "updates.vendor.lan", "ntp.iot.lan")


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


def missing_tools(scenario: Scenario | None = None) -> list[str]:
    """Executables needed by the range (and ``scenario``'s techniques) that are not on ``PATH``."""
    need = set(BASE_TOOLS)
    if scenario is None or any(d.ssh_server for d in scenario.devices):
        need |= {"/usr/sbin/sshd", "ssh-keygen"}
    techs = TECHNIQUES.values() if scenario is None else [TECHNIQUES[a.technique] for a in scenario.attacks]
    need |= {t.tool for t in techs}
    return sorted(t for t in need if shutil.which(t) is None)


def check_can_record(scenario: Scenario | None = None) -> None:
    """Raise :class:`RangeError` when not root or when a tool is missing."""
    if os.geteuid() != 0:
        raise RangeError("`marlids range record` needs root (it creates network namespaces); run it with sudo")
    miss = missing_tools(scenario)
    if miss:
        raise RangeError(f"missing tools: {', '.join(miss)} (install the APT_PACKAGES of scripts/setup.sh)")


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
    for n in dev.poll.coap:
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  if [ $((i % 5)) -eq 1 ]; then path=.well-known/core; else path=time; fi\n"
                     f"  coap-client-notls -m get -B 2 coap://{ip}/$path >/dev/null 2>&1")
    for n in dev.poll.http:
        ip = scen.ip(scen.device(n).host)
        lines.append(f"  if [ $((i % 4)) -eq 1 ]; then path=; else path=status.json; fi\n"
                     f"  curl -s -m 3 -o /dev/null http://{ip}:8080/$path")
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


# ---- services ---------------------------------------------------------------------------------

def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _wait_port(rng_: Range, ns: str, ip: str, port: int, udp: bool = False, timeout_s: float = 8.0) -> None:
    """Wait until something listens on ``ip:port`` inside ``ns`` (checked with ``ss``)."""
    deadline = time.monotonic() + timeout_s
    flag = "-uln" if udp else "-tln"
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "netns", "exec", ns, "ss", "-H", flag], capture_output=True, text=True,
                             check=False).stdout
        if any(f"{ip}:{port}" in ln or f"*:{port}" in ln or f"0.0.0.0:{port}" in ln for ln in out.splitlines()):
            return
        time.sleep(0.2)
    raise RangeError(f"service on {ip}:{port}/{'udp' if udp else 'tcp'} in {ns} did not come up within {timeout_s} s")


def _start_gateway(r: Range, scen: Scenario, work: Path) -> None:
    gw = r.nodes["gw"]
    conf = _write(work / "gw" / "mosquitto.conf",
                  f"listener 1883 {gw.ip}\nallow_anonymous true\npersistence false\n"
                  "log_dest stdout\nlog_type error\nlog_type warning\nmax_keepalive 120\n")
    r.popen(gw.ns, ["mosquitto", "-c", str(conf)], log_path=work / "gw" / "mosquitto.log")
    hosts = [f"--host-record={d.name}.iot.lan,{scen.ip(d.host)}" for d in scen.devices]
    r.popen(gw.ns, ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                    "--no-poll", "--bind-interfaces", f"--listen-address={gw.ip}", "--pid-file=",
                    f"--address=/iot.lan/{gw.ip}", f"--address=/cloud.lan/{gw.ip}",
                    f"--address=/vendor.lan/{gw.ip}", *hosts, "--log-facility=-"],
            log_path=work / "gw" / "dnsmasq.log")
    _wait_port(r, gw.ns, gw.ip, 1883)
    _wait_port(r, gw.ns, gw.ip, 53, udp=True)


def _start_device_services(r: Range, scen: Scenario, dev: Device, tag: str, work: Path) -> None:
    node = r.nodes[tag]
    d = work / tag
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
    for port, udp, on in ((5683, True, dev.coap_server), (8080, False, dev.http_ui), (22, False, dev.ssh_server)):
        if on:
            _wait_port(r, node.ns, node.ip, port, udp=udp)


def _start_benign(r: Range, scen: Scenario, work: Path) -> int:
    """Start every benign behaviour loop; return how many were started."""
    rng = random.Random(scen.seed)
    gw = scen.gateway_ip
    n = 0

    def bash(tag: str, name: str, script: str) -> None:
        nonlocal n
        path = _write(work / tag / f"{name}.sh", script + "\n")
        r.popen(r.nodes[tag].ns, ["bash", str(path)])
        n += 1

    for i, dev in enumerate(scen.devices):
        tag = f"d{i}"
        sub_seed = scen.seed * 1000 + i * 10
        if dev.subscribe:
            bash(tag, "subscribe", _subscribe_script(dev, gw))
        for k in range(len(dev.telemetry)):
            bash(tag, f"telemetry{k}", _telemetry_script(dev, k, gw, sub_seed + k, rng))
        if dev.dns:
            bash(tag, "dns", _dns_script(dev.dns.names, dev.dns.period_s, gw, sub_seed + 5, rng))
        if dev.poll:
            bash(tag, "poll", _poll_script(dev, scen, sub_seed + 6, rng))
        if dev.commands:
            bash(tag, "commands", _commands_script(dev, gw, sub_seed + 7, rng))
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
                             hosts=len(scen.devices) + 1 if "/" in target else 1)
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
                    env={"PYTHONPATH": str(REPO_ROOT)})
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
                rng_.add_node(f"d{i}", dev.host)
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
            _start_gateway(rng_, scenario, work)
            for i, dev in enumerate(scenario.devices):
                _start_device_services(rng_, scenario, dev, f"d{i}", work)
            n_loops = _start_benign(rng_, scenario, work)
            t0 = time.time()
            log.info("site %s up: %d devices, %d benign loops, %d attacks over %.0f s -> %s",
                     scenario.site, len(scenario.devices), n_loops, len(attacks), total, pcap)
            for idx, atk in enumerate(attacks):
                th = threading.Thread(target=_run_attack, daemon=True,
                                      args=(rng_, scenario, atk, idx, t0, work, rows, logs, lock, stop, status))
                th.start()
                threads.append(th)
            _progress_loop(t0, total, status, progress, scenario.site)
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


def _progress_loop(t0: float, total: float, status: dict, show: bool, site: str) -> None:
    if not show:
        while time.time() < t0 + total:
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
            time.sleep(0.5)
        prog.update(task, completed=total, description=f"{site}: done")
