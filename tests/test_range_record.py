"""Cyber range recordings (root): a short real recording, its ground truth, labels and teardown.

Needs root (network namespaces) and the range tools (``APT_PACKAGES`` of ``scripts/setup.sh``); skipped
with the reason otherwise. One ≤ 60 s recording of ``ci_short`` is shared by the module.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from training.range.netns import list_namespaces, namespace_prefix
from training.range.recorder import missing_tools
from training.range.scenario import load_scenario
from training.range.techniques import TECHNIQUES

pytestmark = pytest.mark.needs_root

def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    missing = missing_tools(load_scenario("ci_short"))
    if missing:
        return f"range tools missing: {', '.join(missing)} (install APT_PACKAGES of scripts/setup.sh)"
    probe = f"mlr-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return f"cannot create network namespaces here (needs CAP_SYS_ADMIN): {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


_SKIP = _why_not()
skip_unless_can_record = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def _netns_inodes() -> set[int]:
    """Network-namespace inodes of every process on the machine."""
    out = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out.add(os.stat(p / "ns" / "net").st_ino)
            except OSError:
                pass
    return out


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {ln.split(":")[1].strip().split("@")[0] for ln in out.splitlines()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _assert_nothing_left(before_ns: set[int], before_links: set[str], pids: list[int] = ()) -> None:
    assert list_namespaces(namespace_prefix()) == []
    leaked = _netns_inodes() - before_ns
    assert not leaked, f"processes left in namespaces created by the run: {leaked}"
    assert _host_links() == before_links, "the host namespace gained or lost an interface"
    assert not [p for p in pids if _alive(p)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    if _SKIP:
        pytest.skip(_SKIP)
    from training.range.recorder import record

    before = (_netns_inodes(), _host_links())
    out = tmp_path_factory.mktemp("range")
    res = record(load_scenario("ci_short"), out, progress=False)
    return res, before


def _frames(pcap: Path):
    """(time, src_mac, ethertype, ip_src, ip_dst, proto, dport) per frame, parsed from raw bytes."""
    import struct

    from scapy.utils import RawPcapReader

    rows = []
    for raw, m in RawPcapReader(str(pcap)):
        t = m.sec + m.usec / 1e6
        et = struct.unpack_from("!H", raw, 12)[0]
        src_mac = raw[6:12].hex(":")
        if et == 0x0800:
            ihl = (raw[14] & 15) * 4
            proto = raw[23]
            dport = struct.unpack_from("!H", raw, 14 + ihl + 2)[0] if proto in (6, 17) else -1
            rows.append((t, src_mac, et, ".".join(map(str, raw[26:30])), ".".join(map(str, raw[30:34])), proto, dport))
        else:
            rows.append((t, src_mac, et, "", "", -1, -1))
    return rows


@skip_unless_can_record
def test_recording_writes_capture_and_schedule(recording):
    res, _ = recording
    scen = load_scenario("ci_short")
    assert res.pcap.stat().st_size > 50_000
    assert [r.attack for r in res.rows] == [a.technique for a in scen.attacks]
    for row, atk in zip(res.rows, scen.attacks, strict=True):
        assert row.attacker_ip == scen.attacker_ip
        assert row.victim_ip == scen.resolve_target(atk.target)[0]
        assert row.end_ts - row.start_ts <= atk.duration_s + 8.5  # timeout -k 3 (duration + 5)
        assert row.mitre_technique == TECHNIQUES[row.attack].technique_id
    assert res.ground_truth.read_text().splitlines()[0] == (
        "start_ts,end_ts,attacker_ip,victim_ip,attack,mitre_technique,tool_command")


@skip_unless_can_record
def test_every_technique_produced_attacker_packets_and_benign_continued(recording):
    res, _ = recording
    scen = load_scenario("ci_short")
    frames = _frames(res.pcap)
    atk_mac = next(f[1] for f in frames if f[3] == scen.attacker_ip)
    for row in res.rows:
        inside = [f for f in frames if row.start_ts - 0.05 <= f[0] <= row.end_ts + 0.05]
        attacker = [f for f in inside if f[1] == atk_mac and f[6] != 53]  # not its benign DNS
        assert len(attacker) >= 10, f"{row.attack}: only {len(attacker)} attacker frames in its interval"
        if row.attack == "arp_spoof":  # forged replies; the rest is intercepted traffic it forwards
            assert sum(f[2] == 0x0806 for f in attacker) >= 10
        benign_mqtt = [f for f in inside if f[1] != atk_mac and f[6] == 1883 and f[3] != scen.attacker_ip]
        if row.end_ts - row.start_ts >= 2.0:
            assert benign_mqtt, f"no benign MQTT traffic during {row.attack}"
    # attacker traffic only inside attack intervals (apart from its benign DNS and ARP resolution)
    spans = [(r.start_ts - 0.05, r.end_ts + 3.5) for r in res.rows]
    stray = [f for f in frames if f[3] == scen.attacker_ip and f[6] != 53
             and not any(s <= f[0] <= e for s, e in spans)]
    assert not stray, f"{len(stray)} attacker IP frames outside attack intervals, first {stray[:3]}"


def _protocols(pcap: Path) -> dict[str, int]:
    """Frames per benign protocol of the range, parsed from raw bytes (IPv4 and IPv6, no tshark)."""
    import struct
    from collections import Counter

    from scapy.utils import RawPcapReader

    n: Counter = Counter()
    for raw, _m in RawPcapReader(str(pcap)):
        et = struct.unpack_from("!H", raw, 12)[0]
        if et == 0x0800:
            ihl = (raw[14] & 15) * 4
            proto, l4 = raw[23], 14 + ihl
        elif et == 0x86DD:
            proto, l4 = raw[20], 54
            if proto == 0:  # hop-by-hop options (MLD reports)
                proto, l4 = raw[54], 54 + (raw[55] + 1) * 8
            if proto == 58:
                icmp_type = raw[l4]
                n[{133: "rs", 134: "ra", 135: "ns", 136: "na", 128: "echo6", 143: "mld"}.get(icmp_type, "icmp6")] += 1
                if icmp_type == 134 and struct.unpack_from("!H", raw, l4 + 6)[0] != 0:
                    n["ra_with_router_lifetime"] += 1
                continue
        else:
            continue
        if proto not in (6, 17):
            continue
        sport, dport = struct.unpack_from("!HH", raw, l4)
        ports = {sport, dport}
        for name, port, p in (("dhcp", 67, 17), ("ntp", 123, 17), ("mdns", 5353, 17), ("ssdp", 1900, 17),
                              ("https", 443, 6), ("mqtts", 8883, 6), ("telnet", 23, 6), ("upnp_http", 8200, 6)):
            if proto == p and port in ports:
                n[name] += 1
        if proto == 17 and dport == 5353 and et == 0x86DD:
            n["mdns6"] += 1
    return dict(n)


@skip_unless_can_record
def test_benign_services_really_appear(recording):
    res, _ = recording
    n = _protocols(res.pcap)
    for name, least in (("dhcp", 4), ("ntp", 4), ("mdns", 5), ("ssdp", 3), ("https", 20), ("mqtts", 10),
                        ("telnet", 20), ("upnp_http", 4), ("rs", 1), ("ra", 2), ("ns", 2), ("na", 1), ("echo6", 2)):
        assert n.get(name, 0) >= least, f"{name}: {n.get(name, 0)} frames (< {least}); all: {n}"
    assert not n.get("ra_with_router_lifetime"), "a router advertisement offered a default router"


@skip_unless_can_record
def test_nothing_left_after_normal_run(recording):
    res, (before_ns, before_links) = recording
    assert len(res.pids) >= 15
    _assert_nothing_left(before_ns, before_links, res.pids)


@skip_unless_can_record
def test_nothing_left_after_failed_run(tmp_path, monkeypatch):
    from training.range import recorder

    before = (_netns_inodes(), _host_links())
    started = {}

    def boom(r, scen, work, *_):
        started["pids"] = list(r.pids)
        started["ns"] = list(r.namespaces)
        raise RuntimeError("deliberate failure after the services started")

    monkeypatch.setattr(recorder, "_start_benign", boom)
    with pytest.raises(RuntimeError, match="deliberate failure"):
        recorder.record(load_scenario("ci_short"), tmp_path, progress=False)
    # bridge, gateway, 4 devices, cloud (ci_short has TLS devices), attacker
    assert len(started["pids"]) >= 5 and len(started["ns"]) == 8
    _assert_nothing_left(*before, started["pids"])


@skip_unless_can_record
def test_labeling_reproduces_the_schedule(recording):
    pytest.importorskip("edge.windows", reason="edge.windows (the window extractor) is not available")
    from training.range.label import label_capture

    res, _ = recording
    scen = load_scenario("ci_short")
    df = label_capture(res.pcap, res.ground_truth, window_s=5.0, site="ci_short")
    assert {"label", "attack", "technique_id", "site", "capture", "device_id", "peers"} <= set(df.columns)
    mal = df[df["label"] == 1]
    for row in res.rows:
        hits = mal[(mal["attack"] == row.attack) & (mal["t_start"] <= row.end_ts) & (mal["t_end"] > row.start_ts)]
        assert len(hits), f"no malicious window for {row.attack}"
        assert scen.attacker_ip in set(hits["device_id"]), f"attacker window missing for {row.attack}"
    # every malicious window overlaps an interval; the attacker outside every interval is benign
    for w in mal.itertuples():
        assert any(w.t_start <= r.end_ts and w.t_end > r.start_ts for r in res.rows)
    atk = df[df["device_id"] == scen.attacker_ip]
    quiet = atk[[not any(w.t_start <= r.end_ts and w.t_end > r.start_ts for r in res.rows)
                 for w in atk.itertuples()]]
    assert (quiet["label"] == 0).all()
    assert set(df.loc[df.label == 0, "attack"]) <= {"benign"}


@skip_unless_can_record
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_nothing_left_after_interrupt(tmp_path, sig):
    import signal
    import sys
    import time

    before = (_netns_inodes(), _host_links())
    # as from a terminal: Python's own SIGINT handler even when this suite runs as a background job (a
    # non-interactive shell starts those with SIGINT ignored, which a child inherits and Python then keeps)
    proc = subprocess.Popen(
        [sys.executable, "-c", ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                                "from marlids.cli import main; main()"),
         "range", "record", "ci_short", "--out", str(tmp_path), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    prefix = namespace_prefix(proc.pid)
    deadline = time.monotonic() + 30
    while len(list_namespaces(prefix)) < 8 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(4.0)  # services and benign loops running
    proc.send_signal(getattr(signal, sig))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert out.strip().splitlines()[-1] == "marlids: error: interrupted; the range was torn down"
    assert "Traceback" not in out
    assert list_namespaces(prefix) == []
    leaked = _netns_inodes() - before[0]
    assert not leaked, f"processes left in namespaces created by the run: {leaked}"
    assert _host_links() == before[1]
