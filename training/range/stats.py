"""Per-attack packet counts of a capture and its ground truth (``marlids range stats``)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path


def capture_stats(capture: str | Path, ground_truth: str | Path | None = None) -> dict:
    """Count packets of ``capture`` overall and inside each ground-truth interval.

    Parameters
    ----------
    capture : str or Path
        Ethernet pcap/pcapng file.
    ground_truth : str or Path, optional
        Ground-truth CSV (default ``<stem>.groundtruth.csv``).

    Returns
    -------
    dict
        ``packets``, ``bytes`` (file size), ``duration_s``, and ``attacks``: one dict per ground-truth
        row with ``attack``, ``mitre_technique``, ``duration_s``, ``attacker_pkts`` (frames whose IPv4
        source is the attacker, or ARP frames whose sender MAC is the attacker's, inside the interval)
        and ``other_pkts`` (all other frames inside the interval: benign background and replies).
    """
    from scapy.utils import RawPcapReader

    from training.range.groundtruth import read_ground_truth
    from training.range.label import default_ground_truth

    capture = Path(capture)
    gt = read_ground_truth(ground_truth or default_ground_truth(capture))
    frames = []
    with RawPcapReader(str(capture)) as r:
        for raw, m in r:
            if hasattr(m, "sec"):
                t = m.sec + m.usec / 1e6
            else:
                t = ((m.tshigh << 32) + m.tslow) / m.tsresol
            et = struct.unpack_from("!H", raw, 12)[0] if len(raw) >= 14 else 0
            src = str(ipaddress.IPv4Address(raw[26:30])) if et == 0x0800 and len(raw) >= 34 else ""
            frames.append((t, raw[6:12], et, src))
    macs = {}
    for t, mac, et, src in frames:
        if src:
            macs.setdefault(src, mac)
    attacks = []
    for g in gt.itertuples(index=False):
        mac = macs.get(g.attacker_ip)
        inside = [f for f in frames if g.start_ts <= f[0] <= g.end_ts]
        att = sum(1 for f in inside if f[3] == g.attacker_ip or (f[2] == 0x0806 and f[1] == mac))
        attacks.append({"attack": g.attack, "mitre_technique": g.mitre_technique, "attacker_ip": g.attacker_ip,
                        "victim_ip": g.victim_ip, "duration_s": round(g.end_ts - g.start_ts, 2),
                        "attacker_pkts": att, "other_pkts": len(inside) - att})
    return {"packets": len(frames), "bytes": capture.stat().st_size,
            "duration_s": round(frames[-1][0] - frames[0][0], 1) if frames else 0.0, "attacks": attacks}
