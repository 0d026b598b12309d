"""The metering child process of :class:`edge.live.LiveWindows`: NFStream in pieces, loaded before pandas.

:class:`~edge.live.LiveWindows` spawns a child that runs NFStream with short *piece* timeouts
(:data:`PIECE_IDLE_S`, :data:`PIECE_ACTIVE_S`) on a capture file (:func:`file_child`) or a live interface
(:func:`interface_child`) and puts picklable flow pieces (:func:`_piece`) on a queue; the parent stitches them.
This module imports only the standard library at load time.

**No pyarrow here.** The child only moves tuples; it never builds a table. NFStream imports pandas, and pandas
imports pyarrow whenever pyarrow is installed (pandas ≥ 3 backs its string type with it): about 35 MiB of
resident memory in this child, and again in the NFStream meter process forked from it. A freshly spawned child
unpickles its target — a function of this module — before anything imports pandas; the module then makes
pyarrow unavailable in that process (:func:`edge.footprint.block_pyarrow`). ``marlids edge run`` does the same
in the daemon unless it writes ``--windows-out``. **Nor pandas**, in fact: NFStream imports it only for
``to_pandas``, so the child defers it (:func:`edge.footprint.defer_pandas`) and it is never loaded.
Measured with ``benchmarks/bench_edge_flood.py`` (a 60 s flood): the whole edge 358 → 341 MiB PSS
(``docs/deploy.md``, "Under a flood", with the figures since).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

from edge.footprint import block_pyarrow, defer_pandas

#: Name prefix of the metering child process (given by :class:`edge.live.LiveWindows`; a spawned child takes
#: its name before it unpickles its target).
PROCESS_NAME_PREFIX = "marlids-meter-"
#: True when this process is a metering child whose pandas will run without pyarrow
#: (:func:`edge.footprint.block_pyarrow`).
PYARROW_BLOCKED = mp.current_process().name.startswith(PROCESS_NAME_PREFIX) and block_pyarrow()
#: True when this process is a metering child whose pandas loads only if used (:func:`edge.footprint.defer_pandas`):
#: NFStream imports it for ``to_pandas``, which the child never calls.
PANDAS_DEFERRED = mp.current_process().name.startswith(PROCESS_NAME_PREFIX) and defer_pandas()

#: NFStream idle timeout of a piece (s): a silent flow is handed over this long after its last packet.
PIECE_IDLE_S = 2
#: NFStream active timeout of a piece (s): a busy flow is cut this often.
PIECE_ACTIVE_S = 5
#: Most flow pieces waiting between NFStream's meter process and the metering child (NFStream's own
#: channel holds up to 32,767, each a pickled flow with its window slices: ~200 MiB under a flood on a device
#: whose single core cannot keep up). Above it the meter waits: a file is read more slowly, a live interface's
#: excess packets are dropped by the kernel's capture buffer (load shedding at the source).
METER_QUEUE_PIECES = 1024


class _BoundedQueues:
    """A multiprocessing context whose queues hold at most ``cap`` items; everything else is ``ctx``'s. Given
    to NFStream as its context (it has no option for its channel's size), so its meter blocks instead of
    buffering a flood's flows in memory."""

    def __init__(self, ctx, cap: int) -> None:
        self._ctx, self._cap = ctx, cap

    def Queue(self, maxsize: int = 0):  # noqa: N802 - multiprocessing's name
        return self._ctx.Queue(maxsize=min(maxsize or self._cap, self._cap))

    def __getattr__(self, name: str):
        return getattr(self._ctx, name)


def _piece(flow) -> tuple:
    """A picklable summary of one NFStream flow piece."""
    u = flow.udps
    return (flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port, flow.protocol, flow.vlan_id, flow.src_mac,
            flow.dst_mac, flow.bidirectional_first_seen_ms, flow.bidirectional_last_seen_ms,
            flow.bidirectional_packets, flow.application_name, bool(flow.application_is_guessed),
            int(flow.application_confidence), bool(u.first_syn), bool(u.synack_seen), bool(u.payload_seen),
            dict(u.slices))


def _freeze_heap() -> None:
    """Move every object of this child into the garbage collector's permanent generation (:func:`gc.freeze`).

    NFStream forks its meter process from this child. The collector of a forked process writes to the header
    of every object it visits, so the pages of the imported modules (pandas, nfstream) would be
    copied into the meter one by one; frozen objects are never visited. Measured with
    ``benchmarks/bench_edge_flood.py``: the meter and this child together 17 MiB smaller (PSS, a 60 s flood).
    """
    import gc

    gc.collect()
    gc.freeze()


def file_child(source: str, window_ms: int, out) -> None:
    """Child process: meter the capture file ``source`` with NFStream in pieces (windows of ``window_ms``
    ms) and put them on the queue ``out``: ``("pieces", [piece, …])`` batches (:func:`_piece`), then
    ``("end", None)``. Never raises: an error is put on ``out`` as ``("error", "Type: message")``."""
    from nfstream import NFStreamer

    from edge import flows as F

    os.setpgrp()  # own process group with NFStream's meter: the parent ends both with one killpg
    _freeze_heap()
    try:
        streamer = NFStreamer(source=source, decode_tunnels=True, promiscuous_mode=True, snapshot_length=1536,
                              idle_timeout=PIECE_IDLE_S, active_timeout=PIECE_ACTIVE_S, accounting_mode=1,
                              udps=F.WindowSlices(window_ms=window_ms), n_dissections=20,
                              statistical_analysis=False, splt_analysis=0, n_meters=1, performance_report=0)
        streamer._mp_context = _BoundedQueues(streamer._mp_context, METER_QUEUE_PIECES)
        _pump(streamer, out)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        out.put(("error", f"{type(exc).__name__}: {exc}"))


#: Interface types (/sys/class/net/IF/type, ARPHRD_*) whose frames are Ethernet: ether, loopback.
ETHERNET_ARPHRD = {1, 772}
#: Meter clock tick: a packet NFStream meters but no window can use (group source MAC, 0.0.0.0 → 0.0.0.0,
#: IP protocol 253 "experimentation", RFC 3692), written when the interface is quiet for :data:`TICK_S`.
TICK_S = 0.5
_TICK_PROTO = 253


def _tick_frame() -> bytes:
    import struct

    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20, 0, 0, 1, _TICK_PROTO, 0, bytes(4), bytes(4)))
    csum = sum(struct.unpack("!10H", ip))
    csum = (csum & 0xFFFF) + (csum >> 16)
    struct.pack_into("!H", ip, 10, ~csum & 0xFFFF)
    return b"\xff" * 6 + b"\x03\x00\x00\x00\x00\x00" + b"\x08\x00" + bytes(ip)


