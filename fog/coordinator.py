"""The fog coordinator: streamed Observations of all sites → ticks → the shared defender actor → alerts.

Transport-free logic (the gRPC server of :mod:`fog.server` feeds it); no Ray.

Ticks
-----
A tick is one window slot ``[t_start, t_start + window_s)`` (epoch-aligned, the same slots as the
edges' windows; key = ``t_start`` in milliseconds) for every site at once, as in the training env
(``fog/env.py``: one tick = one window for every site). It gathers the Observations of every device of
every site for that slot.

**Tick rule.** A tick opens when its first Observation arrives and closes — its Observations decided by
the shared defender actor in one batch — as soon as either

1. every expected site has sent a Watermark with ``t_end ≥`` the tick's end (the site has sent all its
   windows of the slot), or
2. ``tick_timeout_s`` seconds (wall clock, default 5) have passed since the tick opened (a site is slow,
   disconnected or buffering).

Ticks close in time order: a tick never closes before an earlier open one. The expected sites are the
``--sites`` list, or with ``--sites N`` the first N sites that connected (until N have connected, only
rule 2 closes ticks).

**Idle observation.** An expected site with no Observation in a closed tick (no device of it was active
in the slot, or its edge is away) is given the *idle observation*: a window exactly at its baseline
(all standardised statistics 0), a zero protocol embedding (there is no protocol text), no anomaly score
(``score_available = 0``) and zero attention summary. The actor decides it like any other (the defender
acts on every tick, as in training), but its decision is never posted: there is no device or window to
attribute an alert to. Decisions on idle observations are counted in the stats (``idle_observations``,
and ``idle_alerts_suppressed`` when the level reached the alert threshold).

**Grace period.** While a site learns its baseline (``edge/baseline.py``) its edge sends windows marked
``learning``: they join their tick but are never decided and never alert (``grace_observations``).
Nothing else alerts for that site meanwhile. Each Watermark carries the site's baseline state; the
coordinator keeps it (:meth:`Coordinator.site_states`), logs when a site starts detecting and hands every
change to ``on_site_state`` (the server posts it to the cloud, whose dashboard shows it).

**Acknowledgements name the alerts.** Each Ack lists the observations it acknowledges that raised an
alert, so the edge's baseline learns only from the others (never from a flagged window).

**Late-observation rule.** An Observation for a tick that has already closed (its edge was
disconnected and is replaying its buffer, or it arrived after the deadline) is *not* dropped: it is
decided on its own at the next poll (every ``poll_s``, default 50 ms) and its alert, if any, is posted
with the same deterministic ``alert_id`` it would have had on time. The decision is the same as on time
because the actor is memoryless and decides each device's Observation independently; only the idle
observation its site received in that tick is superseded (idle decisions are never posted). Late
Observations are counted (``late_observations``).

Suppressions
------------
An alert that would be posted but matches one of the analysts' suppression rules (``suppressions``, a
:class:`fog.suppression.SuppressionSet` the cloud poster keeps up to date) is not committed to the outbox: it
is counted (``alerts_suppressed``, and per rule for the cloud's ``hit_count``) and its decision log row
carries ``"suppressed": <suppression_id>``. Its window still counts as flagged in the edge's Ack, so the
edge's baseline does not learn from it: a suppression silences the notification, not the detector.

Delivery guarantees
-------------------
An edge message is acknowledged only after its tick is decided and the resulting alerts are committed to
the durable outbox (:class:`fog.outbox.AlertOutbox`), together with the edge's new position. Messages
at or below a known position, or already received on this run, are ignored, so a replay after a
reconnect or a restart of either side never duplicates an alert; ``alert_id`` is deterministic
(:func:`fog.detect.alert_id`) and the cloud is idempotent by it, which covers the remaining window
(alerts posted but not yet marked as posted when the fog died).
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.embed import EMBED_DIM
from edge.features import FEATURE_NAMES, N_FEATURES
from edge.observation import OBS_DIM, OBS_SLICES, build_observation
from fog.alerts import ALERT_THRESHOLD, dumps, make_alert, window_evidence
from fog.config import DEFAULT_TICK_TIMEOUT_S

log = logging.getLogger(__name__)


class StreamRejected(Exception):
    """A stream the coordinator refuses; ``code`` is a ``grpc.StatusCode`` name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def idle_observation() -> np.ndarray:
    """The idle observation ``(OBS_DIM,)`` (module docstring): statistics at the baseline, no traffic (every
    level 0), no text, no score."""
    return build_observation(np.zeros(N_FEATURES, np.float32), np.zeros(EMBED_DIM, dtype=np.float32), None, None,
                             stats=np.zeros(N_FEATURES, np.float32))


