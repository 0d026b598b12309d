"""Prometheus metrics of a fog coordinator (``marlids fog serve --metrics-listen HOST:PORT``).

The counters already live in the coordinator (:meth:`fog.coordinator.Coordinator.stats`), the cloud poster
and the outbox file; :class:`FogCollector` reads them when scraped (prometheus-client's custom-collector
pattern), so the decision path keeps no second set of counters. Each server has its own registry (several
fogs can live in one process, as in the tests).

=============================================== =========================================================
metric                                          meaning
=============================================== =========================================================
``marlids_fog_observations_total{kind}``        observations taken: ``decided`` (detecting), ``grace``
                                                (learning the site baseline), ``late``, ``duplicate``,
                                                ``idle`` (idle observations of silent sites)
``marlids_fog_invalid_observations_total``      observations rejected: wrong layout or a non-finite number
``marlids_fog_ticks_total``                     ticks closed
``marlids_fog_alerts_total``                    alerts raised (level ≥ 2)
``marlids_fog_alerts_suppressed_total``         alerts an analyst's suppression rule matched: counted, not
                                                posted (fog/suppression.py)
``marlids_fog_suppressions_active``             suppression rules in force (from the cloud)
``marlids_fog_cloud_posts_total{result}``       posts to the cloud: ``created``, ``duplicate``,
                                                ``refused`` (a 4xx for the alert), ``failed`` (5xx,
                                                connection errors, auth or rate limits)
``marlids_fog_dead_letters_total``              alerts dead-lettered by this process (after
                                                ``max_attempts`` refusals; fog/outbox.py)
``marlids_fog_outbox_alerts{state}``            alerts in the outbox file: ``pending``, ``posted``
                                                (remembered ids), ``dead_letter``
=============================================== =========================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


class FogCollector(Collector):
    """Reads a :class:`fog.server.FogServer`'s counters at scrape time (module docstring)."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        coordinator, poster, outbox = self.server.coordinator, self.server.poster, self.server.outbox
        c = coordinator.stats() if coordinator is not None else {}
        obs = CounterMetricFamily("marlids_fog_observations", "Observations taken, by kind.", labels=["kind"])
        kinds = (("decided", "observations"), ("grace", "grace_observations"), ("late", "late_observations"),
                 ("duplicate", "duplicates"), ("idle", "idle_observations"))
        for kind, key in kinds:
            obs.add_metric([kind], c.get(key, 0))
        yield obs
        yield CounterMetricFamily("marlids_fog_invalid_observations",
                                  "Observations rejected (wrong layout, NaN or infinite numbers).",
                                  value=c.get("invalid_observations", 0))
        yield CounterMetricFamily("marlids_fog_ticks", "Ticks closed.", value=c.get("ticks_closed", 0))
        yield CounterMetricFamily("marlids_fog_alerts", "Alerts raised (level >= 2).",
                                  value=c.get("alerts", 0))
        yield CounterMetricFamily("marlids_fog_alerts_suppressed",
                                  "Alerts matched by an analyst's suppression rule: counted, not posted.",
                                  value=c.get("alerts_suppressed", 0))
        suppressions = getattr(self.server, "suppressions", None)
        yield GaugeMetricFamily("marlids_fog_suppressions_active", "Suppression rules in force (from the cloud).",
                                value=len(suppressions) if suppressions is not None else 0)
        posts = CounterMetricFamily("marlids_fog_cloud_posts", "Alert posts to the cloud, by result.",
                                    labels=["result"])
        if poster is not None:
            for result, value in (("created", poster.posted), ("duplicate", poster.duplicates),
                                  ("refused", poster.rejected), ("failed", poster.failures)):
                posts.add_metric([result], value)
        yield posts
        yield CounterMetricFamily("marlids_fog_dead_letters", "Alerts dead-lettered after repeated refusals.",
                                  value=poster.dead_lettered if poster is not None else 0)
        states = GaugeMetricFamily("marlids_fog_outbox_alerts", "Alerts in the outbox file, by state.",
                                   labels=["state"])
        if outbox is not None:
            for state, n in outbox.counts().items():
                states.add_metric([state], n)
        yield states


def start_metrics_server(server: Any, host: str, port: int) -> tuple[Any, int]:
    """Serve ``/metrics`` of ``server`` on ``host:port`` (0 = any free port) from a daemon thread.

    Returns
    -------
    (http_server, port)
        The server (``shutdown()`` it to stop) and the bound port.
    """
    registry = CollectorRegistry()
    registry.register(FogCollector(server))
    httpd, _thread = start_http_server(port, addr=host, registry=registry)
    return httpd, httpd.server_address[1]