def _is_tick(p: tuple) -> bool:
    return p[4] == _TICK_PROTO and p[0] == "0.0.0.0" and p[2] == "0.0.0.0"


def _l2_frame(data: bytes, ts: float, size: int):
    """An :class:`~edge.capture.ArpFrame` or :class:`~edge.capture.L2Frame` of a non-IP Ethernet frame, else None."""
    from edge.capture import L2Frame, _parse_arp

    if len(data) < 14:
        return None
    off, ethertype = 12, int.from_bytes(data[12:14], "big")
    while ethertype in (0x8100, 0x88A8) and len(data) >= off + 6:
        off += 4
        ethertype = int.from_bytes(data[off:off + 2], "big")
    if ethertype == 0x0806:
        return _parse_arp(data[off + 2:], ts, size)
    if ethertype in (0x0800, 0x86DD):
        return None
    return L2Frame(ts, data[6:12].hex(":"), data[0:6].hex(":"), ethertype if ethertype >= 0x0600 else 0, size)


def interface_child(iface: str, window_ms: int, out, snaplen: int = 1536) -> None:
    """Child process for a live interface.

    NFStream's clock is the time of the packets it meters and it has no timer of its own, so on a quiet
    interface a finished flow would wait for the next packet to expire. This process therefore captures
    the interface itself (an AF_PACKET socket, promiscuous) and feeds NFStream a pcap stream through a FIFO,
    adding a *tick* packet (:func:`_tick_frame`) whenever the interface was quiet for :data:`TICK_S`;
    the stitcher drops the tick flows. Non-IP frames (ARP, EAPOL, …) go straight to the parent as
    ``("l2", [frame, …])``; pieces, ``end`` and errors as in :func:`file_child` (never raises), plus
    ``("tmpdir", path)`` first. ``snaplen``: bytes kept of each frame.
    """
    import shutil
    import socket
    import struct
    import tempfile

    from nfstream import NFStreamer

    from edge import flows as F

    os.setpgrp()  # own process group with NFStream's meter: the parent ends both with one killpg
    _freeze_heap()
    tmp = tempfile.mkdtemp(prefix="marlids-live-")
    out.put(("tmpdir", tmp))
    try:
        fifo = os.path.join(tmp, "capture.pcap")
        os.mkfifo(fifo, 0o600)
        header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # pcap, µs, LINKTYPE_ETHERNET
        header_only = os.path.join(tmp, "header-only.pcap")  # a regular file for NFStream's source check
        with open(header_only, "wb") as fh:
            fh.write(header)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))  # ETH_P_ALL
        sock.bind((iface, 0))
        mreq = struct.pack("iHH8s", socket.if_nametoindex(iface), 1, 0, b"")  # PACKET_MR_PROMISC
        sock.setsockopt(263, 1, mreq)  # SOL_PACKET, PACKET_ADD_MEMBERSHIP
        sock.settimeout(TICK_S)
        tick = _tick_frame()

        def capture() -> None:
            with open(fifo, "wb", buffering=0) as pipe:  # blocks until NFStream's meter opens it
                pipe.write(header)
                l2, last_l2 = [], time.monotonic()
                while True:
                    try:
                        data = sock.recv(65535)
                        ts = time.time()
                    except TimeoutError:
                        data, ts = tick, time.time()
                    n = min(len(data), snaplen)
                    sec = int(ts)
                    pipe.write(struct.pack("<IIII", sec, int((ts - sec) * 1e6), n, len(data)) + data[:n])
                    if data is not tick:
                        fr = _l2_frame(data, ts, len(data))
                        if fr is not None:
                            l2.append(fr)
                    if l2 and time.monotonic() - last_l2 > 0.1:
                        out.put(("l2", l2))
                        l2, last_l2 = [], time.monotonic()

        threading.Thread(target=capture, daemon=True).start()
        streamer = NFStreamer(source=header_only, decode_tunnels=True, promiscuous_mode=True,
                              snapshot_length=snaplen, idle_timeout=PIECE_IDLE_S, active_timeout=PIECE_ACTIVE_S,
                              accounting_mode=1, udps=F.WindowSlices(window_ms=window_ms), n_dissections=20,
                              statistical_analysis=False, splt_analysis=0, n_meters=1, performance_report=0)
        streamer._source = fifo  # NFStream accepts only regular files; libpcap reads the FIFO as a pcap stream
        streamer._mp_context = _BoundedQueues(streamer._mp_context, METER_QUEUE_PIECES)
        _pump(streamer, out)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        out.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pump(streamer, out) -> None:
    """Put the pieces of ``streamer`` on ``out`` in small batches (at most 0.1 s old), then ``end``."""
    batch, last = [], time.monotonic()
    for flow in streamer:
        p = _piece(flow)
        if not _is_tick(p):
            batch.append(p)
        if batch and (len(batch) >= 64 or time.monotonic() - last > 0.1):
            out.put(("pieces", batch))
            batch, last = [], time.monotonic()
    out.put(("pieces", batch))
    out.put(("end", None))
