"""Prometheus metrics of one app instance (own registry, so several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    """Counters and histograms exported at ``/metrics``.

    Parameters
    ----------
    queue_depths : callable
        Returns ``(writer_depth, explainer_depth)`` when scraped.
    """

    def __init__(self, queue_depths: Callable[[], tuple[int, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.alerts = Counter("marlids_cloud_alerts_received", "Alerts received, by result.", ["result"], registry=r)
        self.batch_size = Histogram("marlids_cloud_commit_batch_size", "Jobs per group commit.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.commit_s = Histogram("marlids_cloud_commit_seconds", "Time to write and commit one batch.",
                                  buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1), registry=r)
        self.ingest_s = Histogram("marlids_cloud_ingest_seconds", "POST /alerts: validation to commit.",
                                  buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2), registry=r)
        self.explanations = Counter("marlids_cloud_explanations", "Explanations stored, by source.",
                                    ["source"], registry=r)
        self.explain_s = Histogram("marlids_cloud_explanation_seconds", "Time to write one explanation.",
                                   buckets=(.001, .01, .1, .5, 1, 2, 5, 10, 30, 60), registry=r)
        self.auth_failures = Counter("marlids_cloud_auth_failures", "Requests refused for a missing or bad key.",
                                     registry=r)
        depth = Gauge("marlids_cloud_queue_depth", "Jobs waiting, by queue.", ["queue"], registry=r)
        if queue_depths is not None:
            depth.labels("writer").set_function(lambda: queue_depths()[0])
            depth.labels("explainer").set_function(lambda: queue_depths()[1])

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one group commit."""
        self.batch_size.observe(size)
        self.commit_s.observe(seconds)

    def observe_explanation(self, source: str, seconds: float) -> None:
        """Record one stored explanation."""
        self.explanations.labels(source.split(":")[0] if source.startswith("llm:") else source).inc()
        self.explain_s.observe(seconds)
