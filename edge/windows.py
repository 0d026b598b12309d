"""Per-device fixed time windows of named statistics, built from NFStream flows and ARP frames.

A *device* is an endpoint address of the site: by default every unicast private, link-local or
unique-local address (RFC 1918, RFC 3927, RFC 4193; ``--devices all`` takes every unicast
address). Each flow's packets are attributed to both of its endpoints that are devices, *out* from
the device's side, so a SYN flood shows as ``in_syn_only_pkts`` at the victim and as
``out_syn_only_pkts`` at a local attacker. A flow whose device side has no IP (DHCP from 0.0.0.0)
is keyed by MAC; ARP and other non-IP frames are attributed to the IP the sender MAC uses in IP
traffic (its IPv4 address when it has both), else to its MAC.

Windows are aligned on the epoch: window *k* covers ``[k·window_s, (k+1)·window_s)`` seconds.
The result is the *Window* contract of ``DESIGN.md``: ``site_id, device_id, t_start, t_end``
(epoch s), ``capture`` (file name), the statistics of :data:`edge.features.FEATURE_NAMES`
(float32), ``proto_text`` (:mod:`edge.proto_text`), ``peers`` (peer addresses in the window) and
``top_peers``: who the device exchanged the most packets with in the window (:data:`TOP_PEERS` at most,
attribution for the analyst), each ``{"address", "port", "direction", "packets", "bytes", "ports"}`` —
``direction`` ``"in"`` when the peer initiated the flows (a scanner, a brute-forcer, a flood source, seen
at its victim) and ``"out"`` when the device did; ``port`` the service port that carried most of those
packets (0 for ARP and portless protocols) and ``ports`` how many distinct service ports they used (a
port scan touches many). Packets and bytes count both directions.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging
import math
import socket
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge import slices as F
from edge.capture import CaptureScan, scan_capture
from edge.config import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_WINDOW_S
from edge.features import APP_GROUP_NAMES, FEATURE_NAMES, app_group
from edge.proto_text import ProtoGroup, window_text

if TYPE_CHECKING:  # pandas only where a DataFrame is asked for: the live daemon's process never loads it
    import pandas as pd

log = logging.getLogger(__name__)

KEY_COLUMNS: tuple[str, ...] = ("site_id", "device_id", "t_start", "t_end", "capture")
DEVICE_SCOPES: tuple[str, ...] = ("local", "all")
#: Peers kept per window in ``top_peers`` (most packets first; an ARP poisoner of the device first).
TOP_PEERS = 5
#: Most (peer, direction) pairs whose traffic one window tracks for ``top_peers``; a spoofed flood's
#: thousands of one-packet sources beyond it are not tracked one by one (memory stays bounded; the busiest
#: peers of such a window are among the first anyway, or it has none), ``distinct_peers`` still counts them.
MAX_TRACKED_PEERS = 1024
_TCP, _UDP, _ICMP, _ICMP6 = 6, 17, 1, 58
_PROGRESS_FLOWS = 256  # flows metered between two progress callbacks


#: First octets of the IPv4 /8 blocks that hold any special-purpose address (IANA IPv4 special-purpose registry,
#: RFC 6890: this-network, RFC 1918 private, shared 100.64/10, loopback, link-local, IETF protocol assignments,
#: documentation, benchmarking, multicast, reserved, broadcast). Every address of the other /8s is public unicast,
#: decided without :mod:`ipaddress` — a spoofed flood's thousands of random sources cost a table lookup each.
_SPECIAL_V4_OCTETS = frozenset({0, 10, 100, 127, 169, 172, 192, 198, 203, *range(224, 256)})


def _is_device_addr(addr: str, scope: str) -> bool:
    """Whether ``addr`` is a device address of ``scope`` ("local" or "all"; module docstring); False for a
    string that is not an IP address."""
    try:
        packed = socket.inet_pton(socket.AF_INET, addr)
    except (OSError, TypeError, ValueError):
        packed = None
    if packed is not None and packed[0] not in _SPECIAL_V4_OCTETS:
        return scope == "all"
    return _is_device_addr_exact(addr, scope)


@lru_cache(maxsize=65536)
def _is_device_addr_exact(addr: str, scope: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback or addr == "255.255.255.255":
        return False
    if scope == "all":
        return True
    return ip.is_private or ip.is_link_local


def _is_group_mac(mac: str) -> bool:
    """True for broadcast/multicast MACs (I/G bit of the first octet, IEEE 802)."""
    try:
        return bool(int(mac[:2], 16) & 1)
    except ValueError:
        return False


# Raw accumulator layout of one (device, window): the slice fields of edge.flows first, then these.
(OUT_PKTS, IN_PKTS, OUT_BYTES, IN_BYTES, OUT_SYN, IN_SYN, TCP_PKTS, UDP_PKTS, ICMP_PKTS, OTHER_PKTS,
 MCAST_PKTS, FLOWS, NEW_FLOWS, OUT_INIT, IN_INIT, CONN_ATT, CONN_FAIL, ARP_PKTS, ARP_REPLIES,
 ARP_CONFLICTS, ARP_VICTIM) = range(F.SLICE_LEN, F.SLICE_LEN + 21)
RAW_LEN = F.SLICE_LEN + 21
_MINS = (F.IAT_MIN, F.SIZE_MIN, F.FIRST_MS)
_MAXS = (F.IAT_MAX, F.SIZE_MAX, F.LAST_MS)
_SUMS = tuple(k for k in range(F.SLICE_LEN) if k not in _MINS + _MAXS)
_INF = math.inf
_RAW_INIT = [0.0] * RAW_LEN
for _k in _MINS:
    _RAW_INIT[_k] = _INF
for _k in _MAXS:
    _RAW_INIT[_k] = -_INF
_EPHEMERAL_PORT = 49152  # RFC 6335 dynamic/private port range start


class _Acc:
    """Accumulator of one (device, window): a raw counter list plus lazily created sets and maps."""

    __slots__ = ("apps", "arp_answered", "arp_asked", "arp_forgers", "groups", "in_ports", "in_src_addrs",
                 "out_dst_addrs", "out_ports", "peer_traffic", "peers", "r")

    def __init__(self) -> None:
        self.r = _RAW_INIT.copy()
        self.peers: set[str] = set()
        # (peer, device initiated) → [packets, bytes, {service port: packets}]
        self.peer_traffic: dict[tuple[str, bool], list] = {}
        # created on first use: most windows of an IoT device see one or two flows
        self.out_dst_addrs: set[str] | None = None
        self.out_ports: dict[int, int] | None = None
        self.in_src_addrs: set[str] | None = None
        self.in_ports: dict[int, int] | None = None
        self.arp_asked: set[str] | None = None  # addresses the device sent ARP requests for
        self.arp_answered: set[str] | None = None  # addresses the device sent ARP replies to
        self.arp_forgers: set[str] | None = None  # senders of forged ARP bindings against the device
        self.apps: dict[str, float] = {}
        self.groups: dict[tuple[str, bool], ProtoGroup] = {}

    def merge_slice(self, s: list[float]) -> None:
        r = self.r
        for k in _SUMS:
            r[k] += s[k]
        for k in _MINS:
            r[k] = min(r[k], s[k])
        for k in _MAXS:
            r[k] = max(r[k], s[k])

    def add_peer_traffic(self, peer: str, outbound: bool, pkts: float, nbytes: float, port: int | None,
                         *, always: bool = False) -> None:
        t = self.peer_traffic.get((peer, outbound))
        if t is None:
            if len(self.peer_traffic) >= MAX_TRACKED_PEERS and not always:
                return
            t = self.peer_traffic[(peer, outbound)] = [0.0, 0.0, {}]
        t[0] += pkts
        t[1] += nbytes
        if port is not None:
            t[2][port] = t[2].get(port, 0.0) + pkts

    def top_peers(self, k: int = TOP_PEERS) -> list[dict]:
        """The ``k`` peers with the most packets (ties: bytes, then address), as ``top_peers`` entries; a peer
        that forged an ARP binding against the device (``arp_victim_conflicts``) comes first whatever its packet
        count: it is who poisons the device, while its busiest peers may be benign."""
        forgers = self.arp_forgers or ()
        best = heapq.nsmallest(k, self.peer_traffic.items(),
                               key=lambda kv: (kv[0][1] or kv[0][0] not in forgers, -kv[1][0], -kv[1][1], kv[0]))
        out = []
        for (peer, outbound), (pkts, nbytes, ports) in best:
            port = max(ports.items(), key=lambda kv: (kv[1], -kv[0]))[0] if ports else 0
            out.append({"address": peer, "port": int(port), "direction": "out" if outbound else "in",
                        "packets": int(pkts), "bytes": int(nbytes), "ports": len(ports)})
        return out

    def group(self, name: str, outbound: bool) -> ProtoGroup:
        g = self.groups.get((name, outbound))
        if g is None:
            g = self.groups[(name, outbound)] = ProtoGroup(name=name, outbound=outbound)
        return g


def _entropy_bits(counts: dict) -> float:
    """Shannon entropy (bits) of a value → count map; 0 for an empty map."""
    if not counts:
        return 0.0
    p = np.fromiter(counts.values(), dtype=np.float64)
    p /= p.sum()
    return float(-(p * np.log2(p)).sum())


@lru_cache(maxsize=65536)
def _is_unicast(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return True
    return not (ip.is_multicast or addr == "255.255.255.255")


_NDPI_MATCH_BY_PORT = 1  # ndpi_confidence_t: NDPI_CONFIDENCE_MATCH_BY_PORT
_TRANSPORT_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPv6", 2: "IGMP"}


class WindowBuilder:
    """Accumulate flows (and ARP/L2 frames) of one capture into per-device window statistics.

    Parameters
    ----------
    window_s : float
        Window length in seconds.
    site_id : str
        Written to every row.
    capture : str
        Source file name written to every row.
    devices : {"local", "all"} or callable
        Which addresses are devices (see the module docstring), or a predicate ``addr -> bool``.

    Raises
    ------
    ValueError
        For a non-positive ``window_s`` or an unknown ``devices`` scope.
    """

    def __init__(self, window_s: float, site_id: str, capture: str,
                 devices: str | Callable[[str], bool] = "local") -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {window_s!r}")
        if isinstance(devices, str):
            if devices not in DEVICE_SCOPES:
                raise ValueError(f"devices must be one of {DEVICE_SCOPES} or a predicate, got {devices!r}")
            scope = devices
            self._is_device: Callable[[str], bool] = lambda a: _is_device_addr(a, scope)
        else:
            self._is_device = devices
        self.window_s = float(window_s)
        self.window_ms = max(1, round(window_s * 1000))
        self.site_id = site_id
        self.capture = capture
        self._acc: dict[tuple[str, int], _Acc] = {}
        self._mac_ip: dict[str, str] = {}
        self._mac_ip4: dict[str, str] = {}  # first IPv4 device address of each MAC (ARP is IPv4's)
        self._ip_mac: dict[str, str] = {}
        self.flows_seen = 0
        self.packets_seen = 0

    def __len__(self) -> int:
        return len(self._acc)

    def _get(self, device: str, idx: int) -> _Acc:
        acc = self._acc.get((device, idx))
        if acc is None:
            acc = self._acc[(device, idx)] = _Acc()
        return acc

    # -- input ------------------------------------------------------------------------------
    def add_flow(self, flow) -> None:
        """Attribute one expired NFStream flow (with :class:`edge.flows.WindowSlices`) to its devices.

        A TCP/UDP flow whose first packet came from a port below 49152 to an ephemeral port (RFC 6335)
        was seen mid-stream (started before the capture or after an idle expiry): its responder is
        taken to be the low-port side, so ports and *initiated* counts describe the service.
        """
        self.flows_seen += 1
        self.packets_seen += flow.bidirectional_packets
        src, dst, proto = flow.src_ip, flow.dst_ip, flow.protocol
        sport, dport = flow.src_port, flow.dst_port
        midstream = proto in (_TCP, _UDP) and sport < _EPHEMERAL_PORT <= dport and not flow.udps.first_syn
        service_port = sport if midstream else dport
        ends = []
        for side, addr, mac, peer in ((0, src, flow.src_mac, dst), (1, dst, flow.dst_mac, src)):
            if self._is_device(addr):
                self._mac_ip.setdefault(mac, addr)
                if ":" not in addr:
                    self._mac_ip4.setdefault(mac, addr)
                self._ip_mac.setdefault(addr, mac)
                ends.append((side, addr, peer))
            elif side == 0 and addr in ("0.0.0.0", "::") and mac and not _is_group_mac(mac):
                ends.append((side, mac, peer))  # no IP yet (DHCP discover): key by MAC
        if not ends:
            return
        app = flow.application_name or "Unknown"
        # nDPI names a flow it could not inspect by its port or by the IP owner ("AWS_EC2"). A guess by
        # port is kept for flows that carried payload; a guess by IP owner, or for bare packets such as
        # spoofed SYNs (whose random source port may match anything), is not evidence of a protocol.
        trusted = not flow.application_is_guessed or (
            flow.application_confidence == _NDPI_MATCH_BY_PORT and flow.udps.payload_seen)
        group = app_group(app) if trusted else "unknown"
        name = _TRANSPORT_NAMES.get(proto, f"IP/{proto}") if group == "unknown" else app.split(".", 1)[0]
        mcast = _is_group_mac(flow.dst_mac) or not _is_unicast(dst)
        first_idx = flow.bidirectional_first_seen_ms // self.window_ms
        u = flow.udps
        tcp_attempt = proto == _TCP and u.first_syn
        ported = proto in (_TCP, _UDP)
        for idx, s in u.slices.items():
            pk = s[F.S2D_PKTS] + s[F.D2S_PKTS]
            for side, dev, peer in ends:
                a = self._get(dev, idx)
                a.merge_slice(s)
                r = a.r
                o, i = (0, 1) if side == 0 else (1, 0)
                r[OUT_PKTS] += s[F.S2D_PKTS + o]
                r[IN_PKTS] += s[F.S2D_PKTS + i]
                r[OUT_BYTES] += s[F.S2D_BYTES + o]
                r[IN_BYTES] += s[F.S2D_BYTES + i]
                r[OUT_SYN] += s[F.S2D_SYN_ONLY + o]
                r[IN_SYN] += s[F.S2D_SYN_ONLY + i]
                if proto == _TCP:
                    r[TCP_PKTS] += pk
                elif proto == _UDP:
                    r[UDP_PKTS] += pk
                elif proto in (_ICMP, _ICMP6):
                    r[ICMP_PKTS] += pk
                else:
                    r[OTHER_PKTS] += pk
                if mcast:
                    r[MCAST_PKTS] += s[F.S2D_PKTS]
                r[FLOWS] += 1
                a.peers.add(peer)
                a.apps[group] = a.apps.get(group, 0.0) + pk
                outbound = (side == 0) != midstream
                a.add_peer_traffic(peer, outbound, pk, s[F.S2D_BYTES] + s[F.D2S_BYTES],
                                   service_port if ported else None)
                if idx == first_idx:
                    r[NEW_FLOWS] += 1
                    if outbound:
                        r[OUT_INIT] += 1
                        if a.out_dst_addrs is None:
                            a.out_dst_addrs, a.out_ports = set(), {}
                        a.out_dst_addrs.add(peer)
                        if ported:
                            a.out_ports[service_port] = a.out_ports.get(service_port, 0) + 1
                    else:
                        r[IN_INIT] += 1
                        if a.in_src_addrs is None:
                            a.in_src_addrs, a.in_ports = set(), {}
                        a.in_src_addrs.add(peer)
                        if ported:
                            a.in_ports[service_port] = a.in_ports.get(service_port, 0) + 1
                    if tcp_attempt:
                        r[CONN_ATT] += 1
                        if not u.synack_seen:
                            r[CONN_FAIL] += 1
                g = a.group(name, outbound)
                g.pkts += pk
                g.peers.add(peer)
                if ported:
                    g.ports[service_port] = g.ports.get(service_port, 0.0) + pk
                g.syn_only += s[F.S2D_SYN_ONLY] + s[F.D2S_SYN_ONLY]
                g.synack += s[F.SYNACK]
                g.rst += s[F.RST]

    def add_scan(self, scan: CaptureScan) -> None:
        """Attribute the ARP and other non-IP frames of a :class:`CaptureScan` (call after the flows).

        An ARP sender claiming an IP that is already bound to another MAC (first binding seen in IP
        traffic or earlier ARP) counts one ``arp_ip_mac_conflicts`` for the sender and one
        ``arp_victim_conflicts`` for each other site device it involves — the one whose address it
        claimed and the one it was addressed to — in the window of the ARP packet: the victim side of
        ARP spoofing (ATT&CK T1557.002), the impersonated host and the poisoned one, which send nothing
        unusual themselves. The sender becomes an inbound peer of those victim windows (``peers``,
        ``distinct_peers``, and first in ``top_peers``), as the address it talked to is one of the
        sender's, so an alert on a victim names who poisoned it.
        """
        bound: dict[str, str] = dict(self._ip_mac)
        for fr in sorted(scan.arp, key=lambda f: f.ts):
            # a dual-stack host's ARP belongs to its IPv4 address, whichever address it used first
            dev = self._mac_ip4.get(fr.hwsrc) or self._mac_ip.get(fr.hwsrc)
            if dev is None:
                dev = fr.psrc if fr.psrc != "0.0.0.0" and self._is_device(fr.psrc) else fr.hwsrc
            a = self._get(dev, int(fr.ts * 1000) // self.window_ms)
            r = a.r
            r[ARP_PKTS] += 1
            r[ARP_REPLIES] += fr.op == 2
            if fr.psrc != "0.0.0.0" and bound.setdefault(fr.psrc, fr.hwsrc) != fr.hwsrc:
                r[ARP_CONFLICTS] += 1
                for victim in (fr.psrc,) if fr.pdst == fr.psrc else (fr.psrc, fr.pdst):
                    if victim != dev and victim != "0.0.0.0" and self._is_device(victim):
                        v = self._get(victim, int(fr.ts * 1000) // self.window_ms)
                        v.r[ARP_VICTIM] += 1
                        v.peers.add(dev)
                        v.add_peer_traffic(dev, False, 1, fr.size_bytes, None, always=True)
                        if v.arp_forgers is None:
                            v.arp_forgers = set()
                        v.arp_forgers.add(dev)
            peer = fr.pdst if fr.pdst != "0.0.0.0" else ""
            if peer and peer != dev and fr.op in (1, 2):
                if fr.op == 1:
                    if a.arp_asked is None:
                        a.arp_asked = set()
                    a.arp_asked.add(peer)
                else:
                    if a.arp_answered is None:
                        a.arp_answered = set()
                    a.arp_answered.add(peer)
            self._add_l2(a, fr.ts, fr.size_bytes, peer, "ARP reply" if fr.op == 2 else "ARP")
        for fr in scan.l2:
            dev = self._mac_ip4.get(fr.src_mac) or self._mac_ip.get(fr.src_mac, fr.src_mac)
            a = self._get(dev, int(fr.ts * 1000) // self.window_ms)
            self._add_l2(a, fr.ts, fr.size_bytes, "", f"L2/0x{fr.ethertype:04x}")

    @staticmethod
    def _add_l2(a: _Acc, ts: float, size: int, peer: str, name: str) -> None:
        ms = ts * 1000.0
        r = a.r
        r[F.S2D_PKTS] += 1
        r[F.S2D_BYTES] += size
        r[F.SIZE_SUMSQ] += size * size
        if size < r[F.SIZE_MIN]:
            r[F.SIZE_MIN] = size
        if size > r[F.SIZE_MAX]:
            r[F.SIZE_MAX] = size
        if ms < r[F.FIRST_MS]:
            r[F.FIRST_MS] = ms
        if ms > r[F.LAST_MS]:
            r[F.LAST_MS] = ms
        r[OUT_PKTS] += 1
        r[OUT_BYTES] += size
        r[OTHER_PKTS] += 1
        a.apps["other"] = a.apps.get("other", 0.0) + 1
        g = a.group(name, True)
        g.pkts += 1
        if peer:
            a.peers.add(peer)
            g.peers.add(peer)
            a.add_peer_traffic(peer, True, 1, size, None)

    # -- output -----------------------------------------------------------------------------
    def columns(self) -> dict[str, object]:
        """The windows as columns: :data:`KEY_COLUMNS`, the features (float32 arrays), ``proto_text``, ``peers``,
        ``top_peers``."""
        keys = list(self._acc)
        accs = list(self._acc.values())
        raw = np.array([a.r for a in accs], dtype=np.float64).reshape(len(accs), RAW_LEN)
        feats = _features(raw, accs, self.window_s)
        feats[:, FEATURE_NAMES.index("in_src_max_fanout")] = _in_src_max_fanout(keys, accs)
        feats = feats.astype(np.float32)
        idx = np.array([k[1] for k in keys], dtype=np.float64)
        cols: dict[str, object] = {
            "site_id": [self.site_id] * len(keys),
            "device_id": [k[0] for k in keys],
            "t_start": idx * self.window_ms / 1000.0,
            "t_end": (idx + 1) * self.window_ms / 1000.0,
            "capture": [self.capture] * len(keys),
        }
        cols.update({name: feats[:, j] for j, name in enumerate(FEATURE_NAMES)})
        cols["proto_text"] = [window_text(a.groups.values()) for a in accs]
        cols["peers"] = [sorted(a.peers) for a in accs]
        cols["top_peers"] = [a.top_peers() for a in accs]
        return cols


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise a / b with 0 where b == 0."""
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _features(raw: np.ndarray, accs: Sequence[_Acc], window_s: float) -> np.ndarray:
    """Vectorised window statistics: ``raw`` (n, RAW_LEN) → (n, N_FEATURES) in FEATURE_NAMES order."""
    c = {name: i for i, name in enumerate(FEATURE_NAMES)}
    out = np.zeros((raw.shape[0], len(FEATURE_NAMES)), dtype=np.float64)
    pkts = raw[:, OUT_PKTS] + raw[:, IN_PKTS]
    byts = raw[:, OUT_BYTES] + raw[:, IN_BYTES]
    tcp = raw[:, TCP_PKTS]
    n_iat = raw[:, F.IAT_N]
    has_iat = n_iat > 0
    iat_mean = _div(raw[:, F.IAT_SUM], n_iat)
    size_mean = _div(byts, pkts)

    def put(name: str, v: np.ndarray) -> None:
        out[:, c[name]] = v

    put("pkts", pkts)
    put("bytes", byts)
    put("out_pkts", raw[:, OUT_PKTS])
    put("in_pkts", raw[:, IN_PKTS])
    put("out_bytes", raw[:, OUT_BYTES])
    put("in_bytes", raw[:, IN_BYTES])
    put("pkts_per_s", pkts / window_s)
    put("bytes_per_s", byts / window_s)
    put("in_bytes_fraction", _div(raw[:, IN_BYTES], byts))
    put("active_s", np.where(pkts > 0, np.maximum(0.0, raw[:, F.LAST_MS] - raw[:, F.FIRST_MS]) / 1000.0, 0.0))
    put("flows", raw[:, FLOWS])
    put("new_flows", raw[:, NEW_FLOWS])
    put("out_initiated_flows", raw[:, OUT_INIT])
    put("in_initiated_flows", raw[:, IN_INIT])
    put("pkts_per_flow_mean", _div(pkts - raw[:, ARP_PKTS], raw[:, FLOWS]))
    put("tcp_pkt_fraction", _div(tcp, pkts))
    put("udp_pkt_fraction", _div(raw[:, UDP_PKTS], pkts))
    put("icmp_pkt_fraction", _div(raw[:, ICMP_PKTS], pkts))
    put("other_pkt_fraction", _div(raw[:, OTHER_PKTS], pkts))
    put("multicast_pkt_fraction", _div(raw[:, MCAST_PKTS], pkts))
    put("out_syn_only_pkts", raw[:, OUT_SYN])
    put("in_syn_only_pkts", raw[:, IN_SYN])
    put("syn_only_ratio", _div(raw[:, OUT_SYN] + raw[:, IN_SYN], tcp))
    put("synack_pkts", raw[:, F.SYNACK])
    put("rst_pkts", raw[:, F.RST])
    put("rst_ratio", _div(raw[:, F.RST], tcp))
    put("fin_pkts", raw[:, F.FIN])
    put("psh_pkts", raw[:, F.PSH])
    put("ece_cwr_pkts", raw[:, F.ECE_CWR])
    put("tcp_conn_attempts", raw[:, CONN_ATT])
    put("tcp_failed_conn_fraction", _div(raw[:, CONN_FAIL], raw[:, CONN_ATT]))
    put("iat_mean_ms", iat_mean)
    put("iat_std_ms", np.sqrt(np.maximum(0.0, _div(raw[:, F.IAT_SUMSQ], n_iat) - iat_mean**2)))
    put("iat_min_ms", np.where(has_iat, raw[:, F.IAT_MIN], 0.0))
    put("iat_max_ms", np.where(has_iat, raw[:, F.IAT_MAX], 0.0))
    put("pkt_size_mean_bytes", size_mean)
    put("pkt_size_std_bytes", np.sqrt(np.maximum(0.0, _div(raw[:, F.SIZE_SUMSQ], pkts) - size_mean**2)))
    put("pkt_size_min_bytes", np.where(pkts > 0, raw[:, F.SIZE_MIN], 0.0))
    put("pkt_size_max_bytes", np.where(pkts > 0, raw[:, F.SIZE_MAX], 0.0))
    put("out_pkt_size_mean_bytes", _div(raw[:, OUT_BYTES], raw[:, OUT_PKTS]))
    put("in_pkt_size_mean_bytes", _div(raw[:, IN_BYTES], raw[:, IN_PKTS]))
    put("arp_pkts", raw[:, ARP_PKTS])
    put("arp_reply_pkts", raw[:, ARP_REPLIES])
    put("arp_ip_mac_conflicts", raw[:, ARP_CONFLICTS])
    put("arp_victim_conflicts", raw[:, ARP_VICTIM])
    # per-window sets and maps
    for j, a in enumerate(accs):
        out[j, c["distinct_peers"]] = len(a.peers)
        if a.out_dst_addrs is not None:
            out[j, c["out_distinct_dst_addrs"]] = len(a.out_dst_addrs)
            out[j, c["out_distinct_dst_ports"]] = len(a.out_ports)
            out[j, c["out_dst_port_entropy_bits"]] = _entropy_bits(a.out_ports)
        if a.in_src_addrs is not None:
            out[j, c["in_distinct_src_addrs"]] = len(a.in_src_addrs)
            out[j, c["in_distinct_dst_ports"]] = len(a.in_ports)
            out[j, c["in_dst_port_entropy_bits"]] = _entropy_bits(a.in_ports)
        for g, n in a.apps.items():
            out[j, c[f"app_{g}_pkt_fraction"]] = n
    for g in APP_GROUP_NAMES:
        k = c[f"app_{g}_pkt_fraction"]
        out[:, k] = _div(out[:, k], pkts)
    return out


