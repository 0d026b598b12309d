"""Bidirectional flow metering with NFStream, sliced into fixed time windows by one small plugin.

NFStream (nDPI inside) meters biflows keyed by the 5-tuple with idle/active timeouts and names each
flow's application. A window statistic, however, needs the packets of a flow that fall inside one
window, not the whole flow: :class:`WindowSlices` keeps, per flow, one small counter vector per
window the flow touches (``flow.udps.slices``, window index → :class:`Slice` values).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nfstream import NFPlugin, NFStreamer

from edge.config import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_WINDOW_S

# the layout of one slice vector (list of floats, one per window a flow touches), re-exported from here
from edge.slices import (  # noqa: F401
    D2S_BYTES,
    D2S_PKTS,
    D2S_SYN_ONLY,
    ECE_CWR,
    FIN,
    FIRST_MS,
    IAT_MAX,
    IAT_MIN,
    IAT_N,
    IAT_SUM,
    IAT_SUMSQ,
    LAST_MS,
    PSH,
    RST,
    S2D_BYTES,
    S2D_PKTS,
    S2D_SYN_ONLY,
    SIZE_MAX,
    SIZE_MIN,
    SIZE_SUMSQ,
    SLICE_LEN,
    SYNACK,
)

log = logging.getLogger(__name__)

_INF = float("inf")


@dataclass(frozen=True)
class MeterConfig:
    """Flow-metering settings.

    Parameters
    ----------
    window_s : float
        Window length in seconds (> 0). Windows are aligned on the epoch: index = floor(t / window_s).
    idle_timeout_s : int
        A flow with no packet for this long expires (seconds, ≥ 1).
    active_timeout_s : int
        A flow older than this is cut and a new one begins (seconds, ≥ 1).
    """

    window_s: float = DEFAULT_WINDOW_S
    idle_timeout_s: int = DEFAULT_IDLE_TIMEOUT_S
    active_timeout_s: int = DEFAULT_ACTIVE_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.window_s > 0:
            raise ValueError(f"window_s must be > 0 seconds, got {self.window_s!r}")
        for name in ("idle_timeout_s", "active_timeout_s"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer ≥ 1 second, got {v!r}")


class WindowSlices(NFPlugin):
    """NFStream plugin: per-window packet, byte, TCP-flag, IAT and size counters of each flow.

    After expiry a flow carries ``udps.slices`` (dict: window index → list of :data:`SLICE_LEN`
    floats laid out as the module constants), ``udps.first_syn`` (its first packet was a bare SYN) and
    ``udps.synack_seen`` (a SYN+ACK was seen in either direction) and ``udps.payload_seen`` (some
    packet carried transport payload). Per-packet scratch state is deleted
    in :meth:`on_expire`.

    Parameters
    ----------
    window_ms : int
        Window length in milliseconds (NFStream timestamps are milliseconds).
    """

    def __init__(self, window_ms: int) -> None:
        if window_ms < 1:
            raise ValueError(f"window_ms must be ≥ 1, got {window_ms!r}")
        super().__init__(window_ms=int(window_ms))

    def on_init(self, packet, flow) -> None:
        flow.udps.slices = {}
        flow.udps.first_syn = bool(packet.syn and not packet.ack)
        flow.udps.synack_seen = False
        flow.udps.payload_seen = False
        flow.udps._cur_idx = None
        flow.udps._cur = None
        self.on_update(packet, flow)

    def on_update(self, packet, flow) -> None:
        t = packet.time
        idx = t // self.window_ms
        u = flow.udps
        if idx != u._cur_idx:
            s = u.slices.get(idx)
            if s is None:
                s = [0.0] * SLICE_LEN
                s[IAT_MIN] = s[SIZE_MIN] = _INF
                s[FIRST_MS] = t
                u.slices[idx] = s
            u._cur_idx, u._cur = idx, s
        s = u._cur
        d = packet.direction
        size = packet.ip_size
        s[d] += 1
        s[2 + d] += size
        s[SIZE_SUMSQ] += size * size
        s[SIZE_MIN] = min(s[SIZE_MIN], size)
        s[SIZE_MAX] = max(s[SIZE_MAX], size)
        s[LAST_MS] = t
        if packet.payload_size:
            u.payload_seen = True
        if packet.protocol == 6:
            if packet.syn:
                if packet.ack:
                    s[SYNACK] += 1
                    u.synack_seen = True
                else:
                    s[S2D_SYN_ONLY + d] += 1
            if packet.rst:
                s[RST] += 1
            if packet.fin:
                s[FIN] += 1
            if packet.psh:
                s[PSH] += 1
            if packet.ece or packet.cwr:
                s[ECE_CWR] += 1
        if s[S2D_PKTS] + s[D2S_PKTS] > 1 or len(u.slices) > 1:
            iat = packet.delta_time
            s[IAT_N] += 1
            s[IAT_SUM] += iat
            s[IAT_SUMSQ] += iat * iat
            s[IAT_MIN] = min(s[IAT_MIN], iat)
            s[IAT_MAX] = max(s[IAT_MAX], iat)

    def on_expire(self, flow) -> None:
        del flow.udps._cur_idx
        del flow.udps._cur


def meter_flows(path: str | Path, config: MeterConfig | None = None) -> Iterator:
    """Yield NFStream flows of a capture file, each carrying its window slices.

    Parameters
    ----------
    path : str or Path
        pcap/pcapng file (validate with :func:`edge.capture.check_capture` first for clear errors).
    config : MeterConfig, optional
        Window length and flow timeouts; defaults to :class:`MeterConfig()`.

    Yields
    ------
    nfstream.NFlow
        With ``application_name`` from nDPI and ``udps.slices`` from :class:`WindowSlices`.

    Raises
    ------
    ValueError
        From NFStream when the file cannot be decoded.
    """
    cfg = config or MeterConfig()
    streamer = NFStreamer(
        source=str(path),
        decode_tunnels=True,
        bpf_filter=None,
        promiscuous_mode=True,
        snapshot_length=1536,
        idle_timeout=cfg.idle_timeout_s,
        active_timeout=cfg.active_timeout_s,
        accounting_mode=1,  # IP size: the unit of every *_bytes feature
        udps=WindowSlices(window_ms=max(1, round(cfg.window_s * 1000))),
        n_dissections=20,
        statistical_analysis=False,
        splt_analysis=0,
        n_meters=1,
        performance_report=0,
    )
    ctx = meter_context()
    if ctx is not None:
        streamer._mp_context = ctx  # NFStream has no option for it; see meter_context
    yield from streamer


#: Libraries that run native thread pools and register fork handlers of their own; once one is loaded, a
#: plain fork of this process is not safe (:func:`meter_context`).
THREADED_RUNTIMES = ("grpc", "onnxruntime", "torch", "ray")


def meter_context():
    """The multiprocessing context to start NFStream's meter process from, or None for NFStream's own.

    NFStream forks its meter from the calling process (``fork``). Forking a process in which native thread
    pools run — gRPC (a fog server, an edge's channel), onnxruntime, torch, Ray — can leave the child blocked
    forever on a lock one of them held at the fork (seen in this project's test suite: a forked meter stuck
    in ``futex_wait`` while its parent waited on the meter's queue). Once one of
    :data:`THREADED_RUNTIMES` is loaded, meters are started from a fork server instead: a single-threaded
    process started once (about 0.3 s, with this module preloaded), from which each meter is forked. A
    process without them (``marlids edge extract`` while it meters) keeps the plain fork, which costs
    nothing to start. None also where there is no fork server (Windows, where NFStream spawns anyway).

    As with ``spawn`` (and Python 3.14's default start method on Linux), a fork-server child re-imports the
    main module: a script that loads torch and then meters captures must keep its work under
    ``if __name__ == "__main__":`` (``marlids``, ``python -m marlids``, pytest and notebooks are fine).
    """
    if not any(m in sys.modules for m in THREADED_RUNTIMES):
        return None
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    return _forkserver()


@functools.cache
def _forkserver():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["edge.flows"])
    return ctx
