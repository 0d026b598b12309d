"""Background explanation worker: ingest never waits for an explanation.

Newly committed alert IDs are queued by the writer. Worker threads take them in batches, have them
explained (built-in explainer, or a model with fallback), checked against each alert's evidence, and
hand the explanations to the single writer (one commit per batch). At start the worker re-queues
stored alerts that still have no explanation, so a restart loses nothing.

Where the explaining runs:

* **in separate processes** (``settings`` given, the service's default): a pool of spawned processes,
  each with its own database engine and explainer, reads the batch and returns the explanation rows.
  The API process keeps its CPU and its GIL for requests, which is what holds ingest latency down on
  a busy machine.
* **in the worker threads** (an ``explainer`` object given): for explainers that cannot be rebuilt in
  another process from settings (tests inject some) and for single-process debugging.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
import time
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.models import AlertRow, ExplanationRow
from cloud.services.attack import AttackTable
from cloud.services.convert import readable_row, stored_evidence
from cloud.services.explain import INCIDENT_SOURCE, BuiltinExplainer, Explainer, check_explanation
from cloud.services.writer import AlertWriter

log = logging.getLogger(__name__)


def explain_rows(session_factory: sessionmaker[Session], explainer: Explainer, table: AttackTable,
                 alert_ids: list[str]) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """Explain the stored alerts among ``alert_ids`` that have no explanation yet.

    **Per incident**: an alert is explained in full (by ``explainer``: the built-in one or a model) when its
    incident has no explanation yet or when it is of a higher level than every alert of the incident explained
    so far; the other alerts of the incident get a short built-in explanation that points to it
    (``source='builtin:incident'``, :meth:`BuiltinExplainer.explain_in_incident`). An incident of a thousand
    windows costs one full explanation (one model call) plus one per escalation.

    Every explanation is checked by :func:`check_explanation`; one that fails (whatever wrote it) is
    replaced by the built-in explainer's, with ``source='builtin:fallback'`` and the reason.

    Returns
    -------
    (rows, timings)
        Explanation rows for :meth:`AlertWriter.submit_explanations_sync` (``alert_id``, ``source``,
        ``body``, ``created_at_us``) and ``(source, seconds)`` per explanation, for the metrics.
    """
    table_ = AlertRow.__table__
    with session_factory() as session:  # Core reads: plain dicts, no ORM identity map
        done = set(session.scalars(select(ExplanationRow.alert_id).where(ExplanationRow.alert_id.in_(alert_ids))))
        alerts = [readable_row(dict(r._mapping)) for r in session.execute(
            select(table_).where(table_.c.alert_id.in_([a for a in alert_ids if a not in done])))]
        full = _explained_in_full(session_factory, session, {a["incident_id"] for a in alerts if a.get("incident_id")})
    for alert in alerts:  # what the store holds, as the schema says it is (explainers rely on it)
        alert["evidence"] = stored_evidence(alert).model_dump()
    builtin = BuiltinExplainer(table)
    rows, timings = [], []
    for alert in sorted(alerts, key=lambda a: (a["ts_us"], a["alert_id"])):
        t0 = time.perf_counter()
        iid, level = alert.get("incident_id"), int(alert["level"])
        ref = full.get(iid) if iid else None
        if ref is not None and level <= ref[1]:  # the incident is explained at this level already
            body, source, reason = builtin.explain_in_incident(alert, *ref)
        else:
            body, source, reason = explainer.explain(alert)
            if iid:
                full[iid] = _remember(session_factory, iid, (alert["alert_id"], level))
        problems = check_explanation(body, alert, table, trusted_peers=source.startswith("builtin"))
        if problems:  # a model's answer was checked already; this guards any explainer
            log.error("explanation of %s from %s failed the check: %s", alert["alert_id"], source, problems)
            body, _, _ = builtin.explain(alert)
            source, reason = "builtin:fallback", "; ".join(problems)[:1000]
        payload = body.model_dump()
        payload["fallback_reason"] = reason
        rows.append({"alert_id": alert["alert_id"], "source": source, "body": payload,
                     "created_at_us": int(time.time() * 1e6)})
        timings.append((source, time.perf_counter() - t0))
    return rows, timings


#: Incidents this process explained in full: (store, incident_id) → (alert_id, level), most recent last. A
#: cache (a miss asks the store), bounded, so that a batch costs no query for incidents seen before.
_FULL: OrderedDict[tuple[str, str], tuple[str, int]] = OrderedDict()
_FULL_MAX = 65_536
_FULL_LOCK = threading.Lock()


def _store_key(store: Any) -> str:
    """The database a session factory opens (its URL), naming the cache entries that belong to it."""
    bind = getattr(store, "kw", {}).get("bind")
    return str(getattr(bind, "url", id(store)))


def _remember(store: Any, incident_id: str, ref: tuple[str, int]) -> tuple[str, int]:
    key = (_store_key(store), incident_id)
    with _FULL_LOCK:
        _FULL[key] = ref
        _FULL.move_to_end(key)
        while len(_FULL) > _FULL_MAX:
            _FULL.popitem(last=False)
    return ref


def _explained_in_full(store: Any, session: Session, incident_ids: set[str]) -> dict[str, tuple[str, int]]:
    """``incident_id → (alert_id, level)`` of the highest-level alert of each incident already explained in
    full (any source but ``builtin:incident``): from this process's cache, else from the store (``store`` is
    the session factory, naming the database the cache entries belong to)."""
    out: dict[str, tuple[str, int]] = {}
    db = _store_key(store)
    with _FULL_LOCK:
        for iid in incident_ids:
            ref = _FULL.get((db, iid))
            if ref is not None:
                out[iid] = ref
    ids = sorted(i for i in incident_ids if i not in out)
    for i in range(0, len(ids), 500):
        for iid, aid, level in session.execute(
                select(AlertRow.incident_id, AlertRow.alert_id, AlertRow.level)
                .join(ExplanationRow, ExplanationRow.alert_id == AlertRow.alert_id)
                .where(AlertRow.incident_id.in_(ids[i:i + 500]), ExplanationRow.source != INCIDENT_SOURCE)):
            if iid not in out or level > out[iid][1]:
                out[iid] = (aid, int(level))
    for iid in ids:
        if iid in out:
            _remember(store, iid, out[iid])
    return out


# -- the child processes ----------------------------------------------------------------------------
_CHILD: dict[str, Any] = {}


def _child_init(settings: Any) -> None:
    """Process-pool initializer: an engine, the ATT&CK table and the explainer of ``settings``."""
    from cloud.core.db import make_engine, make_session_factory
    from cloud.services.attack import get_attack_table
    from cloud.services.explain import explainer_from_settings

    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    table = get_attack_table()
    _CHILD.update(factory=make_session_factory(engine), table=table,
                  explainer=explainer_from_settings(settings, table))


def _child_explain(alert_ids: list[str]) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    return explain_rows(_CHILD["factory"], _CHILD["explainer"], _CHILD["table"], alert_ids)


class ExplanationWorker:
    """Threads that get stored alerts explained, in batches.

    Parameters
    ----------
    session_factory : sessionmaker
        For reading alerts (thread mode) and finding unexplained ones at start.
    writer : AlertWriter
        Stores the explanations (the single writer).
    explainer : Explainer, optional
        Explain in the worker threads with this object. Give this or ``settings``.
    table : AttackTable
        For the evidence checker.
    settings : cloud.core.config.Settings, optional
        Explain in a pool of ``workers`` spawned processes that build their explainer from these
        settings (:func:`cloud.services.explain.explainer_from_settings`).
    workers : int
        Threads (and processes, in process mode); more helps mostly with a remote model.
    batch_max : int
        Most alerts taken from the queue at once (one read, one commit for the batch).
    metrics : object, optional
        :class:`cloud.api.metrics.Metrics`.

    Raises
    ------
    ValueError
        When neither or both of ``explainer`` and ``settings`` are given.
    """

    def __init__(self, session_factory: sessionmaker[Session], writer: AlertWriter, explainer: Explainer | None,
                 table: AttackTable, *, settings: Any = None, workers: int = 1, batch_max: int = 64,
                 metrics: Any = None) -> None:
        if (explainer is None) == (settings is None):
            raise ValueError("give exactly one of explainer (explain in threads) or settings (in processes)")
        self.session_factory = session_factory
        self.writer = writer
        self.explainer = explainer
        self.settings = settings
        self.table = table
        self.workers = workers
        self.batch_max = batch_max
        self.metrics = metrics
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def in_process(self) -> bool:
        """True when explanations are computed in child processes."""
        return self.settings is not None

    @property
    def depth(self) -> int:
        """Alerts waiting for an explanation."""
        return self._queue.qsize()

    def enqueue(self, alert_ids: list[str]) -> None:
        """Queue alerts for explanation (called by the writer after each commit)."""
        for aid in alert_ids:
            self._queue.put(aid)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_child_init, initargs=(self.settings,))

    def start(self) -> ExplanationWorker:
        """Re-queue unexplained alerts, start the process pool (process mode) and the threads."""
        with self.session_factory() as session:
            pending = session.scalars(
                select(AlertRow.alert_id).outerjoin(ExplanationRow, ExplanationRow.alert_id == AlertRow.alert_id)
                .where(ExplanationRow.alert_id.is_(None)).order_by(AlertRow.ts_us)).all()
        if pending:
            log.info("re-queueing %d alerts without explanation", len(pending))
            self.enqueue(list(pending))
        self._stopping.clear()
        if self.in_process:
            self._pool = self._new_pool()
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"marlids-cloud-explainer-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the batches in progress; queued alerts are left for the next start (which
        re-queues every alert without an explanation)."""
        self._stopping.set()
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads = []
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every queued alert is explained and committed (tests, benchmarks). False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while first is not None and len(batch) < self.batch_max:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            ids = [a for a in batch if a is not None]
            try:
                if ids and not self._stopping.is_set():
                    self.explain_many(ids)
            except Exception:  # one bad batch must not stop the worker
                log.exception("explaining alerts %s… failed", ids[:3])
            finally:
                for _ in batch:
                    self._queue.task_done()
            if len(ids) < len(batch) or self._stopping.is_set():
                return

    def explain_many(self, alert_ids: list[str]) -> int:
        """Explain stored alerts without an explanation; store the checked explanations in one commit.

        Returns
        -------
        int
            Number of explanations written.
        """
        if self.in_process:
            pool = self._pool
            try:
                rows, timings = pool.submit(_child_explain, alert_ids).result()
            except BrokenProcessPool:  # a child died (killed, out of memory): new pool, one more try
                with self._pool_lock:
                    if self._pool is pool:
                        log.error("the explanation process pool broke; starting a new one")
                        self._pool = self._new_pool()
                rows, timings = self._pool.submit(_child_explain, alert_ids).result()
        else:
            rows, timings = explain_rows(self.session_factory, self.explainer, self.table, alert_ids)
        if rows:
            self.writer.submit_explanations_sync(rows)
        if self.metrics is not None:
            for source, seconds in timings:
                self.metrics.observe_explanation(source, seconds)
        return len(rows)