def _in_src_max_fanout(keys: Sequence[tuple[str, int]], accs: Sequence[_Acc]) -> np.ndarray:
    """``in_src_max_fanout`` of each (device, window) key: site-level context a single window lacks.

    A peer's fan-out in window *k* is the larger of (a) the devices of the site it initiated contact
    with — new flows towards them, or ARP requests they answered — and (b) when the peer is itself a
    device, the distinct addresses it initiated flows to or sent ARP requests for (RFC 826), answered or
    not. Each device gets the largest fan-out among its own initiators. A horizontal scan or host
    discovery (ATT&CK T1046) thus marks every host it touched, even one whose only trace is an ARP reply;
    in the spirit of the distinct-destination scan counters of Bro/Zeek (Paxson, 1999).
    Returns an array ``(len(keys),)`` of counts.
    """
    initiated: dict[int, dict[str, int]] = {}  # window → peer → devices it contacted
    own: dict[tuple[str, int], int] = {}  # (device, window) → addresses it contacted
    sources: list[set[str]] = []
    for (dev, idx), a in zip(keys, accs):
        src = (a.in_src_addrs or set()) | (a.arp_answered or set())
        sources.append(src)
        cnt = initiated.setdefault(idx, {})
        for p in src:
            cnt[p] = cnt.get(p, 0) + 1
        own[(dev, idx)] = len((a.out_dst_addrs or set()) | (a.arp_asked or set()))
    out = np.zeros(len(keys), dtype=np.float64)
    for j, ((_, idx), src) in enumerate(zip(keys, sources)):
        cnt = initiated[idx]
        out[j] = max((max(cnt[p], own.get((p, idx), 0)) for p in src), default=0)
    return out


