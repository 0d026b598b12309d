"""Merge a public attack-only capture into a benign capture on one timeline, with ground truth.

``mix_captures(attack, benign, out_dir, seed=...)`` writes ``<name>.pcap`` and
``<name>.groundtruth.csv`` (columns of :mod:`training.range.groundtruth`):

* **benign packets are never altered**: their bytes and timestamps are copied as read
  (scapy ``RawPcapReader``);
* **timeline**: the attack keeps its own inter-packet timing; its first packet is placed ``offset_s``
  after the first benign packet. Default offset: the time of a benign packet drawn with the seed from
  the 20–60 % quantile of the benign packets (so the attack lands where the benign capture has traffic,
  even in week-long captures with gaps);
* **victim**: the attack capture's most frequent destination is mapped onto ``victim`` (default: the
  busiest private address of the benign capture); its Ethernet destination becomes the victim's MAC and
  the source MAC the victim's usual off-link next hop (the router), as if the flood came from outside;
* **attackers**: every other address of the attack capture (e.g. the ~20,000 spoofed sources of the
  stopddos SYN flood, or the reflectors of an amplification) is mapped onto ``n_sources`` attacker
  addresses drawn with the seed from TEST-NET-3 ``203.0.113.0/24`` (RFC 5737; never a real host and
  never one of the benign capture's addresses), by a seeded hash of the original address. The
  ground truth holds **one row per attacker address** (its first and last packet time), so the
  labeling rule ``attacker_ip in peers`` marks the victim's windows during the attack. Note that the
  edge treats TEST-NET addresses as local (Python's ``is_private``), so each attacker address also
  gets its own (malicious) windows.
* **checksums**: addresses are rewritten in place and the IPv4 header and TCP/UDP checksums updated
  incrementally (RFC 1624), which stays correct for fragments and truncated frames. Non-IPv4 attack
  frames are dropped (counted in the log).

Everything is reproducible from ``seed`` (and the inputs): same inputs + seed -> same bytes.
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import logging
import random
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from training.range.groundtruth import GroundTruthRow, write_ground_truth

log = logging.getLogger(__name__)

ATTACKER_POOL = ipaddress.IPv4Network("203.0.113.0/24")
#: (substring of the attack file name, attack name, ATT&CK ID) — first match wins.
KNOWN_ATTACKS: tuple[tuple[str, str, str], ...] = (
    ("synflood", "syn_flood_spoofed", "T1498.001"),
    ("amp.udp.bacnet", "bacnet_amplification", "T1498.002"),
    ("amp.dns", "dns_amplification", "T1498.002"),
    ("amp", "reflection_amplification", "T1498.002"),
    ("flood", "network_flood", "T1498.001"),
)
_LINKTYPE_ETHERNET = 1


@dataclass
class MixResult:
    """What :func:`mix_captures` wrote."""

    pcap: Path
    ground_truth: Path
    rows: list[GroundTruthRow]
    n_benign: int
    n_attack: int
    victim: str
    attackers: list[str]
    offset_s: float


def _read_raw(path: Path, limit: int | None = None) -> list[tuple[float, int, int, bytes, int, int]]:
    """Read ``(time, sec, usec, bytes, caplen, wirelen)`` per frame; Ethernet captures only."""
    from scapy.utils import RawPcapReader

    out = []
    with RawPcapReader(str(path)) as r:
        if r.linktype != _LINKTYPE_ETHERNET:
            raise ValueError(f"capture {str(path)!r} has linktype {r.linktype}; expected Ethernet (1)")
        for raw, meta in r:
            if hasattr(meta, "sec"):
                sec, usec = meta.sec, meta.usec
                wirelen = meta.wirelen
            else:  # pcapng
                ts = (meta.tshigh << 32) + meta.tslow
                sec, rem = divmod(ts, meta.tsresol)
                usec = rem * 1_000_000 // meta.tsresol
                wirelen = meta.wirelen
            out.append((sec + usec / 1e6, sec, usec, raw, len(raw), wirelen or len(raw)))
            if limit is not None and len(out) >= limit:
                break
    return out


def _ipv4_offset(frame: bytes) -> int | None:
    if len(frame) < 34:
        return None
    etype, off = struct.unpack_from("!H", frame, 12)[0], 14
    while etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        etype, off = struct.unpack_from("!H", frame, off + 2)[0], off + 4
    if etype != 0x0800 or len(frame) < off + 20 or frame[off] >> 4 != 4:
        return None
    return off


def _csum_update(csum: int, old: bytes, new: bytes) -> int:
    """RFC 1624 eq. 3: HC' = ~(~HC + ~m + m') over 16-bit words."""
    s = (~csum) & 0xFFFF
    for i in range(0, len(old), 2):
        m = struct.unpack_from("!H", old, i)[0]
        m2 = struct.unpack_from("!H", new, i)[0]
        s += ((~m) & 0xFFFF) + m2
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _rewrite(frame: bytes, off: int, src: bytes, dst: bytes, eth_src: bytes | None, eth_dst: bytes | None) -> bytes:
    b = bytearray(frame)
    old = bytes(b[off + 12: off + 20])
    new = src + dst
    b[off + 12: off + 20] = new
    ihl = (b[off] & 0x0F) * 4
    ip_ck = struct.unpack_from("!H", b, off + 10)[0]
    struct.pack_into("!H", b, off + 10, _csum_update(ip_ck, old, new))
    proto = b[off + 9]
    frag_off = struct.unpack_from("!H", b, off + 6)[0] & 0x1FFF
    l4 = off + ihl
    if frag_off == 0:
        pos = {6: l4 + 16, 17: l4 + 6}.get(proto)
        if pos is not None and len(b) >= pos + 2:
            ck = struct.unpack_from("!H", b, pos)[0]
            if not (proto == 17 and ck == 0):  # UDP checksum 0 = none
                new_ck = _csum_update(ck, old, new)
                if proto == 17 and new_ck == 0:
                    new_ck = 0xFFFF
                struct.pack_into("!H", b, pos, new_ck)
    if eth_dst is not None:
        b[0:6] = eth_dst
    if eth_src is not None:
        b[6:12] = eth_src
    return bytes(b)


def _ips(frame: bytes) -> tuple[str, str] | None:
    off = _ipv4_offset(frame)
    if off is None:
        return None
    return (str(ipaddress.IPv4Address(frame[off + 12: off + 16])),
            str(ipaddress.IPv4Address(frame[off + 16: off + 20])))


def _attack_info(name: str) -> tuple[str, str]:
    low = name.lower()
    for key, attack, tech in KNOWN_ATTACKS:
        if key in low:
            return attack, tech
    return "external_attack", ""


def mix_captures(attack_pcap: str | Path, benign_pcap: str | Path, out_dir: str | Path, *, seed: int,
                 offset_s: float | None = None, victim: str | None = None, max_packets: int | None = 5000,
                 n_sources: int = 4, name: str | None = None) -> MixResult:
    """Merge ``attack_pcap`` into ``benign_pcap`` (see the module docstring for every rule).

    Parameters
    ----------
    attack_pcap, benign_pcap : str or Path
        Ethernet pcap/pcapng files.
    out_dir : str or Path
        Output directory (created).
    seed : int
        Seeds the attacker addresses, the source mapping and the default offset.
    offset_s : float, optional
        Attack start in seconds after the first benign packet (>= 0).
    victim : str, optional
        IPv4 address of a device of the benign capture.
    max_packets : int, optional
        Read at most this many attack packets (>= 1; None = all).
    n_sources : int
        Number of attacker addresses (1..64).
    name : str, optional
        Output stem (default ``<attack stem>__<benign stem>__s<seed>``).

    Returns
    -------
    MixResult

    Raises
    ------
    FileNotFoundError
        When an input is missing.
    ValueError
        On a bad argument (named with its value), a non-Ethernet capture, a victim absent from the
        benign capture, or an attack capture without IPv4 packets.
    """
    attack_pcap, benign_pcap, out_dir = Path(attack_pcap), Path(benign_pcap), Path(out_dir)
    for arg, p in (("attack_pcap", attack_pcap), ("benign_pcap", benign_pcap)):
        if not p.is_file():
            raise FileNotFoundError(f"{arg}={str(p)!r} does not exist")
    if max_packets is not None and max_packets < 1:
        raise ValueError(f"max_packets={max_packets!r}; expected >= 1")
    if not 1 <= n_sources <= 64:
        raise ValueError(f"n_sources={n_sources!r}; allowed 1..64")
    if offset_s is not None and offset_s < 0:
        raise ValueError(f"offset_s={offset_s!r}; expected >= 0")

    benign = _read_raw(benign_pcap)
    if not benign:
        raise ValueError(f"benign_pcap={str(benign_pcap)!r} holds no packets")
    benign.sort(key=lambda x: x[0])  # stable; capture order kept on ties
    attack = _read_raw(attack_pcap, max_packets)

    # benign addresses, victim and its MACs
    counts: Counter[str] = Counter()
    mac_of: dict[str, Counter] = {}
    for _t, _s, _u, raw, _c, _w in benign:
        ips = _ips(raw)
        if ips:
            counts.update(ips)
            mac_of.setdefault(ips[0], Counter())[raw[6:12]] += 1
    if victim is None:
        cands = [a for a, _ in counts.most_common()
                 if ipaddress.ip_address(a).is_private and not ipaddress.ip_address(a).is_multicast
                 and a != "255.255.255.255" and not a.endswith(".255") and a in mac_of]
        if not cands:
            raise ValueError(f"benign_pcap={str(benign_pcap)!r} has no private IPv4 device to use as victim")
        victim = cands[0]
    else:
        try:
            ipaddress.IPv4Address(victim)
        except ValueError:
            raise ValueError(f"victim={victim!r}; expected an IPv4 address") from None
        if victim not in counts:
            busiest = ", ".join(a for a, _ in counts.most_common(5))
            raise ValueError(f"victim={victim!r} does not appear in {benign_pcap.name}; busiest: {busiest}")
    victim_mac = mac_of[victim].most_common(1)[0][0] if victim in mac_of else None
    router = Counter()
    for _t, _s, _u, raw, _c, _w in benign:
        ips = _ips(raw)
        if ips and ips[1] == victim and not ipaddress.ip_address(ips[0]).is_private:
            router[raw[6:12]] += 1
    router_mac = router.most_common(1)[0][0] if router else None

    # attacker pool and mapping
    rng = random.Random(seed)
    hosts = [str(ATTACKER_POOL.network_address + i) for i in range(1, 255)]
    hosts = [h for h in hosts if h not in counts]
    pool = rng.sample(hosts, n_sources)
    attack_ips = [(_ips(raw), x) for x in attack for raw in (x[3],)]
    dst_counts = Counter(ips[1] for ips, _ in attack_ips if ips)
    if not dst_counts:
        raise ValueError(f"attack_pcap={str(attack_pcap)!r} holds no IPv4 packets")
    orig_victim = dst_counts.most_common(1)[0][0]

    def mapped(addr: str) -> str:
        if addr == orig_victim:
            return victim
        h = hashlib.sha256(f"{seed}|{addr}".encode()).digest()
        return pool[int.from_bytes(h[:4], "big") % n_sources]

    # timeline
    t_b0 = benign[0][0]
    if offset_s is None:
        n = len(benign)
        i = rng.randrange(int(0.2 * n), max(int(0.2 * n) + 1, int(0.6 * n)))
        offset_s = benign[i][0] - t_b0
    first_attack_t = min(x[0] for x in attack)
    shift_us = round((t_b0 + offset_s - first_attack_t) * 1e6)

    out_attack = []
    dropped = 0
    spans: dict[str, list[float]] = {}
    for ips, (_t, sec, usec, raw, caplen, wirelen) in attack_ips:
        if ips is None:
            dropped += 1
            continue
        src, dst = mapped(ips[0]), mapped(ips[1])
        off = _ipv4_offset(raw)
        to_victim = dst == victim
        frame = _rewrite(raw, off, ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed,
                         eth_src=router_mac if to_victim else victim_mac,
                         eth_dst=victim_mac if to_victim else router_mac)
        ts_us = sec * 1_000_000 + usec + shift_us
        s2, u2 = divmod(ts_us, 1_000_000)
        out_attack.append((ts_us / 1e6, s2, u2, frame, caplen, wirelen))
        att = src if to_victim else dst
        if att != victim:
            sp = spans.setdefault(att, [ts_us / 1e6, ts_us / 1e6])
            sp[0], sp[1] = min(sp[0], ts_us / 1e6), max(sp[1], ts_us / 1e6)
    if dropped:
        log.info("dropped %d non-IPv4 attack frames", dropped)

    from scapy.utils import PcapWriter

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"{attack_pcap.name.split('.pcap')[0]}__{benign_pcap.name.split('.pcap')[0]}__s{seed}"
    pcap = out_dir / f"{stem}.pcap"
    w = PcapWriter(str(pcap), linktype=_LINKTYPE_ETHERNET, sync=False)
    try:
        w.write_header(None)
        merged = heapq.merge(((x[0], 0, i, x) for i, x in enumerate(benign)),
                             ((x[0], 1, i, x) for i, x in enumerate(out_attack)))
        for _t, _k, _i, (_tt, sec, usec, frame, caplen, wirelen) in merged:
            w.write_packet(frame, sec=sec, usec=usec, caplen=caplen, wirelen=wirelen)
    finally:
        w.close()
    attack_name, tech = _attack_info(attack_pcap.name)
    cmd = (f"replay {attack_pcap.name} into {benign_pcap.name} (marlids range mix --seed {seed} "
           f"--offset {offset_s:.6f} --victim {victim} --max-packets {max_packets} --sources {n_sources})")
    rows = [GroundTruthRow(s, e, a, victim, attack_name, tech, cmd) for a, (s, e) in sorted(spans.items())]
    gt = write_ground_truth(rows, out_dir / f"{stem}.groundtruth.csv")
    log.info("mixed %d attack packets (%s) into %d benign packets -> %s; victim %s, attackers %s",
             len(out_attack), attack_name, len(benign), pcap, victim, ", ".join(sorted(spans)))
    return MixResult(pcap, gt, rows, len(benign), len(out_attack), victim, sorted(spans), offset_s)
