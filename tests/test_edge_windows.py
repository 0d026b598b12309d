"""Flows → per-device windows on real captures (../shared/data/pcaps)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edge.capture import CaptureError, scan_capture
from edge.features import FEATURE_NAMES
from edge.windows import KEY_COLUMNS, WindowBuilder, extract_windows
from tests.conftest import REPO

SYN_FLOOD = "stopddos/pkt.TCP.synflood.spoofed.pcap"


@pytest.fixture(scope="module")
def all_windows(pcaps: Path) -> pd.DataFrame:
    """Every public capture (427 files: fragments, ECN/CWR flags, one-way floods, pcapng) in one run."""
    files = sorted(p for p in pcaps.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    assert len(files) > 400
    return extract_windows(files)


def test_every_public_capture_is_processed(all_windows: pd.DataFrame, pcaps: Path):
    df = all_windows
    names = {p.name for p in pcaps.rglob("*") if p.suffix in (".pcap", ".pcapng")}
    assert set(df["capture"]) == names  # every capture yields windows
    assert list(df.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    assert list(df.columns[len(KEY_COLUMNS): len(KEY_COLUMNS) + len(FEATURE_NAMES)]) == list(FEATURE_NAMES)
    x = df[list(FEATURE_NAMES)].to_numpy()
    assert x.dtype == np.float32 and np.isfinite(x).all()
    assert (x >= 0).all()
    fractions = [c for c in FEATURE_NAMES if c.endswith(("_fraction", "_ratio"))]
    assert (df[fractions].to_numpy() <= 1.0 + 1e-6).all()
    assert ((df["t_end"] - df["t_start"]).round(6) == 5.0).all()
    assert (df["pkts"] == df["out_pkts"] + df["in_pkts"]).all()


def test_syn_flood_windows_are_syn_only_and_benign_ones_are_not(all_windows: pd.DataFrame):
    df = all_windows
    flood = df[df["capture"] == Path(SYN_FLOOD).name]
    assert set(flood["device_id"]) == {"10.10.10.10"}  # the victim; spoofed public sources are peers
    assert (flood["syn_only_ratio"] > 0.95).all()
    assert (flood["tcp_failed_conn_fraction"] > 0.95).all()
    assert flood["in_syn_only_pkts"].sum() > 37000
    assert flood["distinct_peers"].max() > 10000
    assert all("SYN-only" in t and "unanswered" in t for t in flood["proto_text"])

    benign = df[df["capture"].str.startswith("Setup-") & (df["tcp_pkt_fraction"] > 0) & (df["pkts"] >= 20)]
    assert len(benign) > 1000
    assert benign["syn_only_ratio"].median() < 0.2
    assert (benign["syn_only_ratio"] > 0.95).mean() < 0.02


def test_amplification_pcapng_and_new_peers(all_windows: pd.DataFrame):
    amp = all_windows[all_windows["capture"] == "amp.UDP.bacnet.IOT.37810.pcapng"]
    assert len(amp) >= 1
    assert amp["udp_pkt_fraction"].max() > 0.8
    assert amp["in_bytes_fraction"].min() > 0.99  # one-way reflection traffic
    # new_peers: each peer counted once per device over time
    lock = all_windows[all_windows["capture"] == "lockly-hub-01.pcap"]
    for _, g in lock.groupby("device_id"):
        assert g["new_peers"].sum() == len(set().union(*map(set, g["peers"])))


def test_arp_frames_are_counted(all_windows: pd.DataFrame):
    lock = all_windows[all_windows["capture"] == "lockly-hub-01.pcap"]
    assert lock["arp_pkts"].sum() > 10000
    assert lock["arp_ip_mac_conflicts"].sum() == 0  # benign: no IP changes MAC


def test_arp_spoofing_is_attributed_to_the_spoofer(tmp_path: Path):
    """A host claiming the gateway's IP (RFC 826 reply with its own MAC) is a conflict of the spoofer and
    a victim-side conflict of the gateway and of the host it was sent to."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap

    gw, gw_mac, att, att_mac, vic = "10.9.0.1", "02:00:00:00:00:01", "10.9.0.66", "02:00:00:00:00:66", "10.9.0.5"
    pkts = [Ether(src=att_mac, dst=gw_mac) / IP(src=att, dst=gw) / UDP(sport=5000, dport=53),
            Ether(src=gw_mac, dst=att_mac) / IP(src=gw, dst=att) / UDP(sport=53, dport=5000)]
    pkts += [Ether(src=att_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, hwsrc=att_mac, psrc=gw, pdst=vic)
             for _ in range(20)]
    # a busy benign client of the gateway (its busiest peer by packets)
    cli, cli_mac = "10.9.0.7", "02:00:00:00:00:07"
    pkts += [Ether(src=cli_mac, dst=gw_mac) / IP(src=cli, dst=gw) / UDP(sport=6000 + i, dport=53) for i in range(25)]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.1
    path = tmp_path / "arp_spoof.pcap"
    wrpcap(str(path), pkts)
    df = extract_windows([path])
    spoofer = df[df["device_id"] == att]
    assert spoofer["arp_reply_pkts"].sum() == 20
    assert spoofer["arp_ip_mac_conflicts"].sum() == 20
    assert vic in spoofer["peers"].iloc[0]
    assert df[df["device_id"] == gw]["arp_pkts"].sum() == 0
    # the victim side: the gateway whose address was claimed and the host that was told the lie
    assert df[df["device_id"] == gw]["arp_victim_conflicts"].sum() == 20
    assert df[df["device_id"] == vic]["arp_victim_conflicts"].sum() == 20
    assert spoofer["arp_victim_conflicts"].sum() == 0
    assert att in df[df["device_id"] == vic]["peers"].iloc[0]  # so the labeler marks the victims' windows
    assert att in df[df["device_id"] == gw]["peers"].iloc[0]
    assert df[df["device_id"] == vic]["top_peers"].iloc[0][0] == {
        "address": att, "port": 0, "direction": "in", "packets": 20, "bytes": 20 * 42, "ports": 0}
    # the poisoner comes first at the gateway, although the gateway exchanged more packets with its DNS client
    gw_peers = df[df["device_id"] == gw]["top_peers"].iloc[0]
    assert gw_peers[0]["address"] == att and gw_peers[1] == {
        "address": cli, "port": 53, "direction": "in", "packets": 25, "bytes": 25 * 28, "ports": 1}


