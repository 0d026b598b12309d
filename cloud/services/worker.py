"""Background explanation worker: ingest never waits for an explanation.

Newly committed alert IDs are queued by the writer; worker threads load each alert, run the
explainer (built-in, or a model with fallback), check the result against the alert's evidence, and
hand the explanation to the writer. At start the worker re-queues stored alerts that still have no
explanation, so a restart loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.models import AlertRow, ExplanationRow
from cloud.services.attack import AttackTable
from cloud.services.explain import BuiltinExplainer, Explainer, check_explanation
from cloud.services.writer import AlertWriter, row_dict

log = logging.getLogger(__name__)


class ExplanationWorker:
    """Threads that explain stored alerts.

    Parameters
    ----------
    session_factory : sessionmaker
        For reading alerts.
    writer : AlertWriter
        Stores the explanations (the single writer).
    explainer : Explainer
        Built-in or model-backed.
    table : AttackTable
        For the evidence checker.
    workers : int
        Number of threads (more helps only with a remote model).
    metrics : object, optional
        :class:`cloud.api.metrics.Metrics`.
    """

    def __init__(self, session_factory: sessionmaker[Session], writer: AlertWriter, explainer: Explainer,
                 table: AttackTable, *, workers: int = 1, metrics: Any = None) -> None:
        self.session_factory = session_factory
        self.writer = writer
        self.explainer = explainer
        self.table = table
        self.workers = workers
        self.metrics = metrics
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._builtin = BuiltinExplainer(table)

    @property
    def depth(self) -> int:
        """Alerts waiting for an explanation."""
        return self._queue.qsize()

    def enqueue(self, alert_ids: list[str]) -> None:
        """Queue alerts for explanation (called by the writer after each commit)."""
        for aid in alert_ids:
            self._queue.put(aid)

    def start(self) -> ExplanationWorker:
        """Re-queue unexplained alerts and start the threads."""
        with self.session_factory() as session:
            pending = session.scalars(
                select(AlertRow.alert_id).outerjoin(ExplanationRow, ExplanationRow.alert_id == AlertRow.alert_id)
                .where(ExplanationRow.alert_id.is_(None)).order_by(AlertRow.ts_us)).all()
        if pending:
            log.info("re-queueing %d alerts without explanation", len(pending))
            self.enqueue(list(pending))
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"marlids-cloud-explainer-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads after the explanation in progress (queued ones are redone at next start)."""
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the queue is empty and processed (tests, benchmarks). False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    def _run(self) -> None:
        while True:
            aid = self._queue.get()
            try:
                if aid is None:
                    return
                self.explain_one(aid)
            except Exception:
                log.exception("explaining alert %s failed", aid)
            finally:
                self._queue.task_done()

    def explain_one(self, alert_id: str) -> None:
        """Explain one stored alert and store the checked explanation."""
        with self.session_factory() as session:
            row = session.get(AlertRow, alert_id)
            if row is None or session.get(ExplanationRow, alert_id) is not None:
                return
            alert = row_dict(row)
        t0 = time.perf_counter()
        body, source, reason = self.explainer.explain(alert)
        problems = check_explanation(body, alert, self.table)
        if problems:  # the built-in explainer must pass; a model's output was checked already
            log.error("explanation of %s from %s failed the check: %s", alert_id, source, problems)
            body, _, _ = self._builtin.explain(alert)
            source, reason = "builtin:fallback", "; ".join(problems)[:1000]
        payload = body.model_dump()
        payload["fallback_reason"] = reason
        self.writer.submit_explanation_sync({"alert_id": alert_id, "source": source, "body": payload,
                                             "created_at_us": int(time.time() * 1e6)})
        if self.metrics is not None:
            self.metrics.observe_explanation(source, time.perf_counter() - t0)
