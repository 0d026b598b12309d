"""Public-capture mixer on the shared real captures (skipped when ../shared/data is absent)."""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import pytest

from training.range.groundtruth import GROUND_TRUTH_COLUMNS, read_ground_truth
from training.range.mix import ATTACKER_POOL, mix_captures

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PCAPS = SHARED / "pcaps"
SYN = PCAPS / "stopddos" / "pkt.TCP.synflood.spoofed.pcap"
BACNET = PCAPS / "stopddos" / "amp.UDP.bacnet.IOT.37810.pcapng"
LOCK = PCAPS / "oconnor-iot" / "schlage-lock-01.pcap"

pytestmark = [
    pytest.mark.needs_shared,
    pytest.mark.skipif(not SYN.is_file() or not LOCK.is_file(),
                       reason=f"shared captures not found under {PCAPS} (../shared/data missing)"),
]


def _raw(path: Path):
    from scapy.utils import RawPcapReader

    return [(bytes(r), m.sec, m.usec) for r, m in RawPcapReader(str(path))]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_mix_keeps_benign_maps_addresses_and_writes_ground_truth(tmp_path):
    res = mix_captures(SYN, LOCK, tmp_path, seed=7, max_packets=3000, n_sources=4)
    assert res.n_attack == 3000 and res.victim == "192.168.1.122"
    out = _raw(res.pcap)
    assert len(out) == res.n_benign + res.n_attack
    pool = ATTACKER_POOL.network_address.packed[:3]
    attack = [x for x in out if x[0][26:29] == pool]
    benign = [x for x in out if x[0][26:29] != pool]
    assert benign == _raw(LOCK)  # benign bytes and timestamps untouched, order kept
    assert len(attack) == 3000
    assert all(x[0][30:34] == bytes([192, 168, 1, 122]) for x in attack)
    times = [s + u / 1e6 for _, s, u in out]
    assert times == sorted(times)  # one timeline
    gt = read_ground_truth(res.ground_truth)
    assert list(gt.columns) == list(GROUND_TRUTH_COLUMNS)
    assert len(gt) == 4 and set(gt["victim_ip"]) == {"192.168.1.122"}
    assert set(gt["attack"]) == {"syn_flood_spoofed"} and set(gt["mitre_technique"]) == {"T1498.001"}
    assert all(ipaddress.ip_address(a) in ATTACKER_POOL for a in gt["attacker_ip"])
    t_att = [s + u / 1e6 for _, s, u in attack]
    assert gt["start_ts"].min() == pytest.approx(min(t_att), abs=1e-5)
    assert gt["end_ts"].max() == pytest.approx(max(t_att), abs=1e-5)


def test_mix_is_reproducible_and_seeded(tmp_path):
    a = mix_captures(SYN, LOCK, tmp_path / "a", seed=3, max_packets=500, name="m")
    b = mix_captures(SYN, LOCK, tmp_path / "b", seed=3, max_packets=500, name="m")
    c = mix_captures(SYN, LOCK, tmp_path / "c", seed=4, max_packets=500, name="m")
    assert _sha(a.pcap) == _sha(b.pcap) and a.ground_truth.read_text() == b.ground_truth.read_text()
    assert a.attackers != c.attackers or a.offset_s != c.offset_s


def test_mix_checksums_stay_valid(tmp_path):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    res = mix_captures(SYN, LOCK, tmp_path, seed=1, max_packets=50, offset_s=100.0, victim="192.168.1.122")
    pool = ATTACKER_POOL.network_address.packed[:3]
    for raw, _s, _u in _raw(res.pcap):
        if raw[26:29] != pool:
            continue
        p = Ether(raw)
        ip_ck, tcp_ck = p[IP].chksum, p[TCP].chksum
        del p[IP].chksum, p[TCP].chksum
        q = Ether(bytes(p))
        assert (ip_ck, tcp_ck) == (q[IP].chksum, q[TCP].chksum)
    assert res.offset_s == 100.0


@pytest.mark.skipif(not BACNET.is_file(), reason="bacnet amplification capture missing")
def test_mix_pcapng_amplification(tmp_path):
    res = mix_captures(BACNET, LOCK, tmp_path, seed=2, max_packets=1000, n_sources=2)
    gt = read_ground_truth(res.ground_truth)
    assert set(gt["mitre_technique"]) == {"T1498.002"} and len(gt) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"victim": "10.9.9.9"}, r"victim='10.9.9.9' does not appear in schlage-lock-01.pcap; busiest: 192.168.1.122"),
        ({"victim": "lock"}, r"victim='lock'; expected an IPv4 address"),
        ({"max_packets": 0}, r"max_packets=0; expected >= 1"),
        ({"n_sources": 0}, r"n_sources=0; allowed 1..64"),
        ({"offset_s": -1.0}, r"offset_s=-1.0; expected >= 0"),
    ],
)
def test_mix_argument_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mix_captures(SYN, LOCK, tmp_path, seed=0, **kwargs)


def test_mixed_capture_labels_the_victim(tmp_path):
    pytest.importorskip("edge.windows", reason="edge.windows (the window extractor) is not available")
    from training.range.label import label_capture

    res = mix_captures(SYN, LOCK, tmp_path, seed=5, max_packets=2000)
    df = label_capture(res.pcap, res.ground_truth, site="oconnor")
    mal = df[df["label"] == 1]
    assert res.victim in set(mal["device_id"])
    assert set(mal["attack"]) == {"syn_flood_spoofed"}
    assert (df.loc[df["label"] == 0, "attack"] == "benign").all()
    assert len(mal) < 0.05 * len(df)
