"""The single writer: every alert and explanation goes through one thread that commits in groups.

Request handlers hand an alert to :meth:`AlertWriter.submit_alert` and wait; the writer drains its
queue (up to ``batch_max`` jobs), writes them in **one transaction**, commits, and only then resolves
the waiting requests. So an alert is durable before the API acknowledges it, yet a burst costs one
commit (one fsync) per batch instead of one per alert, and SQLite never sees competing writers.

Idempotency: an alert whose ``alert_id`` is already stored (or earlier in the same batch) is not
written again; its waiter receives the stored row and ``created=False``. New alerts are grouped into
incidents (:mod:`cloud.services.incidents`) in the same transaction.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.models import AlertRow, AlertTechniqueRow, ExplanationRow
from cloud.services.incidents import assign_incidents

log = logging.getLogger(__name__)

ALERT_COLUMNS = tuple(c.name for c in AlertRow.__table__.columns)


class QueueFullError(RuntimeError):
    """The writer's queue is full: the client should retry later (HTTP 503)."""


@dataclass
class _Job:
    kind: str  # "alert" | "explanation"
    row: dict[str, Any]
    done: Callable[[Any, BaseException | None], None] | None = None  # for threads
    fut: asyncio.Future | None = None  # for request handlers: resolved on their loop, one wake-up per batch
    enqueued: float = field(default_factory=time.perf_counter)


def row_dict(row: AlertRow) -> dict[str, Any]:
    """A stored alert as a plain dict of its columns, made serializable
    (:func:`cloud.services.convert.readable`: what the store holds never breaks a read)."""
    from cloud.services.convert import readable

    return {c: readable(getattr(row, c)) for c in ALERT_COLUMNS}


