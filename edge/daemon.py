"""The edge daemon: packets → windows → Observations → on-disk buffer → gRPC stream to the fog.

Two threads around one :class:`~edge.transport.buffer.DiskBuffer`:

* the **producer** takes closed window slots from the source — a capture replayed on its own clock
  (:class:`PcapReplay`) or a live interface (:class:`edge.live.LiveWindows`) — turns each slot's windows
  into Observations against the site's own baseline (:class:`edge.online.SiteFusion`) and appends them,
  followed by a Watermark for the slot (with the baseline's state), to the buffer in one transaction;
* the **sender** keeps one bidirectional stream open to the fog (``observation.proto``), sends the
  buffered messages in sequence order and deletes those the fog acknowledges. When the fog is
  unreachable it retries with exponential backoff (0.2 s doubling to 5 s) while the buffer fills; after
  reconnecting it replays everything unacknowledged, oldest first. The fog drops what it had already
  committed, so a replay never duplicates an alert.

Site baseline. For the first ``--grace`` seconds (default 60) of the site's traffic the daemon learns
the site's baseline (:mod:`edge.baseline`): those windows are sent marked ``learning``, the fog decides
none of them, and the log says ``learning baseline 35/60 s``. Afterwards each acknowledgement tells
which observations raised an alert; the baseline learns slowly from every other acknowledged window.
A replayed capture (``--pcap``, at any ``--replay-speed``) waits, before each window slot, until the fog
has acknowledged the previous slots (at most :data:`REPLAY_ACK_WAIT_S`), so every window is judged
against a baseline that learned from all earlier windows, as on a live network where the acknowledgement
of a slot arrives long before the next one: without the wait the result of a replay depended on how
quickly acknowledgements came back (the demo's site A F1 varied from 0.86 to 0.97 between runs). When
the fog stops acknowledging, the replay goes on without waiting until it catches up.
The baseline (with each device's scorer history and known peers) is saved to ``--baseline`` (default
``~/.cache/marlids/edge/<site>.baseline.json``, mode 0600) when the grace period ends, every
:data:`BASELINE_SAVE_EVERY_S` seconds while it learns and when the daemon stops, so a restarted edge
resumes with it (``--reset-baseline`` starts a new grace period).

Use :func:`run_edge` from a command line, or :class:`EdgeDaemon` (``start`` / ``wait`` / ``stop``, or a
``with`` block) to embed it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self

from edge.config import EdgeConfig
from edge.transport.buffer import DiskBuffer

if TYPE_CHECKING:  # pandas only where a DataFrame is asked for: the live daemon's process never loads it
    import pandas as pd

log = logging.getLogger(__name__)

#: Wall seconds between saves of a baseline that changed.
BASELINE_SAVE_EVERY_S = 30.0
#: Wall seconds between "learning baseline" log lines.
LEARNING_LOG_EVERY_S = 10.0
#: Longest wall wait (s) of a capture replay for the acknowledgements of the previous window slots: longer
#: than the fog's tick deadline (``fog serve --tick-timeout``, default 5 s), which closes a slot that another,
#: slower site has not reached yet.
REPLAY_ACK_WAIT_S = 10.0


def _state_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "marlids" / "edge"


def default_buffer_path(site_id: str) -> Path:
    """``$XDG_CACHE_HOME/marlids/edge/<site_id>.sqlite`` (``~/.cache`` when unset)."""
    return _state_dir() / f"{site_id.replace('/', '_')}.sqlite"


def default_baseline_path(site_id: str) -> Path:
    """``$XDG_CACHE_HOME/marlids/edge/<site_id>.baseline.json`` (``~/.cache`` when unset)."""
    return _state_dir() / f"{site_id.replace('/', '_')}.baseline.json"


class PcapReplay:
    """The window slots of a capture, released on the capture's own clock scaled by ``speed``.

    The capture is metered once with :func:`edge.windows.extract_windows` — the function that made the
    training data, so the streamed windows are exactly the offline ones — and slot ``k`` (windows
    ``[k·w, (k+1)·w)``) is released when the replay clock reaches its end:
    ``wall_start + (min(t_end, last_packet_ts) - first_packet_ts) / speed``. Every slot between the
    first and the last packet is released, empty ones too (as a watermark only).

    Parameters
    ----------
    path : Path
    site_id : str
    window_s : float
    speed : float
        0 = no waiting.
    devices : str
    stop : threading.Event
        Interrupts the waiting.
    """

    def __init__(self, path: Path, site_id: str, window_s: float, speed: float, devices: str,
                 stop: threading.Event) -> None:
        self.path, self.site_id, self.window_s, self.speed = Path(path), site_id, window_s, speed
        self.devices, self.stop = devices, stop
        self.first_ts = self.last_ts = None

    def __iter__(self) -> Iterator[tuple[float, pd.DataFrame]]:
        import pandas as pd

        from edge.windows import extract_windows

        scans = []
        frame = extract_windows([self.path], window_s=self.window_s, site_id=self.site_id, devices=self.devices,
                                on_scan=scans.append)
        scan = scans[0]
        if scan.first_ts is None:
            log.warning("%s: capture holds no packets", self.path)
            return
        self.first_ts, self.last_ts = scan.first_ts, scan.last_ts
        w_ms = max(1, round(self.window_s * 1000))
        first_k = int(scan.first_ts * 1000) // w_ms
        last_k = int(scan.last_ts * 1000) // w_ms
        slot_of = (frame["t_start"].to_numpy() * 1000 / w_ms).round().astype("int64")
        groups = {k: idx for k, idx in pd.Series(range(len(frame))).groupby(slot_of).groups.items()}
        wall0 = time.monotonic()
        for k in range(first_k, last_k + 1):
            t_end = (k + 1) * w_ms / 1000.0
            if self.speed > 0:
                due = wall0 + (min(t_end, scan.last_ts) - scan.first_ts) / self.speed
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
            elif self.stop.is_set():
                return
            idx = groups.get(k)
            yield t_end, frame.iloc[list(idx)] if idx is not None else frame.iloc[0:0]


@dataclass
class EdgeStats:
    """Counters of one edge daemon (a snapshot)."""

    slots: int = 0
    observations: int = 0
    sent: int = 0
    acked_seq: int = 0
    buffered: int = 0
    dropped: int = 0
    reconnects: int = 0
    connected: bool = False
    producer_done: bool = False
    baseline: dict = field(default_factory=dict)
    learned_windows: int = 0
    shed_flows: int = 0
    """flows the live meter forgot early to bound its memory under a flood (``edge.live.MAX_REMEMBERED_FLOWS``)"""
    late_packets: int = 0
    """live capture: packets that reached the meter after their window closed (dropped)"""
    extra: dict = field(default_factory=dict)


class EdgeDaemon:
    """One site's edge daemon (module docstring).

    Parameters
    ----------
    config : EdgeConfig
    pipeline : FusionPipeline, optional
        Already loaded fusion pipeline (default: ``FusionPipeline.load(config.fusion_dir)``).
    embedder : object, optional
        Text embedder with ``embed(texts)`` (default: :func:`edge.onnx_embed.make_embedder`).

    Examples
    --------
    >>> cfg = EdgeConfig(site_id="site_a", fog="127.0.0.1:50051", pcap=Path("data/captures/site_a.pcap"),
    ...                  replay_speed=0)                                   # doctest: +SKIP
    >>> with EdgeDaemon(cfg) as edge:                                      # doctest: +SKIP
    ...     edge.wait(timeout=120)
    """

    def __init__(self, config: EdgeConfig, *, pipeline=None, embedder=None, source=None) -> None:
        self.config = config
        self._given_source = source
        self._pipeline = pipeline
        self._embedder = embedder
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = EdgeStats()
        self._error: BaseException | None = None
        self._call = None
        self._threads: list[threading.Thread] = []
        self.buffer: DiskBuffer | None = None
        self._hello: bytes | None = None
        self._fusion_lock = threading.Lock()
        self._acked = threading.Condition(self._fusion_lock)  # notified when acknowledgements were learned
        self._pending_learn: dict[int, tuple[str, object, float]] = {}  # seq → (device, x, raw score)
        self._baseline_dirty = False
        self._saved_at = 0.0
        self._logged_at = 0.0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> EdgeDaemon:
        """Validate, load the models, open the buffer and start the producer and sender threads.

        Raises
        ------
        ValueError, FileNotFoundError, PermissionError
            From :meth:`EdgeConfig.validate` or when loading the fusion pipeline.
        """
        cfg = self.config
        cfg.validate(source=self._given_source is None)
        if self._given_source is None and cfg.pcap is not None:
            from edge.capture import check_capture

            check_capture(cfg.pcap)  # CaptureError: a damaged or unsupported file, said in one line
        elif self._given_source is None:
            from edge.live import check_live_capture

            check_live_capture(cfg.iface)  # PermissionError without CAP_NET_RAW
        from edge.baseline import load_state
        from edge.observation import FusionPipeline
        from edge.online import SiteFusion
        from edge.transport.wire import hello_message

        pipe = self._pipeline or FusionPipeline.load(cfg.fusion_dir, backend=cfg.backend)
        if self._embedder is None:
            from edge.onnx_embed import make_embedder  # ONNX when torch is absent (marlids[edge])

            self._embedder = make_embedder(cfg.backend, num_threads=1)
        self.baseline_path = Path(cfg.baseline_path or default_baseline_path(cfg.site_id))
        state = None if cfg.reset_baseline else load_state(self.baseline_path)
        try:
            self._fusion = SiteFusion(pipe, self._embedder, grace_s=cfg.grace_s, state=state)
        except ValueError as exc:
            raise ValueError(f"{self.baseline_path}: {exc}; start with --reset-baseline to learn a new one") from exc
        p = self._fusion.progress()
        if state is not None:
            log.info("site %s: resumed the baseline of %s (%s, %d devices with their own statistics)", cfg.site_id,
                     self.baseline_path, p["state"], p["devices_own"])
        else:
            log.info("site %s: learning a new baseline (grace period %.0f s, at least %d windows)", cfg.site_id,
                     p["grace_s"], p["min_grace_windows"])
        self.buffer = DiskBuffer(cfg.buffer_path or default_buffer_path(cfg.site_id), cfg.buffer_capacity,
                                 cfg.buffer_policy)
        if len(self.buffer):
            log.info("%s: %d messages left from an earlier run are sent first", self.buffer.path, len(self.buffer))
        self._hello = hello_message(site_id=cfg.site_id, edge_id=self.buffer.edge_id, window_s=cfg.window_s,
                                    grace_s=p["grace_s"]).SerializeToString()
        self._threads = [threading.Thread(target=self._produce, name=f"edge-producer-{cfg.site_id}", daemon=True),
                         threading.Thread(target=self._send, name=f"edge-sender-{cfg.site_id}", daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source is exhausted and the fog acknowledged every buffered message.

        A live capture never ends by itself: only :meth:`stop` ends it.

        Returns
        -------
        bool
            True when done; False on timeout.

        Raises
        ------
        Exception
            The producer's error (a capture that cannot be read, a broken model), if it failed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._error is not None:
                raise self._error
            if self._stats.producer_done and self.buffer is not None and len(self.buffer) == 0:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            self._stop.wait(0.05 if left is None else min(0.05, left))
            if self._stop.is_set() and self._error is None:
                return self._stats.producer_done and len(self.buffer) == 0

    def stop(self, timeout: float = 10.0) -> None:
        """Stop both threads and close the stream and the buffer (what is unacknowledged stays on disk).

        Idempotent.
        """
        self._stop.set()
        with self._acked:
            self._acked.notify_all()  # a replay waiting for acknowledgements stops waiting
        call = self._call
        if call is not None:
            call.cancel()
        for t in self._threads:
            t.join(timeout)
        if getattr(self, "_fusion", None) is not None:
            try:
                self.save_baseline()
            except OSError as exc:
                log.error("site %s: could not save the baseline to %s: %s", self.config.site_id, self.baseline_path, exc)
        if self.buffer is not None:
            self.buffer.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def stats(self) -> EdgeStats:
        """A snapshot of the counters."""
        with self._lock:
            s = EdgeStats(**{k: getattr(self._stats, k) for k in EdgeStats.__dataclass_fields__ if k != "extra"})
        if self.buffer is not None:
            s.buffered = len(self.buffer)
            s.dropped = self.buffer.dropped
        if getattr(self, "_fusion", None) is not None:
            with self._fusion_lock:
                s.baseline = self._fusion.progress()
        return s

    # -- site baseline ------------------------------------------------------------------------
    def save_baseline(self) -> Path:
        """Write the site baseline (:meth:`edge.online.SiteFusion.state_dict`) to its file, mode 0600."""
        from edge.baseline import save_state

        with self._fusion_lock:
            state = self._fusion.state_dict()
            self._baseline_dirty = False
        save_state(self.baseline_path, state)
        self._saved_at = time.monotonic()
        return self.baseline_path

    def _learn_acked(self, ack_seq: int, alerted: set[int]) -> None:
        """The fog decided every message up to ``ack_seq``: learn from the observations it did not alert."""
        devs, xs, raws = [], [], []
        with self._fusion_lock:
            for seq in [s for s in self._pending_learn if s <= ack_seq]:
                dev, x, raw = self._pending_learn.pop(seq)
                if seq not in alerted:
                    devs.append(dev)
                    xs.append(x)
                    raws.append(raw)
            learned = 0
            if devs:
                import numpy as np

                learned = self._fusion.learn_windows(devs, np.stack(xs), np.asarray(raws, dtype=np.float64))
                self._baseline_dirty = True
            self._acked.notify_all()
        if learned:
            with self._lock:
                self._stats.learned_windows += learned

    # -- producer -----------------------------------------------------------------------------
    def _source(self):
        cfg = self.config
        if self._given_source is not None:
            return self._given_source
        if cfg.pcap is not None:
            return PcapReplay(cfg.pcap, cfg.site_id, cfg.window_s, cfg.replay_speed, cfg.devices, self._stop)
        from edge.live import DEFAULT_CLOSE_DELAY_S, LiveWindows

        return LiveWindows(cfg.iface, cfg.site_id, cfg.window_s, cfg.devices, self._stop,
                           close_delay_s=cfg.live_close_delay_s or DEFAULT_CLOSE_DELAY_S)

    def _produce(self) -> None:
        from edge.transport.buffer import BufferClosedError
        from edge.transport.wire import observation_messages, watermark_message

        cfg = self.config
        window_log = WindowLog(cfg.windows_out) if cfg.windows_out is not None else None
        source = self._source()
        replay = lockstep = isinstance(source, PcapReplay)
        try:
            for t_end, windows in source:
                if window_log is not None and len(windows):
                    window_log.write(windows)
                msgs, batch = [], None
                with self._fusion_lock:
                    if lockstep and self._pending_learn:
                        lockstep = self._acked.wait_for(lambda: not self._pending_learn or self._stop.is_set(),
                                                        timeout=REPLAY_ACK_WAIT_S)
                        if not lockstep:
                            log.warning("edge %s: the fog acknowledged nothing for %.0f s; the replay goes on "
                                        "without waiting for it", cfg.site_id, REPLAY_ACK_WAIT_S)
                    elif replay and not self._pending_learn:
                        lockstep = True  # caught up: wait again
                    was_learning = self._fusion.learning
                    if len(windows):
                        batch = self._fusion.transform(windows)
                        msgs = observation_messages(batch)
                    progress = self._fusion.progress(t_end)
                msgs.append(watermark_message(cfg.site_id, t_end, len(msgs), progress))
                seqs = self.buffer.put(msgs)
                if batch is not None:
                    with self._fusion_lock:
                        for i in range(len(batch)):
                            if not batch.learning[i]:
                                self._pending_learn[seqs[i]] = (str(batch.device_id[i]), batch.x[i],
                                                                float(batch.raw_scores[i]))
                        # messages the buffer dropped (drop-oldest) are never acknowledged
                        oldest = self.buffer.oldest_seq()
                        if oldest is not None and self._pending_learn and next(iter(self._pending_learn)) < oldest:
                            for seq in [s for s in self._pending_learn if s < oldest]:
                                del self._pending_learn[seq]
                with self._lock:
                    self._stats.slots += 1
                    self._stats.observations += len(msgs) - 1
                    self._stats.shed_flows = getattr(source, "forgotten_flows", 0)
                    self._stats.late_packets = getattr(source, "late_packets", 0)
                self._report_baseline(was_learning, progress)
                if self._stop.is_set():
                    break
        except BufferClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - surfaced by wait()
            if not self._stop.is_set():
                log.error("edge %s: producer failed: %s", cfg.site_id, exc)
                self._error = exc
        finally:
            if window_log is not None:
                window_log.close()
            with self._lock:
                self._stats.producer_done = True

    def _report_baseline(self, was_learning: bool, progress: dict) -> None:
        """Log the grace period's progress and its end; save the baseline when due."""
        site = self.config.site_id
        now = time.monotonic()
        if progress["state"] == "learning":
            if now - self._logged_at >= LEARNING_LOG_EVERY_S:
                self._logged_at = now
                log.info("site %s: learning baseline %.0f/%.0f s (%d windows; no alerts until it is learned)", site,
                         min(progress["grace_elapsed_s"], progress["grace_s"]), progress["grace_s"],
                         progress["grace_windows"])
            if now - self._saved_at >= BASELINE_SAVE_EVERY_S:
                self.save_baseline()
        elif was_learning:
            log.info("site %s: baseline learned (%d devices with their own statistics); detecting", site,
                     progress["devices_own"])
            self.save_baseline()
        elif self._baseline_dirty and now - self._saved_at >= BASELINE_SAVE_EVERY_S:
            self.save_baseline()

    # -- sender -------------------------------------------------------------------------------
    def _channel(self):
        import grpc

        from edge.transport.tls import channel_credentials
        from edge.transport.wire import CHANNEL_OPTIONS

        if self.config.tls is None:
            return grpc.insecure_channel(self.config.fog, options=CHANNEL_OPTIONS)
        return grpc.secure_channel(self.config.fog, channel_credentials(self.config.tls), options=CHANNEL_OPTIONS)

    def _requests(self, call_over: threading.Event) -> Iterator[bytes]:
        buf = self.buffer
        yield self._hello
        cursor = 0
        limit = self.config.max_inflight
        while not (self._stop.is_set() or call_over.is_set()):
            rows = buf.read_after(cursor, 256)
            if not rows:
                buf.wait_for(lambda c=cursor: buf.last_seq > c, 0.2)
                continue
            for seq, body in rows:
                while seq - self._stats.acked_seq > limit and not (self._stop.is_set() or call_over.is_set()):
                    buf.wait_for(lambda s=seq: s - self._stats.acked_seq <= limit, 0.2)
                if self._stop.is_set() or call_over.is_set():
                    return
                yield body
                cursor = seq
                with self._lock:
                    self._stats.sent += 1

    def _send(self) -> None:
        import grpc

        from edge.transport.wire import raw_stream_callable

        cfg = self.config
        backoff = cfg.reconnect_initial_s
        warned = False
        while not self._stop.is_set():
            channel = self._channel()
            call_over = threading.Event()
            try:
                call = raw_stream_callable(channel)(self._requests(call_over))
                self._call = call
                if self._stop.is_set():
                    call.cancel()
                for ack in call:
                    if not self._stats.connected:
                        log.info("edge %s: connected to fog %s", cfg.site_id, cfg.fog)
                        warned = False
                    with self._lock:
                        self._stats.connected = True
                        self._stats.acked_seq = max(self._stats.acked_seq, ack.ack_seq)
                    self._learn_acked(ack.ack_seq, set(ack.alerted_seqs))
                    self.buffer.ack(ack.ack_seq)
                    backoff = cfg.reconnect_initial_s
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    break
                code = exc.code() if hasattr(exc, "code") else None
                msg = f"edge {cfg.site_id}: fog {cfg.fog} unreachable or stream ended ({code}: " \
                      f"{exc.details() if hasattr(exc, 'details') else exc}); buffering, retrying"
                if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT,
                            grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED):
                    log.error("edge %s: the fog refused the stream: %s", cfg.site_id, exc.details())
                elif not warned:
                    log.warning(msg)
                    warned = True
                else:
                    log.debug(msg)
            except Exception:
                if self._stop.is_set():
                    break
                log.exception("edge %s: sender error; retrying", cfg.site_id)
            finally:
                call_over.set()
                self._call = None
                channel.close()
                with self._lock:
                    if self._stats.connected:
                        self._stats.reconnects += 1
                    self._stats.connected = False
            if self._stop.wait(backoff):
                break
            backoff = min(backoff * 2, cfg.reconnect_max_s)