def test_truncated_capture_is_read_up_to_the_damage(pcaps: Path, tmp_path: Path, caplog):
    src = pcaps / "oconnor-iot" / "lockly-hub-01.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(src.read_bytes()[:200_000])
    with caplog.at_level(logging.WARNING):
        scan = scan_capture(cut)
        df = extract_windows([cut])
    assert scan.damaged and 0 < scan.packets < 46656
    assert any("damaged capture" in r.getMessage() for r in caplog.records)
    assert len(df) > 0 and df["pkts"].sum() > 0.9 * scan.packets


@pytest.mark.parametrize("content", [b"", b"hello, not a capture\n", b"\x00" * 64])
def test_non_capture_raises_capture_error(tmp_path: Path, content: bytes):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    with pytest.raises(CaptureError, match="bad.pcap"):
        extract_windows([bad])


def test_cli_rejects_a_non_capture_with_one_line(tmp_path: Path):
    bad = tmp_path / "notes.pcap"
    bad.write_text("this is text\n")
    exe = shutil.which("marlids", path=str(Path(sys.executable).parent)) or "marlids"
    res = subprocess.run([exe, "edge", "extract", str(bad), "--out", str(tmp_path / "w.parquet"), "--no-embed"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("marlids: error:")]
    assert len(errors) == 1 and "not a pcap/pcapng capture" in errors[0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"window_s": 0}, "window_s"), ({"window_s": -5}, "window_s"),
    ({"devices": "everything"}, "devices"), ({"idle_timeout_s": 0}, "idle_timeout_s"),
])
def test_bad_arguments_name_the_argument(pcaps: Path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        extract_windows([pcaps / "kitsune" / "mirai2000.pcap"], **kwargs)


def test_window_length_is_configurable(pcaps: Path):
    f = pcaps / "kitsune" / "mirai2000.pcap"
    w5, w30 = extract_windows([f], window_s=5), extract_windows([f], window_s=30)
    assert w5["pkts"].sum() == w30["pkts"].sum()  # every packet lands in exactly one window
    assert len(w30) < len(w5)
    assert ((w30["t_end"] - w30["t_start"]).round(6) == 30).all()


def test_scan_bystanders_carry_the_scanners_fan_out(tmp_path: Path):
    """A host whose only trace of a sweep is one ARP reply gets the scanner's fan-out (in_src_max_fanout)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether
    from scapy.utils import wrpcap

    att, att_mac, poller, poller_mac = "10.9.0.66", "02:00:00:00:00:66", "10.9.0.2", "02:00:00:00:00:02"
    hosts = {f"10.9.0.{k}": f"02:00:00:00:00:{k:02x}" for k in (10, 11, 12)}
    pkts = []
    for ip, mac in hosts.items():  # a poller reads every host over UDP (it initiates: fan-out 3)
        pkts += [Ether(src=poller_mac, dst=mac) / IP(src=poller, dst=ip) / UDP(sport=40000, dport=5683),
                 Ether(src=mac, dst=poller_mac) / IP(src=ip, dst=poller) / UDP(sport=5683, dport=40000)]
    for k in range(1, 41):  # host discovery: 40 ARP requests, the live hosts answer
        pdst = f"10.9.0.{k + 100}" if k > 3 else list(hosts)[k - 1]
        pkts.append(Ether(src=att_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=att_mac, psrc=att, pdst=pdst))
        if pdst in hosts:
            pkts.append(Ether(src=hosts[pdst], dst=att_mac) / ARP(op=2, hwsrc=hosts[pdst], psrc=pdst, pdst=att))
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i * 0.01
    path = tmp_path / "sweep.pcap"
    wrpcap(str(path), pkts)
    fan = extract_windows([path]).set_index("device_id")["in_src_max_fanout"]
    assert all(fan[h] == 40 for h in hosts), fan  # the scanner asked for 40 addresses
    assert fan[att] == 0 and fan[poller] == 0  # nobody initiated contact with them
    # without the sweep the hosts carry only the poller's fan-out
    wrpcap(str(path), pkts[:6])
    fan = extract_windows([path]).set_index("device_id")["in_src_max_fanout"]
    assert all(fan[h] == 3 for h in hosts), fan


def test_golden_features_of_mirai_capture(pcaps: Path):
    """pcap → features golden test (NFStream style): tests/golden/mirai2000_windows.csv."""
    got = extract_windows([pcaps / "kitsune" / "mirai2000.pcap"])
    want = pd.read_csv(REPO / "tests" / "golden" / "mirai2000_windows.csv", dtype={"device_id": str})
    cols = ["device_id", "t_start", *FEATURE_NAMES, "proto_text"]
    got = got[cols].reset_index(drop=True)
    assert len(got) == len(want)
    assert (got["device_id"] == want["device_id"]).all()
    assert (got["proto_text"] == want["proto_text"]).all()
    np.testing.assert_allclose(got[list(FEATURE_NAMES)].to_numpy(np.float64),
                               want[list(FEATURE_NAMES)].to_numpy(np.float64), rtol=1e-5, atol=1e-4)


def test_builder_rejects_bad_scope():
    with pytest.raises(ValueError, match="devices must be one of"):
        WindowBuilder(5.0, "s", "c", devices="lan")


def test_top_peers_name_the_attacker_at_its_victim_and_the_targets_at_the_attacker():
    """site_a's recorded attacks (ground truth: 10.77.1.66 runs hydra against 10.77.1.31:22, floods 10.77.1.32:8080
    and scans the subnet): the victim's busiest peer is the attacker, inbound, on the attacked service; the
    attacker's own windows list its targets outbound, with the scan's many ports."""
    from edge.windows import TOP_PEERS

    df = extract_windows([REPO / "data" / "captures" / "site_a.pcap"], site_id="a")
    gt = pd.read_csv(REPO / "data" / "captures" / "site_a.groundtruth.csv")
    brute = gt[gt["mitre_technique"] == "T1110.001"].iloc[0]
    att, vic = brute["attacker_ip"], brute["victim_ip"]
    assert df["top_peers"].map(len).max() <= TOP_PEERS
    at_victim = df[(df["device_id"] == vic) & (df["t_start"] >= brute["start_ts"] - 5)
                   & (df["t_end"] <= brute["end_ts"] + 5)]
    tops = [w[0] for w in at_victim["top_peers"] if len(w)]
    assert tops and sum(p["address"] == att and p["direction"] == "in" and p["port"] == 22 for p in tops) >= len(tops) // 2
    for w, forged in zip(df["top_peers"], df["arp_victim_conflicts"] > 0):
        ranked = w[1:] if forged else w  # an ARP poisoner comes first at its victims (the spoofing test)
        assert [p["packets"] for p in ranked] == sorted((p["packets"] for p in ranked), reverse=True)
        assert all(p["direction"] in ("in", "out") and 0 <= p["port"] <= 65535 and p["bytes"] >= p["packets"]
                   for p in w)
    at_attacker = df[df["device_id"] == att]
    scan = max((p for w in at_attacker["top_peers"] for p in w), key=lambda p: p["ports"])
    assert scan["direction"] == "out" and scan["ports"] > 100
    # the recorded ARP spoofing (scapy, T1557.002): only its victims — the host told the lie and the gateway
    # whose address was claimed — carry victim-side conflicts, during the attack, with the spoofer first
    spoof = gt[gt["mitre_technique"] == "T1557.002"].iloc[0]
    hit = df[df["arp_victim_conflicts"] > 0]
    assert set(hit["device_id"]) == {spoof["victim_ip"], "10.77.1.1"}
    assert (hit["t_end"] > spoof["start_ts"]).all() and (hit["t_start"] <= spoof["end_ts"]).all()
    assert all(w[0]["address"] == spoof["attacker_ip"] and w[0]["direction"] == "in" for w in hit["top_peers"])
    assert (df[df["device_id"] == spoof["attacker_ip"]]["arp_victim_conflicts"] == 0).all()


def test_a_spoofed_flood_tracks_a_bounded_number_of_peers(all_windows: pd.DataFrame):
    """The public spoofed SYN flood (tens of thousands of sources in one window): top_peers stays 5 entries
    and the per-window peer table is capped (MAX_TRACKED_PEERS), while distinct_peers counts every source."""
    from edge.windows import MAX_TRACKED_PEERS, _Acc

    flood = all_windows[all_windows["capture"] == SYN_FLOOD.split("/")[-1]]
    victim = flood.loc[flood["distinct_peers"].idxmax()]
    assert victim["distinct_peers"] > 10 * MAX_TRACKED_PEERS and len(victim["top_peers"]) == 5
    assert all(p["direction"] == "in" for p in victim["top_peers"])
    acc = _Acc()
    for i in range(3 * MAX_TRACKED_PEERS):
        acc.add_peer_traffic(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", False, 1, 60, 80)
    assert len(acc.peer_traffic) == MAX_TRACKED_PEERS


def test_device_address_fast_path_agrees_with_ipaddress():
    """The IPv4 table lookup decides only /8s without special-purpose addresses, and exactly as ipaddress does."""
    import ipaddress
    import random

    from edge.windows import _SPECIAL_V4_OCTETS, _is_device_addr, _is_device_addr_exact

    special = [ipaddress.ip_network("224.0.0.0/4"), ipaddress.ip_network("127.0.0.0/8"),
               ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("100.64.0.0/10")]
    special += list(getattr(getattr(ipaddress, "_IPv4Constants", None), "_private_networks", []))
    for net in special:  # every block the standard library treats specially lies in an exact-path /8
        first, last = int(net.network_address) >> 24, int(net.broadcast_address) >> 24
        assert set(range(first, last + 1)) <= _SPECIAL_V4_OCTETS, net
    rng = random.Random(7)
    addrs = [f"{o}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}" for o in range(256) for _ in range(40)]
    addrs += [f"{o}.0.0.0" for o in range(256)] + [f"{o}.255.255.255" for o in range(256)]
    addrs += ["fe80::1", "2001:db8::1", "fd00::5", "::", "ff02::1", "not-an-ip", "", "10.0.0", "1.2.3.4.5"]
    for a in addrs:
        for scope in ("local", "all"):
            assert _is_device_addr(a, scope) == _is_device_addr_exact.__wrapped__(a, scope), (a, scope)
    assert _is_device_addr("8.8.8.8", "local") is False and _is_device_addr("8.8.8.8", "all") is True
    assert _is_device_addr("192.168.1.7", "local") is True