def count_new_peers(seen: dict, peers, max_peers: int | None = None) -> int:
    """How many of ``peers`` are not yet keys of ``seen`` (one device's insertion-ordered peer memory),
    adding them; beyond ``max_peers`` the oldest are forgotten first (``None``: unbounded). The one
    ``new_peers`` rule of the window table (:func:`window_columns`) and the online fusion
    (:class:`edge.online.SiteFusion`)."""
    n = 0
    for p in peers:
        if p not in seen:
            seen[p] = None
            n += 1
            if max_peers is not None and len(seen) > max_peers:
                del seen[next(iter(seen))]
    return n


#: Columns of the Window table, in order (:func:`window_columns`, :func:`windows_frame`).
WINDOW_COLUMNS: tuple[str, ...] = (*KEY_COLUMNS, *FEATURE_NAMES, "proto_text", "peers", "top_peers")
_TEXT_COLUMNS = ("site_id", "device_id", "capture", "proto_text")


def _objects(values) -> np.ndarray:
    """A 1-D object array of ``values`` (lists stay list elements, never a second dimension)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


class WindowColumns:
    """Windows as columns without pandas: what the live edge daemon passes from its capture to its fusion, so
    that its long-running process never loads pandas (about 40 MiB; issue "Edge speed and memory").

    Reads like the Window DataFrame where the daemon reads it: ``len()`` is the number of windows,
    ``w[name]`` a column ``(n,)`` (float32 features, float64 ``t_start``/``t_end``, object arrays of str
    and of peer lists), ``name in w`` and :attr:`columns`; :meth:`to_frame` is the DataFrame. Built by
    :func:`window_columns`.

    Raises
    ------
    ValueError
        If the columns differ in length.
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"window columns of different lengths: {sorted(lengths)}")
        self._cols = dict(columns)
        self._n = lengths.pop() if lengths else 0

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def __contains__(self, name: object) -> bool:
        return name in self._cols

    @property
    def columns(self) -> list[str]:
        """Column names, in the order of :data:`WINDOW_COLUMNS`."""
        return list(self._cols)

    def take(self, rows: np.ndarray) -> WindowColumns:
        """The windows at ``rows`` (a boolean mask ``(n,)`` or indices), in that order."""
        return WindowColumns({k: v[rows] for k, v in self._cols.items()})

    def to_frame(self):
        """The Window DataFrame (imports pandas)."""
        import pandas as pd

        df = pd.DataFrame(self._cols, columns=list(self._cols))
        for c in _TEXT_COLUMNS:
            if c in df.columns:
                df[c] = df[c].astype(object)
        return df