class WindowLog:
    """The keys and peer sets of the windows an edge closed, appended to a Parquet file slot by slot.

    Columns ``site_id, device_id`` (str), ``t_start, t_end`` (epoch s), ``peers`` (list of str): enough to
    label the windows from a ground-truth table (:func:`training.range.label.label_windows`). The file is
    complete once the daemon stops (Parquet writes its footer at :meth:`close`).
    """

    COLUMNS = ("site_id", "device_id", "t_start", "t_end", "peers")

    def __init__(self, path: Path) -> None:
        import pyarrow as pa

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.schema = pa.schema([("site_id", pa.string()), ("device_id", pa.string()), ("t_start", pa.float64()),
                                 ("t_end", pa.float64()), ("peers", pa.list_(pa.string()))])
        self._writer = None

    def write(self, windows) -> None:
        """Append one slot's windows (the Window contract's columns; others are ignored)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({"site_id": windows["site_id"].astype(str).tolist(),
                          "device_id": windows["device_id"].astype(str).tolist(),
                          "t_start": windows["t_start"].astype(float).tolist(),
                          "t_end": windows["t_end"].astype(float).tolist(),
                          "peers": [[str(p) for p in (v if v is not None else [])] for v in windows["peers"]]},
                         schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.write_table(table)

    def close(self) -> None:
        """Finish the file (an empty one when no window closed)."""
        import pyarrow.parquet as pq

        if self._writer is None:
            pq.write_table(self.schema.empty_table(), self.path)
        else:
            self._writer.close()
            self._writer = None


def run_edge(config: EdgeConfig, *, drain_timeout_s: float | None = None, on_progress=None) -> EdgeStats:
    """Run an edge daemon until its source ends and the fog has acknowledged everything (blocking).

    Parameters
    ----------
    config : EdgeConfig
    drain_timeout_s : float, optional
        After the source ended, give up waiting for acknowledgements after this many seconds (what is
        left stays in the buffer for the next run). ``None`` waits forever; a live capture runs until
        interrupted.
    on_progress : callable, optional
        Called about once a second with an :class:`EdgeStats` snapshot.

    Returns
    -------
    EdgeStats
        The final counters.
    """
    daemon = EdgeDaemon(config).start()
    try:
        drain_deadline = None
        while True:
            if daemon.wait(timeout=1.0):
                break
            st = daemon.stats()
            if on_progress is not None:
                on_progress(st)
            if st.producer_done and drain_timeout_s is not None:
                drain_deadline = drain_deadline or time.monotonic() + drain_timeout_s
                if time.monotonic() > drain_deadline:
                    log.warning("edge %s: %d messages still unacknowledged after %.0f s; they stay in %s",
                                config.site_id, st.buffered, drain_timeout_s, daemon.buffer.path)
                    break
        return daemon.stats()
    finally:
        daemon.stop()
