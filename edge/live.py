"""Live capture for the edge daemon: windows that close while packets keep arriving.

Offline extraction (:func:`edge.windows.extract_windows`) sees every flow only when it expires — up to
120 s (idle) or 1800 s (active) after its packets — which is fine for a file but would hold a live window
open for half an hour. Here NFStream meters the interface with short *piece* timeouts
(:data:`edge.meter_child.PIECE_IDLE_S`, :data:`~edge.meter_child.PIECE_ACTIVE_S`), so every flow is
handed over in pieces at most a few seconds old, and a stitcher joins the pieces back into the flows the
offline meter would have seen (same 5-tuple, gap ≤ 120 s, age < 1800 s): one flow counted once per
window, ``new_flows``/initiated counts and TCP connection attempts only in its first window, the
direction of its first packet, the inter-arrival time across a piece boundary, the best nDPI
classification so far. A window
``[t, t + w)`` closes when the capture clock passes ``t + w + close_delay_s`` (default
:data:`DEFAULT_CLOSE_DELAY_S`, enough for any piece holding its packets to have expired); its windows go
through the same :class:`~edge.windows.WindowBuilder` as offline extraction. Packets of a window that
reach the stitcher after it closed are dropped and counted (``late_packets``).

Known differences from offline extraction (measured on the bundled capture by
``tests/test_transport_live.py``): nDPI classifies each piece on its own packets, so a flow whose first
piece was too short to classify can carry a weaker (guessed) application name in its first windows; a
SYN-ACK arriving in a later piece than its SYN counts as a failed connection; ARP IP↔MAC conflicts are
checked against the bindings learnt so far rather than over the whole capture.

NFStream runs in a spawned child process of its own (:mod:`edge.meter_child`; it cannot be stopped from
another thread while it waits for packets), which :meth:`close` terminates together with its meter. On an
interface that child captures the frames itself and feeds NFStream through a FIFO with clock ticks
(:func:`edge.meter_child.interface_child`): NFStream's clock only moves with packets, so without ticks the
last packets of a window would wait for the next packet on the wire. Live capture needs CAP_NET_RAW
(:func:`check_live_capture`) and an Ethernet-framed interface (Ethernet, Wi-Fi, veth, bridge, loopback).
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from edge import meter_child
from edge import slices as F
from edge.footprint import release_free_memory
from edge.meter_child import ETHERNET_ARPHRD, PIECE_ACTIVE_S, PIECE_IDLE_S

if TYPE_CHECKING:
    from edge.windows import WindowColumns

log = logging.getLogger(__name__)

#: Seconds after a window's end before it closes (piece timeouts + meter scan + margin).
DEFAULT_CLOSE_DELAY_S = float(PIECE_IDLE_S + PIECE_ACTIVE_S + 1)
#: Flow timeouts of offline extraction, re-applied when stitching pieces (s).
FLOW_IDLE_S, FLOW_ACTIVE_S = 120, 1800
#: Most flows the stitcher remembers after their windows closed (kept only to join a later piece of the same
#: flow, up to FLOW_IDLE_S). Under a flood of spoofed sources every packet is a new flow, so without a bound
#: this memory grows with rate × 120 s; above it the oldest such flows are forgotten early and counted
#: (``Stitcher.forgotten_flows``): a later piece of one then starts a new flow (one more ``new_flows``).
MAX_REMEMBERED_FLOWS = 16_384
#: Batches (of ≤ 64 pieces) waiting between the metering child and the stitcher.
OUT_QUEUE_BATCHES = 64


#: Linux capability number of CAP_NET_RAW (linux/capability.h).
CAP_NET_RAW = 13

_MINS = (F.IAT_MIN, F.SIZE_MIN, F.FIRST_MS)
_MAXS = (F.IAT_MAX, F.SIZE_MAX, F.LAST_MS)
_SUMS = tuple(k for k in range(F.SLICE_LEN) if k not in _MINS + _MAXS)
_SWAP = ((F.S2D_PKTS, F.D2S_PKTS), (F.S2D_BYTES, F.D2S_BYTES), (F.S2D_SYN_ONLY, F.D2S_SYN_ONLY))
_NDPI_MATCH_BY_PORT = 1


# -- capability check -----------------------------------------------------------------------------------

def effective_capabilities(status_text: str | None = None) -> int:
    """The ``CapEff`` bit mask of this process (from ``/proc/self/status``, or ``status_text``).

    Returns 0 when the field cannot be read (not Linux).
    """
    if status_text is None:
        try:
            status_text = Path("/proc/self/status").read_text()
        except OSError:
            return 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def has_cap_net_raw(status_text: str | None = None) -> bool:
    """True when the process may open raw sockets (CAP_NET_RAW in its effective set)."""
    return bool(effective_capabilities(status_text) >> CAP_NET_RAW & 1)


def check_live_capture(iface: str, *, status_text: str | None = None) -> None:
    """Check, before starting, that ``iface`` exists and that this process may capture on it.

    Raises
    ------
    ValueError
        If the interface does not exist (naming the ones that do).
    PermissionError
        Without CAP_NET_RAW, with how to grant it.
    """
    net = Path("/sys/class/net")
    if net.is_dir() and not (net / iface).exists():
        have = ", ".join(sorted(p.name for p in net.iterdir()))
        raise ValueError(f"--iface {iface!r}: no such network interface (this host has: {have})")
    kind = net / iface / "type"
    if kind.is_file() and int(kind.read_text().strip() or 0) not in ETHERNET_ARPHRD:
        raise ValueError(f"--iface {iface!r}: not an Ethernet-framed interface (type {kind.read_text().strip()}); "
                         "capture on the bridge or physical port instead")
    if not has_cap_net_raw(status_text):
        raise PermissionError(
            f"live capture on {iface} needs CAP_NET_RAW, which this process lacks (uid {os.getuid()}): run as root, "
            "or grant the capability to the interpreter: sudo setcap cap_net_raw,cap_net_admin=eip "
            "\"$(readlink -f .venv/bin/python)\"; or replay a capture with --pcap")


# -- stitching ---------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Flow:
    """A flow as offline metering would see it, assembled from pieces."""

    src_ip: str
    src_port: int
    dst_ip: str
    dst_port: int
    protocol: int
    src_mac: str
    dst_mac: str
    first_ms: float
    last_ms: float
    app: tuple  # (name, is_guessed, confidence)
    first_syn: bool
    synack_seen: bool
    payload_seen: bool
    packets: int = 0
    slices: dict = field(default_factory=dict)

    def view(self, slices: dict) -> SimpleNamespace:
        """What :meth:`edge.windows.WindowBuilder.add_flow` reads of an NFStream flow."""
        return SimpleNamespace(
            bidirectional_packets=int(sum(s[F.S2D_PKTS] + s[F.D2S_PKTS] for s in slices.values())),
            src_ip=self.src_ip, dst_ip=self.dst_ip, protocol=self.protocol, src_port=self.src_port,
            dst_port=self.dst_port, src_mac=self.src_mac, dst_mac=self.dst_mac, application_name=self.app[0],
            application_is_guessed=self.app[1], application_confidence=self.app[2],
            bidirectional_first_seen_ms=self.first_ms,
            udps=SimpleNamespace(first_syn=self.first_syn, synack_seen=self.synack_seen,
                                 payload_seen=self.payload_seen, slices=slices))


def _interned(x):
    """``x`` interned when it is a string (one copy of a value many flows share), else ``x``."""
    return sys.intern(x) if isinstance(x, str) else x


def _merge(dst: list, s: list) -> None:
    for k in _SUMS:
        dst[k] += s[k]
    for k in _MINS:
        dst[k] = min(dst[k], s[k])
    for k in _MAXS:
        dst[k] = max(dst[k], s[k])


class Stitcher:
    """Joins flow pieces into offline-equivalent flows and hands out the slices of closed windows.

    Parameters
    ----------
    window_ms : int
        Window length in milliseconds.
    max_remembered : int
        Most flows kept after their windows closed (:data:`MAX_REMEMBERED_FLOWS`); flows still holding
        slices of open windows are never forgotten (they are bounded by the packet rate × the window length
        and close delay).

    Attributes
    ----------
    forgotten_flows : int
        Flows forgotten before their idle timeout because of ``max_remembered`` (load shedding).
    late_packets : int
        Packets of windows already closed when their piece arrived (dropped).
    """

    def __init__(self, window_ms: int, max_remembered: int = MAX_REMEMBERED_FLOWS) -> None:
        if max_remembered < 1:
            raise ValueError(f"max_remembered must be ≥ 1 flow, got {max_remembered!r}")
        self.window_ms = window_ms
        self.max_remembered = max_remembered
        self.forgotten_flows = 0
        self.flows: dict[tuple, _Flow] = {}
        self.closed_through: int | None = None  # last window index handed out
        self.late_packets = 0
        self.clock_ms = -math.inf  # newest packet time seen in a piece
        self.indices: set[int] = set()  # windows holding slices not handed out yet
        self.retired: list[_Flow] = []  # replaced flows (idle or active timeout) still holding slices

    def add(self, p: tuple) -> None:
        """Take one piece (:func:`edge.meter_child._piece`)."""
        (src, sport, dst, dport, proto, vlan, smac, dmac, first, last, pkts, app, guessed, conf, fsyn, synack,
         payload, slices) = p
        self.clock_ms = max(self.clock_ms, last)
        a, b = (src, sport), (dst, dport)
        key = (proto, vlan, min(a, b), max(a, b))
        f = self.flows.get(key)
        new = f is None or first - f.last_ms > FLOW_IDLE_S * 1000 or first - f.first_ms >= FLOW_ACTIVE_S * 1000
        slices = {int(i): array("d", s) for i, s in slices.items()}  # 8 bytes a counter, not a boxed float
        if new:
            if f is not None and f.slices:  # the old flow's windows are not closed yet: keep them
                self.retired.append(f)
            # strings that repeat across flows (a server's address, MACs, application names) are kept once
            f = self.flows[key] = _Flow(src, sport, _interned(dst), dport, proto, _interned(smac), _interned(dmac),
                                        first, last, (_interned(app), guessed, conf), fsyn, synack, payload)
        else:
            if (src, sport) != (f.src_ip, f.src_port):  # the piece began with a packet of the other side
                for s in slices.values():
                    for i, j in _SWAP:
                        s[i], s[j] = s[j], s[i]
            first_idx = min(slices)
            iat = first - f.last_ms  # the piece's first packet, timed from the flow's previous one
            s = slices[first_idx]
            s[F.IAT_N] += 1
            s[F.IAT_SUM] += iat
            s[F.IAT_SUMSQ] += iat * iat
            s[F.IAT_MIN] = min(s[F.IAT_MIN], iat)
            s[F.IAT_MAX] = max(s[F.IAT_MAX], iat)
            f.last_ms = max(f.last_ms, last)
            f.synack_seen |= synack
            f.payload_seen |= payload
            if f.app[1] and not guessed:  # a real classification replaces a guess
                f.app = (app, guessed, conf)
        f.packets += pkts
        for idx, s in slices.items():
            if self.closed_through is not None and idx <= self.closed_through:
                self.late_packets += int(s[F.S2D_PKTS] + s[F.D2S_PKTS])
                continue
            self.indices.add(idx)
            cur = f.slices.get(idx)
            if cur is None:
                f.slices[idx] = s
            else:
                _merge(cur, s)

    def take(self, through: int) -> list[SimpleNamespace]:
        """Flow views holding the slices of windows ``≤ through`` (removed here); forgets expired flows."""
        views = []
        if not any(i <= through for i in self.indices):
            self.closed_through = through if self.closed_through is None else max(self.closed_through, through)
            return views
        self.indices = {i for i in self.indices if i > through}
        horizon = (through + 1) * self.window_ms - FLOW_IDLE_S * 1000
        done = 0  # remembered flows holding no slices
        for key, f in [*self.flows.items(), *((None, r) for r in self.retired)]:
            ready = {i: s for i, s in f.slices.items() if i <= through}
            if ready:
                if len(ready) == len(f.slices):
                    f.slices = {}  # a fresh empty dict holds no key table (~170 bytes less per remembered flow)
                else:
                    for i in ready:
                        del f.slices[i]
                views.append(f.view(ready))
            if key is not None and not f.slices:
                if f.last_ms < horizon:
                    del self.flows[key]
                else:
                    done += 1
        self.retired = [r for r in self.retired if r.slices]
        self.closed_through = through if self.closed_through is None else max(self.closed_through, through)
        self._shed(done)
        return views

    def _shed(self, done: int) -> None:
        """Forget the oldest of the ``done`` flows that hold no slices while more than ``max_remembered`` are
        kept (down to 90 % of it, so this runs rarely). Dict order is creation order: oldest first."""
        if done <= self.max_remembered:
            return
        target = done - int(self.max_remembered * 0.9)
        drop = []
        for key, f in self.flows.items():
            if not f.slices:
                drop.append(key)
                if len(drop) >= target:
                    break
        for key in drop:
            del self.flows[key]
        self.forgotten_flows += len(drop)
        log.warning("stitcher: %d flows past their windows exceed the bound of %d; forgot the %d oldest early "
                    "(%d in all)", done, self.max_remembered, len(drop), self.forgotten_flows)


def _step_builder(window_s: float, site_id: str, capture: str, devices: str, mac_ip: dict, ip_mac: dict,
                  mac_ip4: dict | None = None):
    """A :class:`~edge.windows.WindowBuilder` for one closing step that shares the address book learnt so far
    (MAC ↔ IP bindings used to attribute ARP frames), as one offline pass over the capture would."""
    from edge.windows import WindowBuilder

    b = WindowBuilder(window_s, site_id, capture, devices)
    b._mac_ip = mac_ip  # shared on purpose: bindings persist across steps
    b._ip_mac = ip_mac
    b._mac_ip4 = mac_ip4 if mac_ip4 is not None else {}
    return b


class LiveWindows:
    """Closed window slots of a live interface (or of a capture file metered the same way, for tests).

    Iterating yields ``(t_end, windows)`` for every slot in time order, empty slots included, like
    :class:`edge.daemon.PcapReplay`; ``windows`` is a :class:`edge.windows.WindowColumns` (the Window table
    without pandas, which this process never loads; ``windows.to_frame()`` is the DataFrame).

    Parameters
    ----------
    source : str or Path
        Interface name, or a capture file (then the clock is the capture's: a slot closes once pieces
        ``close_delay_s`` past its end have been seen, and everything is flushed at the end of the file).
    site_id : str
    window_s : float
    devices : str
    stop : threading.Event
    close_delay_s : float
        Seconds after a window's end before it closes.

    max_remembered_flows : int
        Bound of the stitcher's memory of flows whose windows closed (:data:`MAX_REMEMBERED_FLOWS`).

    Attributes
    ----------
    late_packets : int
        Packets dropped because they reached the stitcher after their window closed.
    forgotten_flows : int
        Flows the stitcher forgot early to stay within ``max_remembered_flows`` (load shed under floods).
    """

    def __init__(self, source, site_id: str, window_s: float, devices: str, stop: threading.Event, *,
                 close_delay_s: float = DEFAULT_CLOSE_DELAY_S,
                 max_remembered_flows: int = MAX_REMEMBERED_FLOWS) -> None:
        if not close_delay_s >= 0:
            raise ValueError(f"--close-delay must be ≥ 0 seconds, got {close_delay_s!r}")
        self.source = str(source)
        self.is_file = Path(self.source).is_file()
        self.site_id, self.window_s, self.devices, self.stop = site_id, window_s, devices, stop
        self.close_delay_ms = close_delay_s * 1000
        self.window_ms = max(1, round(window_s * 1000))
        self.late_packets = 0
        self.forgotten_flows = 0
        self.max_remembered_flows = max_remembered_flows
        self._proc = None
        self._tmpdir: str | None = None

    def _start_l2(self, sink: deque) -> float | None:
        """Capture start (epoch s); for a file, also its ARP and other non-IP frames, in time order.

        The pass over a file (:func:`edge.capture.scan_capture`) runs in a short-lived spawned process: the
        capture reader it uses (scapy) loads some 20 MiB of tables, its MAC-vendor database among them, that
        the long-running daemon would keep for nothing. Its errors (:class:`edge.capture.CaptureError`) are
        raised here as they are.
        """
        if not self.is_file:
            return time.time()
        from concurrent.futures import ProcessPoolExecutor

        from edge.capture import scan_capture

        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            scan = pool.submit(scan_capture, self.source).result()
        sink.extend(sorted(scan.arp + scan.l2, key=lambda f: f.ts))
        return scan.first_ts

    def __iter__(self) -> Iterator[tuple[float, WindowColumns]]:
        from edge.windows import window_columns

        # spawn, not fork: the caller (a daemon with gRPC threads, a test process with Ray threads) may hold
        # locks at fork time, and a forked child can then deadlock; NFStream forks its meter from this clean
        # child. The targets are module-level functions, and every entry point guards its __main__.
        ctx = mp.get_context("spawn")
        out = ctx.Queue(maxsize=OUT_QUEUE_BATCHES)
        # not daemonic: NFStream's own meter is a (daemonic) child of it; the atexit hook ends it if the
        # caller never closes this object (it runs before multiprocessing joins its children)
        target = meter_child.file_child if self.is_file else meter_child.interface_child
        self._proc = ctx.Process(target=target, args=(self.source, self.window_ms, out), daemon=False,
                                 name=f"{meter_child.PROCESS_NAME_PREFIX}{self.site_id}")
        self._proc.start()
        atexit.register(self.close)
        l2: deque = deque()
        l2_lock = threading.Lock()
        stitcher = Stitcher(self.window_ms, self.max_remembered_flows)
        self._empty = window_columns([])
        mac_ip: dict = {}
        ip_mac: dict = {}
        self._mac_ip4: dict = {}
        try:
            t0 = self._start_l2(l2)
            next_k = None if t0 is None else int(t0 * 1000) // self.window_ms
            ended = False
            while not self.stop.is_set():
                try:
                    kind, payload = out.get(timeout=0.25)
                except queue.Empty:
                    kind, payload = None, None
                if kind == "error":
                    raise RuntimeError(f"live capture on {self.source} failed: {payload}")
                if kind == "pieces":
                    for p in payload:
                        stitcher.add(p)
                        if next_k is None:
                            next_k = int(p[8]) // self.window_ms
                elif kind == "l2":
                    with l2_lock:
                        l2.extend(payload)
                elif kind == "tmpdir":
                    self._tmpdir = payload
                elif kind == "end":
                    ended = True
                if next_k is None:
                    if ended:
                        return
                    continue
                if ended:
                    last_ms = max(stitcher.clock_ms, l2[-1].ts * 1000 if l2 else -math.inf)
                    watermark = last_ms + self.window_ms
                elif self.is_file:
                    watermark = stitcher.clock_ms - self.close_delay_ms
                else:
                    watermark = time.time() * 1000 - self.close_delay_ms
                if not math.isfinite(watermark):
                    continue
                through = int(watermark // self.window_ms) - 1  # last slot whose end is ≤ the watermark
                if through < next_k:
                    if ended:
                        return
                    continue
                for k in range(next_k, through + 1):
                    if self.stop.is_set():
                        return
                    yield (k + 1) * self.window_ms / 1000.0, self._close(k, stitcher, l2, l2_lock, mac_ip, ip_mac,
                                                                          window_columns)
                next_k = through + 1
                release_free_memory()  # the closed slots' flows are garbage now (edge.footprint)
                self.late_packets = stitcher.late_packets
                self.forgotten_flows = stitcher.forgotten_flows
                if ended:
                    return
        finally:
            self.close()

    def _close(self, k: int, stitcher: Stitcher, l2: list, l2_lock, mac_ip, ip_mac,
               window_columns) -> WindowColumns:
        views = stitcher.take(k)
        end_s = (k + 1) * self.window_ms / 1000.0
        due = []
        with l2_lock:
            while l2 and l2[0].ts < end_s:
                due.append(l2.popleft())
        if not views and not due:
            return self._empty
        builder = _step_builder(self.window_s, self.site_id, Path(self.source).name, self.devices, mac_ip, ip_mac,
                                self._mac_ip4)
        for view in views:
            builder.add_flow(view)
        start_s = k * self.window_ms / 1000.0
        late = [f for f in due if int(f.ts * 1000) // self.window_ms < k]
        stitcher.late_packets += len(late)
        due = [f for f in due if int(f.ts * 1000) // self.window_ms == k]
        arp = [f for f in due if hasattr(f, "op")]
        other = [f for f in due if not hasattr(f, "op")]
        builder.add_scan(SimpleNamespace(arp=arp, l2=other))
        w = window_columns([builder.columns()])
        return w.take(w["t_start"] >= start_s - 1e-9)

    def close(self) -> None:
        """Terminate the capture process (and NFStream's meter). Idempotent."""
        if self._proc is not None:
            for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                if self._proc.exitcode is not None:
                    break
                pid = self._proc.pid
                try:
                    if os.getpgid(pid) == pid:
                        os.killpg(pid, sig)  # the child and NFStream's meter
                    else:  # the child has not made its group yet, so it has no meter yet either
                        os.kill(pid, sig)
                except ProcessLookupError:
                    break
                self._proc.join(wait)
            self._proc.join(1)
            self._proc = None
            atexit.unregister(self.close)
        if self._tmpdir is not None:  # the FIFO of a killed interface child
            import shutil

            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
