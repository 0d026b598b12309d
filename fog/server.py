"""``marlids fog serve``: the gRPC endpoint of the fog coordinator, its tick clock and cloud poster.

:class:`FogServer` wires together

* a gRPC server (``FogIngest.Stream`` of ``edge/transport/observation.proto``; TLS or mTLS, plaintext
  only when asked for) whose streams feed a :class:`fog.coordinator.Coordinator`;
* a ticker thread calling :meth:`Coordinator.poll` every ``poll_s`` (tick deadlines, late observations);
* the durable :class:`fog.outbox.AlertOutbox` and the :class:`fog.outbox.CloudPoster` thread.

Start it with :meth:`FogServer.start` (returns once the port is bound; ``server.port`` is the bound port,
useful with ``HOST:0``) and stop it with :meth:`FogServer.stop`, which decides every open tick, commits,
tries for ``drain_s`` to deliver waiting alerts and releases the port. :func:`serve_fog` runs one until
SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
from pathlib import Path
from typing import Self

from edge.transport.tls import parse_hostport
from fog.config import FogConfig, default_outbox_path, parse_sites
from fog.coordinator import StreamRejected

log = logging.getLogger(__name__)

#: Keepalive and limits of the server (edges ping every 10 s).
SERVER_OPTIONS = [("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 5_000),
                  ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.min_recv_ping_interval_without_data_ms",
                                                               5_000), ("grpc.http2.max_ping_strikes", 0),
                  ("grpc.so_reuseport", 0)]


class _Servicer:
    """``FogIngest`` implementation: one generator per edge stream, a reader thread feeding the coordinator."""

    def __init__(self, coordinator, stopping: threading.Event) -> None:
        self.coord = coordinator
        self.stopping = stopping

    def Stream(self, request_iterator, context):
        import grpc

        from edge.transport import observation_pb2 as pb

        try:
            first = next(request_iterator)
        except StopIteration:
            return
        if first.WhichOneof("body") != "hello":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message of a stream must be a Hello")
        try:
            position = self.coord.hello(first.hello)
        except StreamRejected as exc:
            log.warning("refused a stream: %s", exc)
            context.abort(getattr(grpc.StatusCode, exc.code), str(exc))
        edge_id = first.hello.edge_id
        acks: queue.Queue = queue.Queue()
        done = object()
        failure: list[StreamRejected] = []
        self.coord.attach(edge_id, acks.put)

        def read() -> None:
            try:
                for msg in request_iterator:
                    kind = msg.WhichOneof("body")
                    if kind == "observation":
                        self.coord.observation(edge_id, msg.observation)
                    elif kind == "watermark":
                        self.coord.watermark(edge_id, msg.watermark)
                    else:
                        raise StreamRejected("INVALID_ARGUMENT", "Hello sent twice on one stream")
            except StreamRejected as exc:
                failure.append(exc)
            except Exception as exc:  # noqa: BLE001 - the stream ended (cancelled, reset)
                log.debug("stream of edge %s ended: %s", edge_id[:8], exc)
            finally:
                acks.put(done)

        reader = threading.Thread(target=read, name=f"fog-stream-{first.hello.site_id}", daemon=True)
        reader.start()
        try:
            yield pb.Ack(edge_id=edge_id, ack_seq=position)
            last = position
            while context.is_active() and not self.stopping.is_set():
                try:
                    item = acks.get(timeout=0.25)
                except queue.Empty:
                    continue
                if item is done:
                    break
                pos, alerted = item[0], set(item[1])
                while True:  # coalesce queued acks
                    try:
                        nxt = acks.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is done:
                        acks.put(done)
                        break
                    pos = max(pos, nxt[0])
                    alerted.update(nxt[1])
                if pos > last:
                    last = pos
                    yield pb.Ack(edge_id=edge_id, ack_seq=pos, alerted_seqs=sorted(alerted))
            if failure:
                log.warning("closing the stream of edge %s: %s", edge_id[:8], failure[0])
                context.abort(getattr(grpc.StatusCode, failure[0].code), str(failure[0]))
        finally:
            self.coord.detach(edge_id, acks.put)


class FogServer:
    """A running fog coordinator (module docstring).

    Parameters
    ----------
    config : FogConfig
    actor : DefenderActor, optional
        Already loaded actor (default: from ``config.policy_dir``).

    Examples
    --------
    >>> cfg = FogConfig(listen="127.0.0.1:0", policy_dir=Path("models/defender"),
    ...                 cloud_url="http://127.0.0.1:8080", ingest_key="mk_…", sites=2)   # doctest: +SKIP
    >>> with FogServer(cfg) as fog:                                                     # doctest: +SKIP
    ...     print(fog.port)
    """

    def __init__(self, config: FogConfig, *, actor=None) -> None:
        self.config = config
        self._actor = actor
        self._stopping = threading.Event()
        self._server = None
        self._ticker: threading.Thread | None = None
        self.coordinator = None
        self.outbox = None
        self.poster = None
        self.suppressions = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._metrics_httpd = None

    def start(self) -> FogServer:
        """Load the policy, open the outbox, start the poster and ticker and bind the gRPC port.

        Raises
        ------
        ValueError, FileNotFoundError, PermissionError
            Bad settings, a missing policy, unreadable certificates.
        RuntimeError
            If the address cannot be bound (in use, not local).
        """
        from concurrent import futures

        import grpc

        from edge.transport import observation_pb2_grpc as pb_grpc
        from edge.transport.tls import server_credentials
        from fog.alerts import policy_version_of
        from fog.coordinator import Coordinator
        from fog.outbox import AlertOutbox, CloudPoster, check_cloud_url
        from fog.policy import DefenderActor
        from fog.suppression import SuppressionSet

        cfg = self.config
        host, port = parse_hostport(cfg.listen, "--listen")
        check_cloud_url(cfg.cloud_url, allow_plain_http=cfg.allow_plain_http)  # before any slow start-up work
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))  # a line per POST
        sites = parse_sites(cfg.sites) if isinstance(cfg.sites, str) else cfg.sites
        policy = Path(cfg.policy_dir)
        if (policy / "policy" / "actor.json").is_file():
            policy = policy / "policy"
        if not (policy / "actor.json").is_file():
            raise FileNotFoundError(f"--policy {cfg.policy_dir}: no exported defender policy (actor.json) here or "
                                    "in its policy/ folder")
        actor = self._actor or DefenderActor.load(policy)  # the edges build the Observations; the fog only decides
        version = policy_version_of(policy)
        self.outbox = AlertOutbox(cfg.outbox_path or default_outbox_path(), capacity=cfg.outbox_capacity,
                                  max_attempts=cfg.max_attempts)
        try:
            self.suppressions = SuppressionSet()
            self.poster = CloudPoster(self.outbox, cfg.cloud_url, cfg.ingest_key, backoff_max_s=cfg.backoff_max_s,
                                      cloud_ca=cfg.cloud_ca, allow_plain_http=cfg.allow_plain_http,
                                      suppressions=self.suppressions,
                                      suppressions_refresh_s=cfg.suppressions_refresh_s)
            self.coordinator = Coordinator(actor, self.outbox, sites, policy_version=version,
                                           tick_timeout_s=cfg.tick_timeout_s, decisions_path=cfg.decisions_path,
                                           on_site_state=self.poster.site_state, suppressions=self.suppressions)
            n = sites if isinstance(sites, int) else len(sites)
            server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(8, 2 * n + 4),
                                                            thread_name_prefix="fog-grpc"),
                                 options=SERVER_OPTIONS)
            handler = _Servicer(self.coordinator, self._stopping)
            pb_grpc.add_FogIngestServicer_to_server(handler, server)
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            try:
                if cfg.tls is None:
                    bound = server.add_insecure_port(address)
                else:
                    bound = server.add_secure_port(address, server_credentials(cfg.tls))
            except RuntimeError as exc:
                raise RuntimeError(f"--listen {cfg.listen}: cannot bind ({exc})") from None
            if not bound:
                raise RuntimeError(f"--listen {cfg.listen}: cannot bind (address in use or not local)")
            self.port = bound
            if cfg.metrics_listen is not None:
                from fog.metrics import start_metrics_server

                m_host, m_port = parse_hostport(cfg.metrics_listen, "--metrics-listen")
                try:
                    self._metrics_httpd, self.metrics_port = start_metrics_server(self, m_host, m_port)
                except OSError as exc:
                    raise RuntimeError(f"--metrics-listen {cfg.metrics_listen}: cannot bind ({exc})") from None
            self.poster.start()
            self._ticker = threading.Thread(target=self._tick, name="fog-ticker", daemon=True)
            self._ticker.start()
            server.start()
            self._server = server
        except BaseException:
            self._stopping.set()
            if self._metrics_httpd is not None:
                self._metrics_httpd.shutdown()
                self._metrics_httpd.server_close()
            if self.poster is not None:
                self.poster.stop()
            self.outbox.close()
            raise
        log.info("fog listening on %s:%d (%s) for %s; policy %s; alerts to %s%s", host, self.port,
                 "plaintext" if cfg.tls is None else ("mTLS" if cfg.tls.ca else "TLS"),
                 f"{sites} sites" if isinstance(sites, int) else ",".join(sites), version, self.poster.url,
                 "" if self.metrics_port is None else f"; metrics on port {self.metrics_port}")
        return self

    def _tick(self) -> None:
        while not self._stopping.wait(self.config.poll_s):
            try:
                self.coordinator.poll()
            except Exception:
                if self._stopping.is_set():
                    break
                log.exception("tick failed")

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving, decide open ticks, try to deliver waiting alerts, release the port. Idempotent."""
        if self._stopping.is_set() and self._server is None:
            return
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
        if self._ticker is not None:
            self._ticker.join(5)
        if self.coordinator is not None:
            try:
                self.coordinator.poll(flush=True)
            except Exception:
                log.exception("could not decide the open ticks at shutdown; the edges will replay them")
            self.coordinator.close()
        if self.poster is not None:
            self.poster.stop(drain_s=self.config.drain_s)
        if self._metrics_httpd is not None:
            self._metrics_httpd.shutdown()
            self._metrics_httpd.server_close()
            self._metrics_httpd = None
        if self.outbox is not None:
            self.outbox.close()

    def stats(self) -> dict:
        """Coordinator counters plus the poster's (posted, duplicates, rejected, dead-lettered, failures) and
        the suppression rules in force."""
        s = self.coordinator.stats() if self.coordinator else {}
        if self.suppressions is not None:
            s["suppressions_active"] = len(self.suppressions)
        if self.poster is not None:
            s.update(posted=self.poster.posted, post_duplicates=self.poster.duplicates,
                     post_rejected=self.poster.rejected, post_dead_lettered=self.poster.dead_lettered,
                     post_failures=self.poster.failures)
        return s

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_fog(config: FogConfig, *, on_started=None, stats_every_s: float = 30.0) -> dict:
    """Run a fog coordinator until SIGINT or SIGTERM (blocking); returns the final stats.

    Parameters
    ----------
    config : FogConfig
    on_started : callable, optional
        Called with the started :class:`FogServer`.
    stats_every_s : float
        Period of the INFO log line with the counters.
    """
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = FogServer(config).start()
    try:
        if on_started is not None:
            on_started(server)
        while not stop.wait(stats_every_s):
            s = server.stats()
            log.info("ticks %d · decisions %d · alerts %d (late %d, idle %d, invalid observations %d) · suppressed %d "
                     "· outbox %d waiting · posted %d · dead-lettered %d", s["ticks_closed"], s["decisions"],
                     s["alerts"], s["late_observations"], s["idle_observations"], s["invalid_observations"],
                     s["alerts_suppressed"], s["outbox_pending"], s["posted"], s["post_dead_lettered"])
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return server.stats()