class AlertWriter:
    """Group-commit writer thread.

    Parameters
    ----------
    session_factory : sessionmaker
        Sessions on the target database.
    batch_max : int
        Most jobs per transaction.
    queue_max : int
        Most jobs waiting; beyond it :class:`QueueFullError`.
    on_alerts_committed : callable, optional
        Called (on the writer thread) with the IDs of newly stored alerts after each commit.
    metrics : object, optional
        :class:`cloud.api.metrics.Metrics` to record batch sizes and commit times.
    """

    def __init__(self, session_factory: sessionmaker[Session], *, batch_max: int = 512, queue_max: int = 100_000,
                 on_alerts_committed: Callable[[list[str]], None] | None = None, metrics: Any = None) -> None:
        self.session_factory = session_factory
        self.batch_max = batch_max
        self.queue_max = queue_max
        self.on_alerts_committed = on_alerts_committed
        self.metrics = metrics
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> AlertWriter:
        """Start the writer thread (idempotent)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="marlids-cloud-writer", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        self._thread = None

    @property
    def depth(self) -> int:
        """Jobs waiting for the writer."""
        return self._queue.qsize()

    # -- submission --------------------------------------------------------------------------------
    def _put(self, job: _Job) -> None:
        if self._thread is None:
            raise RuntimeError("the alert writer is not running (start() it, or run the app's lifespan)")
        if job.kind == "alert" and self._queue.qsize() >= self.queue_max:
            raise QueueFullError(f"ingest queue full ({self.queue_max} alerts waiting); retry later")
        self._queue.put(job)

    async def submit_alert(self, row: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Store ``row`` (alert columns + ``technique_ids``) and wait until it is committed.

        Returns
        -------
        (stored_row, created)
            The stored alert (the earlier one for a repeat) and whether this call created it.
        """
        fut: asyncio.Future[tuple[dict[str, Any], bool]] = asyncio.get_running_loop().create_future()
        self._put(_Job("alert", row, fut=fut))
        return await fut

    def submit_explanation_sync(self, row: dict[str, Any], timeout: float = 60.0) -> bool:
        """Store an explanation row (``alert_id``, ``source``, ``body``, ``created_at_us``); False if one existed."""
        return self._submit_sync("explanation", row, timeout)

    def submit_explanations_sync(self, rows: list[dict[str, Any]], timeout: float = 60.0) -> list[bool]:
        """Store several explanation rows (usually one commit) and wait for all; see
        :meth:`submit_explanation_sync`. Explanations never count against ``queue_max``.

        Raises
        ------
        TimeoutError
            When they are not committed within ``timeout`` seconds.
        """
        events = [threading.Event() for _ in rows]
        box: list[list[Any]] = [[None, None] for _ in rows]

        def make_done(i: int) -> Callable[[Any, BaseException | None], None]:
            def done(result: Any, exc: BaseException | None) -> None:
                box[i][0], box[i][1] = result, exc
                events[i].set()
            return done

        for i, row in enumerate(rows):
            self._put(_Job("explanation", row, make_done(i)))
        deadline = time.monotonic() + timeout
        for ev in events:
            if not ev.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the writer did not commit {len(rows)} explanations within {timeout} s")
        for _, exc in box:
            if exc is not None:
                raise exc
        return [b[0] for b in box]

    def _submit_sync(self, kind: str, row: dict[str, Any], timeout: float) -> Any:
        event = threading.Event()
        box: list[Any] = [None, None]

        def done(result: Any, exc: BaseException | None) -> None:
            box[0], box[1] = result, exc
            event.set()

        self._put(_Job(kind, row, done))
        if not event.wait(timeout):
            raise TimeoutError(f"the writer did not commit within {timeout} s")
        if box[1] is not None:
            raise box[1]
        return box[0]

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[_Job]) -> None:
        t0 = time.perf_counter()
        try:
            with self.session_factory() as session:
                results, new_ids = self._write_batch(session, batch)
                session.commit()
        except Exception as exc:  # noqa: BLE001 - fall back to one transaction per job
            log.warning("group commit of %d jobs failed (%s); retrying one by one", len(batch), exc)
            results, new_ids = [], []
            for job in batch:
                try:
                    with self.session_factory() as session:
                        res, ids = self._write_batch(session, [job])
                        session.commit()
                    results.append(res[0])
                    new_ids += ids
                except IntegrityError:
                    with self.session_factory() as session:  # raced with another process: read the winner
                        res, ids = self._write_batch(session, [job])
                    results.append(res[0])
                except Exception as one_exc:  # report to that waiter only
                    log.exception("writing one %s failed", job.kind)
                    results.append(one_exc)
        if self.metrics is not None:
            self.metrics.observe_batch(len(batch), time.perf_counter() - t0)
        # the listener first: an alert is queued for explanation before its sender hears "stored"
        if new_ids and self.on_alerts_committed is not None:
            try:
                self.on_alerts_committed(new_ids)
            except Exception:  # never let a listener stop the writer
                log.exception("on_alerts_committed listener failed")
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, Any]]] = {}
        for job, res in zip(batch, results, strict=True):
            if job.fut is not None:
                by_loop.setdefault(job.fut.get_loop(), []).append((job.fut, res))
            elif isinstance(res, BaseException):
                job.done(None, res)
            else:
                job.done(res, None)
        for loop, items in by_loop.items():  # one thread-safe wake-up per event loop and batch
            try:
                loop.call_soon_threadsafe(_resolve_all, items)
            except RuntimeError:  # that loop has closed: nobody is waiting any more
                pass

    @staticmethod
    def _write_batch(session: Session, batch: list[_Job]) -> tuple[list[Any], list[str]]:
        """Write one batch on the session's connection (SQLAlchemy Core: the ORM adds nothing here).

        On SQLite and PostgreSQL one ``INSERT … ON CONFLICT DO NOTHING … RETURNING`` per table says
        which alerts are new; only repeats are read back. Elsewhere existing IDs are read first.
        """
        conn = session.connection()
        alerts, links, expls = AlertRow.__table__, AlertTechniqueRow.__table__, ExplanationRow.__table__
        upsert = _insert_ignore(conn.dialect.name)
        first: dict[str, dict[str, Any]] = {}
        for job in batch:
            if job.kind == "alert" and job.row["alert_id"] not in first:
                first[job.row["alert_id"]] = {c: job.row[c] for c in ALERT_COLUMNS}
        if upsert is not None:
            new_ids = set(conn.execute(upsert(alerts).on_conflict_do_nothing(index_elements=["alert_id"])
                                       .returning(alerts.c.alert_id), list(first.values())).scalars()) if first else set()
        else:
            existing = set(conn.scalars(select(alerts.c.alert_id).where(alerts.c.alert_id.in_(list(first))))) \
                if first else set()
            new_ids = set(first) - existing
            if new_ids:
                conn.execute(insert(alerts), [first[a] for a in first if a in new_ids])
        stored = {a: first[a] for a in new_ids}
        repeats = [a for a in first if a not in new_ids]
        if repeats:
            stored.update((r.alert_id, dict(r._mapping))
                          for r in conn.execute(select(alerts).where(alerts.c.alert_id.in_(repeats))))
        new_links = [{"alert_id": a, "technique_id": t} for a in first if a in new_ids for t in first[a]["technique_ids"]]
        if new_links:
            conn.execute(insert(links), new_links)
        if new_ids:  # group the new alerts into incidents, in the same transaction (idempotent like them)
            for a, iid in assign_incidents(conn, [first[a] for a in first if a in new_ids]).items():
                first[a]["incident_id"] = iid

        expl_first: dict[str, dict[str, Any]] = {}
        for job in batch:
            if job.kind == "explanation":
                expl_first.setdefault(job.row["alert_id"], job.row)
        if upsert is not None:
            new_expl = set(conn.execute(upsert(expls).on_conflict_do_nothing(index_elements=["alert_id"])
                                        .returning(expls.c.alert_id), list(expl_first.values())).scalars()) \
                if expl_first else set()
        else:
            have = set(conn.scalars(select(expls.c.alert_id).where(expls.c.alert_id.in_(list(expl_first))))) \
                if expl_first else set()
            new_expl = set(expl_first) - have
            if new_expl:
                conn.execute(insert(expls), [expl_first[a] for a in new_expl])

        results: list[Any] = []
        seen: set[tuple[str, str]] = set()
        for job in batch:
            aid = job.row["alert_id"]
            created = aid in (new_ids if job.kind == "alert" else new_expl) and (job.kind, aid) not in seen
            seen.add((job.kind, aid))
            results.append((stored[aid], created) if job.kind == "alert" else created)
        return results, [a for a in first if a in new_ids]


def _insert_ignore(dialect: str) -> Callable[[Any], Any] | None:
    """The dialect's ``insert`` construct that supports ``ON CONFLICT DO NOTHING`` (None if unknown)."""
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        return None
    return dialect_insert


def _resolve_all(items: list[tuple[asyncio.Future, Any]]) -> None:
    for fut, res in items:
        if fut.done():  # the request was cancelled (client went away); the alert is stored all the same
            continue
        if isinstance(res, BaseException):
            fut.set_exception(res)
        else:
            fut.set_result(res)