def window_columns(parts: Sequence[dict[str, object]]) -> WindowColumns:
    """Concatenate :meth:`WindowBuilder.columns` of several captures into the Window table, without pandas.

    Rows are sorted by ``(site_id, device_id, t_start)`` (stable) and ``new_peers`` is set per (site, device):
    peers never seen in an earlier window of this table (time order, :func:`count_new_peers`).
    """
    parts = [p for p in parts if len(p["device_id"])]
    cols: dict[str, np.ndarray] = {}
    for c in WINDOW_COLUMNS:
        if c in FEATURE_NAMES or c in ("t_start", "t_end"):
            dtype = np.float32 if c in FEATURE_NAMES else np.float64
            cols[c] = np.concatenate([np.asarray(p[c], dtype) for p in parts]) if parts else np.zeros(0, dtype)
        else:
            cols[c] = _objects([v for p in parts for v in p[c]])
    order = np.lexsort((cols["t_start"], cols["device_id"].astype(str), cols["site_id"].astype(str)))
    cols = {k: v[order] for k, v in cols.items()}
    seen: dict[tuple[str, str], dict] = {}
    new = np.zeros(len(order), dtype=np.float32)
    for i, (site, dev, peers) in enumerate(zip(cols["site_id"], cols["device_id"], cols["peers"])):
        new[i] = count_new_peers(seen.setdefault((site, dev), {}), peers)
    cols["new_peers"] = new
    return WindowColumns(cols)