@dataclass
class _Edge:
    site_id: str
    edge_id: str
    committed: int
    received: int
    pending: list[int] = field(default_factory=list)  # heap of seqs waiting in open ticks / the late list
    done: set[int] = field(default_factory=set)  # committed seqs still above a pending one (lazy heap delete)
    listener: object = None
    notified: int = 0  # last position sent to the listener
    alerted: set[int] = field(default_factory=set)  # decided seqs that raised an alert, not yet acknowledged

    def ack_position(self) -> int:
        while self.pending and self.pending[0] in self.done:
            self.done.discard(heapq.heappop(self.pending))
        return self.pending[0] - 1 if self.pending else self.received


@dataclass
class _Tick:
    key: int
    t_start: float
    t_end: float
    opened: float
    items: list = field(default_factory=list)  # (edge_id, seq, Observation, arrays)


class Coordinator:
    """Tick assembly, decisions and commits (module docstring). Thread-safe.

    Parameters
    ----------
    actor : fog.policy.DefenderActor
        The exported shared defender actor.
    outbox : fog.outbox.AlertOutbox
    sites : int or sequence of str
        Expected sites: a count (the first N to connect) or the exact site ids.
    policy_version : str
        Written into every alert.
    tick_timeout_s : float, default 5.0
        Tick deadline in wall seconds.
    alert_threshold : int, default :data:`fog.env.ALERT_THRESHOLD`
        Lowest level posted as an alert.
    decisions_path : Path, optional
        Append every decision as a JSON line (at-least-once: after a fog restart a replayed window may
        appear twice; deduplicate by ``alert_id``); grace-period windows appear with ``"learning": true``
        and no decision, idle observations with ``"idle": true``.
    clock : callable
        Monotonic clock (seconds).
    on_site_state : callable, optional
        ``on_site_state(site_id, state)`` on every change of a site's baseline state (``state`` as in
        :meth:`site_states`).
    suppressions : fog.suppression.SuppressionSet, optional
        Analysts' suppression rules: an alert one matches is counted (``alerts_suppressed``, and per rule in
        the set) instead of committed to the outbox; None = no suppression (module docstring).

    Raises
    ------
    ValueError
        For a bad ``sites`` or ``tick_timeout_s``.
    """

    def __init__(self, actor, outbox, sites, *, policy_version: str,
                 tick_timeout_s: float = DEFAULT_TICK_TIMEOUT_S, alert_threshold: int = ALERT_THRESHOLD,
                 decisions_path: Path | None = None, clock=time.monotonic, on_site_state=None,
                 suppressions=None) -> None:
        if isinstance(sites, int):
            if sites < 1:
                raise ValueError(f"--sites must be ≥ 1 or a list of site ids, got {sites!r}")
            self.n_sites, self.site_list = sites, None
        else:
            names = [s for s in sites if s]
            if not names or len(set(names)) != len(names):
                raise ValueError(f"--sites list must name distinct sites, got {list(sites)!r}")
            self.n_sites, self.site_list = len(names), tuple(names)
        if not (tick_timeout_s > 0 and math.isfinite(tick_timeout_s)):
            raise ValueError(f"--tick-timeout must be > 0 seconds, got {tick_timeout_s!r}")
        self.actor = actor
        self.outbox = outbox
        self.on_site_state = on_site_state
        self.suppressions = suppressions
        self._site_state: dict[str, dict] = {}
        self.policy_version = policy_version
        self.tick_timeout_s = float(tick_timeout_s)
        self.alert_threshold = int(alert_threshold)
        self.clock = clock
        self.idle_obs = idle_observation()
        self.window_s: float | None = None
        self._lock = threading.RLock()
        self._edges: dict[str, _Edge] = {}
        self._known_sites: list[str] = list(self.site_list or ())
        self._site_wm: dict[str, float] = {}
        self._ticks: dict[int, _Tick] = {}
        self._late: list = []
        self._closed_through: int | None = None
        self._positions = outbox.committed_positions()
        # closed in close()
        self._decisions = open(decisions_path, "a", buffering=1) if decisions_path else None  # noqa: SIM115
        self.counters = {k: 0 for k in ("observations", "duplicates", "invalid_observations", "late_observations",
                                        "idle_observations", "idle_alerts_suppressed", "grace_observations",
                                        "ticks_closed",
                                        "ticks_by_watermark", "ticks_by_deadline", "decisions", "alerts",
                                        "alerts_new", "alerts_suppressed")}

    # -- streams ------------------------------------------------------------------------------
    def hello(self, hello) -> int:
        """Admit a stream; returns the edge's committed position (its first Ack).

        Raises
        ------
        StreamRejected
            Unknown or surplus site, another layout or window length.
        """
        with self._lock:
            site = hello.site_id
            if self.site_list is not None and site not in self.site_list:
                raise StreamRejected("PERMISSION_DENIED",
                                     f"site {site!r} is not served by this fog (--sites {','.join(self.site_list)})")
            if site not in self._known_sites:
                if len(self._known_sites) >= self.n_sites:
                    raise StreamRejected("RESOURCE_EXHAUSTED", f"site {site!r} refused: this fog serves "
                                         f"{self.n_sites} sites ({', '.join(self._known_sites)})")
                self._known_sites.append(site)
            if hello.obs_dim != OBS_DIM or list(hello.feature_names) != list(FEATURE_NAMES):
                raise StreamRejected("FAILED_PRECONDITION", f"site {site!r} sends another Observation layout "
                                     f"(obs_dim {hello.obs_dim}, {len(hello.feature_names)} features; this fog "
                                     f"expects {OBS_DIM}, {N_FEATURES}): update the edge or the policy")
            if not hello.window_s > 0:
                raise StreamRejected("INVALID_ARGUMENT", f"site {site!r}: window_s must be > 0")
            if self.window_s is None:
                self.window_s = hello.window_s
            elif abs(hello.window_s - self.window_s) > 1e-9:
                raise StreamRejected("FAILED_PRECONDITION", f"site {site!r} uses {hello.window_s} s windows, the "
                                     f"other sites {self.window_s} s")
            if not hello.edge_id:
                raise StreamRejected("INVALID_ARGUMENT", f"site {site!r}: empty edge_id")
            e = self._edges.get(hello.edge_id)
            if e is None:
                committed = self._positions.get(hello.edge_id, 0)
                e = self._edges[hello.edge_id] = _Edge(site, hello.edge_id, committed, committed)
            elif e.site_id != site:
                raise StreamRejected("INVALID_ARGUMENT", f"edge {hello.edge_id} was site {e.site_id!r}, now {site!r}")
            log.info("site %s connected (edge %s, position %d)", site, hello.edge_id[:8], e.ack_position())
            return e.ack_position()

    def attach(self, edge_id: str, listener) -> None:
        """Route this edge's acks to ``listener((ack_seq, alerted_seqs))`` (replaces an earlier stream's)."""
        with self._lock:
            e = self._edges[edge_id]
            e.listener = listener
            e.notified = e.ack_position()  # the stream's first Ack carries it

    def detach(self, edge_id: str, listener) -> None:
        """Stop routing acks to ``listener`` (if it is still the edge's)."""
        with self._lock:
            e = self._edges.get(edge_id)
            if e is not None and e.listener is listener:
                e.listener = None

    def _accept(self, e: _Edge, seq: int) -> bool:
        """False for a message already received or committed (replays)."""
        if seq <= e.received:
            self.counters["duplicates"] += 1
            return False
        e.received = seq
        return True

    def observation(self, edge_id: str, o) -> None:
        """Take one streamed Observation (``observation_pb2.Observation``).

        Raises
        ------
        StreamRejected
            If its site differs from the stream's.
        """
        from edge.transport.wire import observation_arrays

        with self._lock:
            e = self._edges[edge_id]
            if o.site_id != e.site_id:
                raise StreamRejected("INVALID_ARGUMENT", f"stream of site {e.site_id!r} sent an observation of "
                                     f"site {o.site_id!r}")
            if not self._accept(e, o.seq):
                return
            try:
                arrays = observation_arrays(o)
                if not (math.isfinite(o.t_start) and math.isfinite(o.t_end) and o.t_end > o.t_start
                        and o.device_id):
                    raise ValueError(f"observation {o.site_id}/{o.device_id!r}: bad window [{o.t_start}, {o.t_end})")
            except ValueError as exc:
                self.counters["invalid_observations"] += 1
                log.error("site %s: rejected an invalid observation from edge %s (seq %d, not decided; "
                          "marlids_fog_invalid_observations_total counts them): %s", e.site_id, edge_id[:8], o.seq,
                          exc)
                self._notify([e])
                return
            self.counters["grace_observations" if arrays["learning"] else "observations"] += 1
            heapq.heappush(e.pending, o.seq)
            item = (edge_id, o.seq, o, arrays)
            key = round(o.t_start * 1000)
            if self._closed_through is not None and key <= self._closed_through:
                self.counters["late_observations"] += 1
                self._late.append(item)
                return
            tick = self._ticks.get(key)
            if tick is None:
                tick = self._ticks[key] = _Tick(key, o.t_start, o.t_end, self.clock())
            tick.items.append(item)

    def watermark(self, edge_id: str, w) -> None:
        """Take a Watermark; closes the ticks it completes."""
        with self._lock:
            e = self._edges[edge_id]
            if not self._accept(e, w.seq):
                return
            self._site_wm[e.site_id] = max(self._site_wm.get(e.site_id, -math.inf), w.t_end)
            changed = self._note_site_state(e.site_id, w)
        if changed is not None and self.on_site_state is not None:
            try:
                self.on_site_state(e.site_id, changed)
            except Exception:
                log.exception("site %s: could not report the baseline state", e.site_id)
        self.poll()
        with self._lock:
            self._notify([e])

    def _note_site_state(self, site: str, w) -> dict | None:
        """Record the baseline state a Watermark carries; returns it when it changed."""
        if not (w.learning or w.grace_s or w.devices_own):  # an edge that reports no baseline state
            return None
        state = {"state": "learning" if w.learning else "detecting",
                 "grace_elapsed_s": round(float(min(w.grace_elapsed_s, w.grace_s or w.grace_elapsed_s)), 1),
                 "grace_s": float(w.grace_s), "grace_windows": int(w.grace_windows),
                 "devices_own": int(w.devices_own), "t_end": float(w.t_end)}
        old = self._site_state.get(site)
        self._site_state[site] = state
        if old is not None and old["state"] == "learning" and state["state"] == "detecting":
            log.info("site %s: baseline learned (%d devices with their own statistics); detecting", site,
                     state["devices_own"])
        changed = old is None or old["state"] != state["state"] or old["devices_own"] != state["devices_own"] \
            or (state["state"] == "learning" and int(state["grace_elapsed_s"] // 5) != int(old["grace_elapsed_s"] // 5))
        return dict(state) if changed else None

    def site_states(self) -> dict[str, dict]:
        """Each site's baseline state from its latest Watermark: ``state`` (``learning``/``detecting``),
        ``grace_elapsed_s``, ``grace_s``, ``grace_windows``, ``devices_own``, ``t_end`` (epoch s)."""
        with self._lock:
            return {k: dict(v) for k, v in self._site_state.items()}

    # -- ticks --------------------------------------------------------------------------------
    def _complete(self, tick: _Tick) -> bool:
        if len(self._known_sites) < self.n_sites:
            return False
        return all(self._site_wm.get(s, -math.inf) >= tick.t_end - 1e-6 for s in self._known_sites)

    def poll(self, *, flush: bool = False) -> int:
        """Close due ticks and decide late Observations; returns the ticks closed.

        Parameters
        ----------
        flush : bool
            Close every open tick now (shutdown).
        """
        with self._lock:
            now = self.clock()
            closing = []
            for key in sorted(self._ticks):
                tick = self._ticks[key]
                by_wm = self._complete(tick)
                if not (flush or by_wm or now - tick.opened >= self.tick_timeout_s):
                    break
                closing.append(self._ticks.pop(key))
                self.counters["ticks_by_watermark" if by_wm else "ticks_by_deadline"] += 1
                self._closed_through = key if self._closed_through is None else max(self._closed_through, key)
            late, self._late = self._late, []
            if not closing and not late:
                return 0
            self._decide(closing, late)
            self.counters["ticks_closed"] += len(closing)
            return len(closing)

    def _decide(self, ticks: list[_Tick], late: list) -> None:
        from edge.transport.wire import observation_peers

        items = [(item, False) for t in ticks for item in t.items] + [(item, True) for item in late]
        rows = [r for r in items if not r[0][3]["learning"]]  # grace-period windows are never decided
        idle = []
        for t in ticks:
            present = {self._edges[i[0]].site_id for i in t.items}
            idle += [(s, t) for s in self._known_sites if s not in present]
        vecs = [r[0][3]["vector"] for r in rows] + [self.idle_obs] * len(idle)
        alerts, log_rows = [], []
        if vecs:
            level, cls, conf, alert = self.actor.decide_all(np.stack(vecs))
        for i, ((edge_id, seq, o, arr), is_late) in enumerate(rows):
            e = self._edges[edge_id]
            evidence = window_evidence(x=arr["features"], z=arr["features_z"], baseline=arr["baseline"],
                                       spread=arr["baseline_spread"], attention=arr["attention"],
                                       attention_t=arr["attention_t"], proto_text=o.proto_text,
                                       scope=o.baseline_scope,
                                       site_score=float(arr["vector"][OBS_SLICES["site_score"].start]),
                                       peers=observation_peers(o))
            a = make_alert(site_id=o.site_id, device_id=o.device_id, t_start=o.t_start, t_end=o.t_end,
                           level=int(level[i]), attack_class=int(cls[i]), confidence=float(conf[i]),
                           evidence=evidence, policy_version=self.policy_version)
            suppressed = None
            if bool(alert[i]) and a["level"] >= self.alert_threshold:
                e.alerted.add(seq)  # flagged either way: the edge's baseline never learns from it
                if self.suppressions is not None:
                    suppressed = self.suppressions.match(a, time.time())
                if suppressed is None:
                    alerts.append(a)
                else:
                    self.counters["alerts_suppressed"] += 1
            if self._decisions is not None:
                log_rows.append({k: a[k] for k in ("alert_id", "site_id", "device_id", "level", "attack_class",
                                                   "confidence", "technique_ids")}
                                | {"t_start": o.t_start, "t_end": o.t_end, "alert": a["level"] >= self.alert_threshold,
                                   "late": is_late, "anomaly_score": o.anomaly_score if o.score_available else None}
                                | ({"suppressed": suppressed} if suppressed is not None else {}))
        for j, (site, t) in enumerate(idle):
            k = len(rows) + j
            self.counters["idle_observations"] += 1
            if alert[k]:
                self.counters["idle_alerts_suppressed"] += 1
                log.debug("site %s idle in tick %.0f: the policy chose level %d; not posted", site, t.t_start,
                          level[k])
            if self._decisions is not None:
                log_rows.append({"site_id": site, "device_id": None, "idle": True, "t_start": t.t_start,
                                 "t_end": t.t_end, "level": int(level[k])})
        if self._decisions is not None:
            for (edge_id, seq, o, arr), is_late in items:
                if arr["learning"]:
                    log_rows.append({"site_id": o.site_id, "device_id": o.device_id, "t_start": o.t_start,
                                     "t_end": o.t_end, "learning": True, "late": is_late})
        # positions after removing the decided (and the grace-period) seqs
        touched = {}
        for (edge_id, seq, _, _), _late in items:
            e = self._edges[edge_id]
            e.done.add(seq)
            touched[edge_id] = e
        if not items and not idle:
            return
        positions = {e.edge_id: (e.site_id, e.ack_position()) for e in self._edges.values()}
        added = self.outbox.commit(alerts, positions)
        for edge_id, (_, seq) in positions.items():
            self._positions[edge_id] = seq
        self.counters["decisions"] += len(rows)
        self.counters["alerts"] += len(alerts)
        self.counters["alerts_new"] += added
        if self._decisions is not None:
            for r in log_rows:
                self._decisions.write(dumps(r, default=str) + "\n")
        self._notify(touched.values())

    def _notify(self, edges) -> None:
        for e in edges:
            pos = e.ack_position()
            if e.listener is not None and pos > e.notified:
                e.notified = pos
                alerted = sorted(s for s in e.alerted if s <= pos)
                e.alerted.difference_update(alerted)
                e.listener((pos, tuple(alerted)))

    # -- inspection ---------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters, open ticks, sites and each edge's position."""
        with self._lock:
            return {**self.counters, "open_ticks": len(self._ticks), "sites": list(self._known_sites),
                    "site_states": {k: dict(v) for k, v in self._site_state.items()},
                    "edges": {e.edge_id: {"site_id": e.site_id, "position": e.ack_position(),
                                          "connected": e.listener is not None} for e in self._edges.values()},
                    "outbox_pending": self.outbox.pending}

    def close(self) -> None:
        """Close the decision log (the outbox belongs to the caller)."""
        if self._decisions is not None:
            self._decisions.close()
            self._decisions = None