def windows_frame(parts: Sequence[dict[str, object]]):
    """:func:`window_columns` as the Window DataFrame (imports pandas)."""
    return window_columns(parts).to_frame()


def extract_windows(
    paths: Iterable[str | Path],
    *,
    window_s: float = DEFAULT_WINDOW_S,
    site_id: str = "site",
    devices: str | Callable[[str], bool] = "local",
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S,
    active_timeout_s: int = DEFAULT_ACTIVE_TIMEOUT_S,
    on_packets: Callable[[int], None] | None = None,
    on_scan: Callable[[CaptureScan], None] | None = None,
) -> pd.DataFrame:
    """Meter flows of each capture and return its per-device windows (the Window contract).

    Parameters
    ----------
    paths : iterable of str or Path
        pcap/pcapng files; each is metered on its own, windows are concatenated.
    window_s : float, default 5.0
        Window length in seconds.
    site_id : str, default "site"
    devices : {"local", "all"} or callable, default "local"
        Which addresses are devices (module docstring).
    idle_timeout_s, active_timeout_s : int
        NFStream flow timeouts in seconds.
    on_packets : callable, optional
        Called with the number of packets metered since its last call, every :data:`_PROGRESS_FLOWS` flows
        and at the end of each file (progress bars; a spoofed flood has one flow per packet).
    on_scan : callable, optional
        Called with each file's :class:`~edge.capture.CaptureScan` (its packet count) before metering.

    Returns
    -------
    DataFrame
        One row per (device, window): ``site_id, device_id, t_start, t_end, capture``, the
        float32 statistics of :data:`edge.features.FEATURE_NAMES`, ``proto_text``, ``peers``, ``top_peers``;
        sorted by ``(site_id, device_id, t_start)``.

    Raises
    ------
    edge.capture.CaptureError
        If a file is not a pcap/pcapng capture; :class:`edge.capture.UnsupportedLinkTypeError` if its
        link type cannot be metered. A damaged capture is read up to the damage with a warning naming
        the record instead, and packets read but not metered are counted in a warning too.
    ValueError
        For invalid window or timeout settings.
    """
    from edge import flows  # NFStream: only where a capture file is metered here

    cfg = flows.MeterConfig(window_s=window_s, idle_timeout_s=idle_timeout_s, active_timeout_s=active_timeout_s)
    parts: list[dict[str, object]] = []
    for path in paths:
        scan = scan_capture(path)
        if on_scan is not None:
            on_scan(scan)
        builder = WindowBuilder(cfg.window_s, site_id, Path(path).name, devices)
        if scan.packets:
            metered = reported = 0
            for flow in flows.meter_flows(scan.path, cfg):
                builder.add_flow(flow)
                metered += flow.bidirectional_packets
                if on_packets is not None and builder.flows_seen % _PROGRESS_FLOWS == 0:
                    on_packets(metered - reported)
                    reported = metered
            if on_packets is not None and metered > reported:
                on_packets(metered - reported)
            builder.add_scan(scan)
            unused = scan.packets - metered - len(scan.arp) - len(scan.l2)
            if unused > 0:  # read, but neither in a flow nor an ARP/L2 frame: lost to the windows
                log.warning("%s: %d of %d packets read could not be metered (not IP, ARP or Ethernet frames NFStream "
                            "parses, or malformed headers; link type %d); the windows leave them out", path, unused,
                            scan.packets, scan.link_type)
            if on_packets is not None:
                on_packets(len(scan.arp) + len(scan.l2))
        else:
            log.warning("%s: capture holds no packets", path)
        parts.append(builder.columns())
        log.info("%s: %d packets, %d flows → %d windows", path, scan.packets, builder.flows_seen, len(builder))
    return windows_frame(parts)
