"""Scale → score → fuse, once: a site's windows become Observations against the site's own baseline.

:class:`SiteFusion` is the one implementation of the path from window statistics to the Observation
(:mod:`edge.observation`), used by every caller:

* the edge daemon (:mod:`edge.daemon`) feeds it each closed window slot and reports back which windows
  raised no alert (from the fog's acknowledgements), so the baseline learns only from those;
* :func:`fuse_frame` replays a whole window table slot by slot through one :class:`SiteFusion` per site —
  what training (``training.data``), ``marlids train eval`` and ``marlids fog detect`` use — so a capture
  gives the same Observations offline as streamed (``tests/test_transport_edge.py``). One difference is
  inherent: the replay learns from a slot's unalerted windows right after deciding it, a live edge when
  the fog's acknowledgement arrives (possibly after it made the next slots' Observations), so the slow
  update and the moment a new device gets statistics of its own can lag by a few slots live.

Per site it keeps the :class:`edge.baseline.SiteBaseline` (grace period, robust per-device / per-site
statistics, slow update), the site's Kitsune-style :class:`edge.site_model.SiteAnomalyModel` (fitted on
the grace period's windows when it ends), the temporal scorer's :class:`edge.baseline.ScoreBaseline` (to
find attack episodes inside the grace period; the threshold applies to raw scores), the last ``T − 1``
standardised windows of each device (the scorer's sequence) and the peers each device has already talked
to (``new_peers``). While the site is learning (grace period) no Observation is made: the windows are
returned with ``learning = True`` and nothing may be decided on them.

Scorer sequences: the sequence of a window is its device's last ``T`` standardised windows ending at it
(windows in which the device was silent are not emitted, so they are not padded in either); a device seen
for fewer than ``T`` windows repeats its oldest known window in front (edge padding), so every window gets
a score. When the grace period ends, its windows are standardised with the new baseline and scored in
time order; they fill the devices' histories and fit the score baseline. Windows whose score stands
:data:`GRACE_CLEAN_Z` above the site's usual one, in at least :data:`GRACE_CLEAN_MIN_RUN` consecutive slots
(slots that hold windows, in time order), are an attack inside the grace period: they are left out and the
baseline is fitted again without them (at most :data:`GRACE_CLEAN_MAX_SHARE` of the grace windows).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge.embed import EMBED_DIM
from edge.features import FEATURE_NAMES, N_FEATURES
from edge.observation import OBS_DIM, FusionPipeline, build_observations

if TYPE_CHECKING:  # pandas only where a DataFrame is asked for: the live daemon's process never loads it
    import pandas as pd

#: Peers remembered per device for ``new_peers`` (oldest forgotten first) and in the persisted state.
MAX_PEERS_PER_DEVICE = 4096
#: Version of :meth:`SiteFusion.state_dict`.
STATE_VERSION = 1
#: Standardised score (robust deviations above the site's usual score) from which a grace-period window is
#: left out of the refitted baseline.
GRACE_CLEAN_Z = 10.0
#: Largest share of the grace period's windows that may be left out that way.
GRACE_CLEAN_MAX_SHARE = 0.5
#: Fewest consecutive slots holding a flagged window for those windows to be left out that way (an attack
#: episode). A flagged slot between unflagged ones is kept: the robust statistics already ignore an isolated
#: outlier, and a device that alternates between two kinds of regular windows (a hub's ARP-only and
#: MQTT-keepalive windows) would otherwise lose one of its two normal modes from its baseline and from the site
#: model, alert on every window of that mode and never learn it back (alerted windows never update).
GRACE_CLEAN_MIN_RUN = 2
#: The slow update learns only from windows whose site score is at most this (log units): windows that
#: raised no alert but are far from the site's grace period (a missed attack, usually) teach nothing.
LEARN_MAX_SITE_SCORE = 1.0
_NEW_PEERS = FEATURE_NAMES.index("new_peers")


@dataclass
class ObservationBatch:
    """Observations of some windows of one site, and the evidence inputs the fog needs.

    Attributes
    ----------
    site_id : str
    device_id : ndarray of str, shape (n,)
    t_start, t_end : ndarray of float64, shape (n,)
        Window bounds, epoch s.
    proto_text : list of str
        The windows' protocol sentences.
    x : ndarray, shape (n, F), float32
        Raw statistics in :data:`edge.features.FEATURE_NAMES` order.
    learning : ndarray, shape (n,), bool
        The site was in its grace period: no Observation (``z``, ``vectors`` are zeros) and nothing may be
        decided on the window.
    z : ndarray, shape (n, F), float32
        Statistics standardised by the site baseline (unclipped).
    vectors : ndarray, shape (n, OBS_DIM), float32
        The fused Observations (:mod:`edge.observation`).
    scores : ndarray, shape (n,)
        Calibrated anomaly probabilities; NaN where unavailable.
    raw_scores : ndarray, shape (n,)
        The scorer's raw scores (the score baseline's input); NaN where unavailable.
    attention : ndarray, shape (n, T), float32, or None
        Head-averaged scorer attention, oldest window first (None without a scorer).
    attention_t : ndarray, shape (n, T), or None
        ``t_start`` of the windows the attention weights refer to.
    baseline : ndarray, shape (n, F)
        The baseline's normal value of each statistic, in its own unit (NaN while learning).
    spread : ndarray, shape (n, F)
        Half-width of the baseline's normal range, in the statistic's own unit (NaN while learning).
    scope : list of str
        ``"device"`` (own statistics), ``"site"`` (the site's) or ``"learning"`` per window.
    site_scores : ndarray, shape (n,)
        The site anomaly model's score (:mod:`edge.site_model`); NaN while learning.
    top_peers : list of list of dict, optional
        Per window, the peers with the most packets (the windows' ``top_peers``, :mod:`edge.windows`);
        None when the windows carried none.
    """

    site_id: str
    device_id: np.ndarray
    t_start: np.ndarray
    t_end: np.ndarray
    proto_text: list
    x: np.ndarray
    learning: np.ndarray
    z: np.ndarray
    vectors: np.ndarray
    scores: np.ndarray
    raw_scores: np.ndarray
    attention: np.ndarray | None
    attention_t: np.ndarray | None
    baseline: np.ndarray
    spread: np.ndarray
    scope: list[str] = field(default_factory=list)
    site_scores: np.ndarray | None = None
    top_peers: list | None = None

    def __len__(self) -> int:
        return len(self.device_id)

    @property
    def keys(self) -> pd.DataFrame:
        """``site_id, device_id, t_start, t_end, proto_text`` per window, as a DataFrame (imports pandas)."""
        import pandas as pd

        return pd.DataFrame({"site_id": [self.site_id] * len(self), "device_id": self.device_id,
                             "t_start": self.t_start, "t_end": self.t_end, "proto_text": self.proto_text})


class SiteFusion:
    """Observations of one site's windows against its own baseline (module docstring).

    Parameters
    ----------
    pipeline : FusionPipeline
        Fitted or loaded (baseline settings, scale floor, scorer).
    embedder : object, optional
        Anything with ``embed(texts) -> ndarray (n, 384)`` (normally :class:`edge.embed.TextEmbedder`);
        may be omitted when every call passes ``embeddings``.
    grace_s : float, optional
        Grace period of a new baseline (default: the pipeline's, 60 s).
    state : dict, optional
        A :meth:`state_dict` to resume from (a restarted edge keeps its learned baseline).
    retrospective : bool, default False
        Keep the grace period's windows and, when it ends, make their Observations with the new baseline
        (:meth:`pop_retrospective`) — for training data, where every labelled window is used; never for
        decisions.

    Raises
    ------
    RuntimeError
        If ``pipeline`` is neither fitted nor loaded.
    ValueError
        For a corrupt ``state``.
    """

    def __init__(self, pipeline: FusionPipeline, embedder=None, *, grace_s: float | None = None,
                 state: dict | None = None, retrospective: bool = False) -> None:
        self.pipeline = pipeline
        self.embedder = embedder
        self.retrospective = retrospective
        self.seq_len = int(getattr(pipeline, "seq_len_", 1)) if getattr(pipeline, "scorer_", None) is not None else 1
        self.baseline = pipeline.new_baseline(grace_s)
        self.score_baseline = pipeline.new_score_baseline()
        self.site_model = None  # fitted when the grace period ends
        self._history: dict[str, deque] = {}
        self._peers: dict[str, dict] = {}  # device → insertion-ordered peer set (dict keys)
        self._grace_rows: list[tuple] = []  # retrospective: (key tuple, embedding) per grace window
        self._retro: ObservationBatch | None = None
        self._last_t: float | None = None
        if state is not None:
            self._load_state(state, grace_s)

    # -- public ------------------------------------------------------------------------------------
    @property
    def learning(self) -> bool:
        """True while the site is in its grace period."""
        return not self.baseline.fitted_

    def progress(self, t_now: float | None = None) -> dict:
        """Where the site stands: ``state`` (``"learning"``/``"detecting"``), ``grace_elapsed_s``,
        ``grace_s``, ``grace_windows``, ``min_grace_windows``, ``devices_own`` (devices with their own
        statistics) and ``fitted_at`` (epoch s)."""
        b = self.baseline
        t = self._last_t if t_now is None else float(t_now)
        elapsed = (b.grace_elapsed(t) if t is not None else 0.0) if self.learning else b.grace_s
        return {"state": "learning" if self.learning else "detecting", "grace_elapsed_s": round(min(elapsed, 1e12), 3),
                "grace_s": b.grace_s, "grace_windows": b.grace_windows, "min_grace_windows": b.min_grace_windows,
                "devices_own": len(b.devices_), "fitted_at": b.fitted_at_}

    def transform(self, windows, embeddings: np.ndarray | None = None) -> ObservationBatch:
        """Observations of newly closed windows of this site.

        Parameters
        ----------
        windows : DataFrame or edge.windows.WindowColumns
            The Window contract (``site_id, device_id, t_start, t_end``, the features, ``proto_text``),
            normally one closed slot; each device's windows must arrive in time order overall. With a
            ``peers`` column, ``new_peers`` is recomputed from the peers this object has seen. Read column by
            column, so the live daemon's pandas-free :class:`~edge.windows.WindowColumns` serves as well.
        embeddings : ndarray, shape (n, 384), optional
            MiniLM embeddings of the windows' texts (default: the embedder's).

        Returns
        -------
        ObservationBatch
            In the row order of ``windows``.

        Raises
        ------
        ValueError
            If the windows belong to more than one site.
        """
        w, n = windows, len(windows)
        site_ids = np.asarray(w["site_id"], dtype=object).astype(str)
        sites = np.unique(site_ids)
        if len(sites) > 1:
            raise ValueError(f"SiteFusion serves one site; got windows of {list(sites)[:3]}")
        peers = list(w["peers"]) if "peers" in w.columns else None
        x = (np.column_stack([np.asarray(w[f], dtype=np.float64) for f in FEATURE_NAMES]) if n
             else np.zeros((0, N_FEATURES)))
        b = self.transform_arrays(str(sites[0]) if n else "", np.asarray(w["device_id"], dtype=object).astype(str),
                                  np.asarray(w["t_start"], dtype=np.float64), np.asarray(w["t_end"], dtype=np.float64),
                                  x, [str(t) for t in w["proto_text"]], embeddings, peers=peers)
        if "top_peers" in w.columns:
            b.top_peers = [list(p) if p is not None else [] for p in w["top_peers"]]
        return b

    def transform_arrays(self, site_id: str, device_id: np.ndarray, t_start: np.ndarray, t_end: np.ndarray,
                         x: np.ndarray, proto_text: list, embeddings: np.ndarray | None = None, *,
                         peers: list | None = None) -> ObservationBatch:
        """:meth:`transform` from arrays: device ids ``(n,)``, window bounds ``(n,)`` (epoch s), raw
        statistics ``(n, F)`` in :data:`edge.features.FEATURE_NAMES` order, texts, optional embeddings
        ``(n, 384)`` and peer lists (``new_peers`` is recomputed from them)."""
        devices = [str(d) for d in device_id]
        x = np.array(x, dtype=np.float64, copy=True).reshape(len(devices), N_FEATURES)
        t_start = np.asarray(t_start, dtype=np.float64)
        if peers is not None:
            x[:, _NEW_PEERS] = self._new_peers(devices, t_start, peers)
        b = self._transform(devices, t_start, x, list(proto_text), embeddings)
        b.site_id, b.device_id, b.t_end = site_id, np.asarray(devices, dtype=object), np.asarray(t_end, np.float64)
        b.proto_text = list(proto_text)
        return b

    def learn(self, batch: ObservationBatch, no_alert: np.ndarray) -> int:
        """Slow update of the baselines from the windows of ``batch`` that raised **no** alert.

        Parameters
        ----------
        batch : ObservationBatch
            As returned by :meth:`transform`.
        no_alert : ndarray of bool, shape (len(batch),)
            True where the window's decision was "no alert". Windows of the grace period are skipped.

        Returns
        -------
        int
            Windows learned from (those of :meth:`learn_windows`' rule).
        """
        m = np.asarray(no_alert, dtype=bool) & ~batch.learning
        if not m.any():
            return 0
        return self.learn_windows([str(d) for d in batch.device_id[m]], batch.x[m], batch.raw_scores[m])

    def learn_windows(self, device_ids: Sequence[str], x: np.ndarray, raw_scores: np.ndarray | None = None) -> int:
        """:meth:`learn` from raw statistics ``(n, F)`` (and raw scores ``(n,)``) of windows that raised no
        alert — the edge daemon's form, once the fog has acknowledged its decisions.

        Of those, only windows whose site score is at most :data:`LEARN_MAX_SITE_SCORE` are learned from: a
        window the policy let pass but that is far from anything the grace period showed is more likely a
        missed attack than new normal traffic, and learning it would teach the baseline the attacker's
        traffic (an attacker's own device would soon look normal to itself). Returns the windows learned.
        """
        if self.learning or not len(device_ids):
            return 0
        x = np.asarray(x, dtype=np.float64)
        ok = self._site_scores(x) <= LEARN_MAX_SITE_SCORE
        if not ok.any():
            return 0
        self.baseline.update([d for d, k in zip(device_ids, ok) if k], x[ok])
        if raw_scores is not None and self.score_baseline.stats_ is not None:
            self.score_baseline.update(np.asarray(raw_scores, dtype=np.float64)[ok])
        return int(ok.sum())

    def finish(self) -> bool:
        """End a grace period that never completed (the data ran out): fit on what was collected.

        For training only (``fuse_frame(..., retrospective=True)``): a capture shorter than the grace
        period is standardised by a baseline of its whole length. Returns True when a baseline was fitted.
        """
        if self.learning and self.baseline.grace_windows:
            self._end_grace(None)
            return True
        return False

    def pop_retrospective(self) -> ObservationBatch | None:
        """Observations of the grace period's windows made when it ended (``retrospective=True``), once."""
        out, self._retro = self._retro, None
        return out

    # -- internals ---------------------------------------------------------------------------------
    def _new_peers(self, devices: list[str], t_start: np.ndarray, peers: list) -> np.ndarray:
        from edge.windows import count_new_peers

        out = np.zeros(len(devices), dtype=np.float32)
        for i in np.argsort(t_start, kind="stable"):
            out[i] = count_new_peers(self._peers.setdefault(devices[i], {}), peers[i], MAX_PEERS_PER_DEVICE)
        return out

    @staticmethod
    def _batch(t_start, **kw) -> ObservationBatch:
        n = len(t_start)
        kw.setdefault("site_scores", np.full(n, np.nan))
        return ObservationBatch(site_id="", device_id=np.empty(n, object), t_start=np.asarray(t_start, np.float64),
                                t_end=np.zeros(n), proto_text=[], **kw)

    def _empty_batch(self, t_start, x, learning) -> ObservationBatch:
        n = len(t_start)
        nan = np.full((n, N_FEATURES), np.nan)
        return self._batch(t_start, x=x.astype(np.float32), learning=learning,
                                z=np.zeros((n, N_FEATURES), np.float32), vectors=np.zeros((n, OBS_DIM), np.float32),
                                scores=np.full(n, np.nan), raw_scores=np.full(n, np.nan), attention=None,
                                attention_t=None, baseline=nan, spread=nan.copy(), scope=["learning"] * n)

    def _transform(self, devices: list[str], t_start: np.ndarray, x: np.ndarray,
                   texts: list[str], embeddings: np.ndarray | None) -> ObservationBatch:
        n = len(devices)
        if n == 0:
            return self._empty_batch(t_start, x.reshape(0, N_FEATURES), np.zeros(0, bool))
        self._last_t = float(t_start.max()) if self._last_t is None else max(self._last_t, float(t_start.max()))
        if self.learning:
            if self.baseline.ready(float(t_start.min())):
                self._end_grace(float(t_start.min()))
            else:
                self.baseline.add_grace(devices, t_start, x)
                if self.retrospective:
                    emb = self._embed(texts, embeddings)
                    self._grace_rows += [((d, float(t)), e) for d, t, e in zip(devices, t_start, emb)]
                return self._empty_batch(t_start, x, np.ones(n, dtype=bool))
        return self._observe(devices, t_start, x, self._embed(texts, embeddings))

    def _embed(self, texts: list[str], embeddings: np.ndarray | None) -> np.ndarray:
        if embeddings is not None:
            e = np.asarray(embeddings, dtype=np.float32)
            if e.shape != (len(texts), EMBED_DIM):
                raise ValueError(f"embeddings must have shape ({len(texts)}, {EMBED_DIM}), got {e.shape}")
            return e
        if self.embedder is None:
            raise RuntimeError("SiteFusion has no embedder: pass embeddings")
        return self.embedder.embed(texts) if texts else np.zeros((0, EMBED_DIM), np.float32)

    def _site_scores(self, x: np.ndarray) -> np.ndarray:
        return self.site_model.score(x) if self.site_model is not None else np.zeros(len(x))

    def _observe(self, devices, t_start, x, emb) -> ObservationBatch:
        n = len(devices)
        z, base, spread = self.baseline.transform(devices, x)
        site_scores = self._site_scores(x)
        scope = [self.baseline.stats_for(d)[1] for d in devices]
        raw = np.full(n, np.nan)
        att = att_t = None
        if self.pipeline.scorer_ is not None:
            raw, att, att_t = self._score(devices, t_start, z)
            cal = self.pipeline.calibrate_raw(raw, self.score_baseline)
        else:
            cal = None
            self._remember(devices, t_start, z)
        vectors = build_observations(z, emb, cal, att, site_scores, stats=x)
        return self._batch(t_start, x=x.astype(np.float32), learning=np.zeros(n, dtype=bool), z=z,
                           vectors=vectors, scores=np.full(n, np.nan) if cal is None else cal, raw_scores=raw,
                           attention=att, attention_t=att_t, baseline=base, spread=spread, scope=scope,
                           site_scores=site_scores)

    def _score(self, devices: list[str], t_start: np.ndarray, z: np.ndarray):
        """Raw scores, attention and attention times of the new windows; appends them to the histories."""
        T = self.seq_len
        n = len(devices)
        seqs = np.zeros((n, T, N_FEATURES), dtype=np.float32)
        times = np.zeros((n, T), dtype=np.float64)
        for i in np.argsort(t_start, kind="stable"):
            hist = self._history.get(devices[i])
            if hist is None:
                hist = self._history[devices[i]] = deque(maxlen=max(T - 1, 1))
            rows = [h[1] for h in hist] + [z[i]]
            ts = [h[0] for h in hist] + [float(t_start[i])]
            pad = T - len(rows)
            seqs[i] = np.stack([rows[0]] * pad + rows) if pad > 0 else np.stack(rows[-T:])
            times[i] = np.array([ts[0]] * pad + ts) if pad > 0 else np.array(ts[-T:])
            if T > 1:
                hist.append((float(t_start[i]), z[i].astype(np.float32)))
        raw, att = self.pipeline.score_sequences(seqs)
        return raw, att, times

    def _remember(self, devices: list[str], t_start: np.ndarray, z: np.ndarray) -> None:
        if self.seq_len <= 1:
            return
        for i in np.argsort(t_start, kind="stable"):
            hist = self._history.setdefault(devices[i], deque(maxlen=self.seq_len - 1))
            hist.append((float(t_start[i]), z[i].astype(np.float32)))

    def _end_grace(self, t_now: float | None) -> None:
        devs, t, x = self.baseline.grace_rows()
        stored = self.baseline.grace_state()
        order = np.argsort(t, kind="stable")
        burst = self.baseline.burst_keep()  # burst slots (a flood, a sweep) stay out of the baseline
        keep = np.ones(len(devs), dtype=bool) if burst is None else burst
        self.baseline.fit(t_now, keep)
        raw, att, att_t, z, cal = self._grace_pass(devs, t, x, order)
        if cal is not None:
            # leave out the grace windows the scorer flags (an attack inside the grace period) and fit again
            flagged = np.zeros(len(devs), dtype=bool)
            flagged[order] = np.nan_to_num(self.score_baseline.standardise(raw), nan=0.0) >= GRACE_CLEAN_Z
            flagged &= keep
            flagged &= _in_slot_runs(t, flagged, GRACE_CLEAN_MIN_RUN)
            if 0 < flagged.sum() <= GRACE_CLEAN_MAX_SHARE * keep.sum():
                keep = keep & ~flagged
                self.baseline.restore_grace(stored)
                self.baseline.refit(keep)
                self._history = {}
                raw, att, att_t, z, cal = self._grace_pass(devs, t, x, order)
        if keep.sum() >= 2:
            self.site_model = self.pipeline.new_site_model().fit(x[keep])
        site_scores = self._site_scores(x[order])
        base, spread = self._grace_base
        if self.retrospective and self._grace_rows:
            rows = [self._grace_rows[i] for i in order]
            emb = np.stack([r[1] for r in rows])
            self._retro = self._batch(
                t[order], x=x[order].astype(np.float32), learning=np.ones(len(devs), dtype=bool), z=z,
                vectors=build_observations(z, emb, cal, att, site_scores, stats=x[order]),
                scores=np.full(len(devs), np.nan) if cal is None else cal,
                raw_scores=raw, attention=att, attention_t=att_t, baseline=base, spread=spread,
                scope=[self.baseline.stats_for(devs[i])[1] for i in order], site_scores=site_scores)
            self._retro.device_id = np.asarray([devs[i] for i in order], dtype=object)
        self._grace_rows = []

    def _grace_pass(self, devs, t, x, order):
        """Standardise and score the grace windows in time order with the current baseline; fit the score
        baseline on their scores. Returns ``raw, attention, attention_t, z, calibrated`` (time order)."""
        d = [devs[i] for i in order]
        z, base, spread = self.baseline.transform(d, x[order])
        self._grace_base = (base, spread)
        if self.pipeline.scorer_ is None:
            self._remember(d, t[order], z)
            return np.full(len(d), np.nan), None, None, z, None
        raw, att, att_t = self._score(d, t[order], z)
        self.score_baseline.fit(raw)
        return raw, att, att_t, z, self.pipeline.calibrate_raw(raw, self.score_baseline)

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """JSON-ready state: the baselines, each device's scorer history and its known peers."""
        return {"version": STATE_VERSION, "baseline": self.baseline.to_dict(),
                "score_baseline": self.score_baseline.to_dict(),
                "site_model": self.site_model.to_dict() if self.site_model is not None else None,
                "history": {d: [[t, z.tolist()] for t, z in h] for d, h in self._history.items()},
                "peers": {d: list(p)[-MAX_PEERS_PER_DEVICE:] for d, p in self._peers.items()}}

    def _load_state(self, state: dict, grace_s: float | None) -> None:
        from edge.baseline import ScoreBaseline, SiteBaseline

        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a site-fusion state of version {STATE_VERSION}")
        try:
            b = SiteBaseline.from_dict(state["baseline"])
            if b.n_features != N_FEATURES:
                raise ValueError(f"baseline of {b.n_features} statistics, this version has {N_FEATURES}")
            if grace_s is not None and not b.fitted_:  # still learning: the grace period asked for now applies
                b.grace_s = float(grace_s)
            self.baseline = b
            self.score_baseline = ScoreBaseline.from_dict(state["score_baseline"])
            from edge.site_model import SiteAnomalyModel

            self.site_model = SiteAnomalyModel.from_dict(state["site_model"]) if state.get("site_model") else None
            T = max(self.seq_len - 1, 1)
            self._history = {d: deque(((float(t), np.asarray(z, np.float32)) for t, z in h), maxlen=T)
                             for d, h in state["history"].items()}
            self._peers = {d: dict.fromkeys(p) for d, p in state["peers"].items()}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"corrupt site-fusion state ({exc!r})") from exc


def _in_slot_runs(t_start: np.ndarray, flagged: np.ndarray, min_run: int) -> np.ndarray:
    """Which windows lie in a run of flagged slots.

    Parameters
    ----------
    t_start : ndarray, shape (n,)
        Window start of each window (epoch s); the slots are its distinct values, in time order.
    flagged : ndarray of bool, shape (n,)
    min_run : int
        Fewest consecutive slots, each holding at least one flagged window, that make a run.

    Returns
    -------
    ndarray of bool, shape (n,)
        True for every window (flagged or not) whose slot lies in such a run.
    """
    slots, inv = np.unique(np.asarray(t_start, dtype=np.float64), return_inverse=True)
    hot = np.zeros(len(slots), dtype=bool)
    np.logical_or.at(hot, inv, np.asarray(flagged, dtype=bool))
    ok = np.zeros(len(slots), dtype=bool)
    start = 0
    for k in range(len(slots) + 1):
        if k < len(slots) and hot[k]:
            continue
        if k - start >= min_run:
            ok[start:k] = True
        start = k + 1
    return ok[inv]


@dataclass
class FusedFrame:
    """Observations of a whole window table, row-aligned with it (:func:`fuse_frame`).

    Attributes
    ----------
    vectors : ndarray, shape (n, OBS_DIM), float32
        Zeros for grace-period windows unless ``retrospective``.
    learning : ndarray of bool, shape (n,)
        The window fell in its site's grace period.
    z, baseline, spread, scores, attention, attention_t, scope, site_scores
        As in :class:`ObservationBatch`, row-aligned.
    decisions : dict of ndarray, optional
        ``level, attack_class, confidence, alert`` of each window (``decide`` given); grace-period windows
        have level 0, class 0, confidence 1 and no alert.
    """

    vectors: np.ndarray
    learning: np.ndarray
    z: np.ndarray
    baseline: np.ndarray
    spread: np.ndarray
    scores: np.ndarray
    attention: np.ndarray | None
    attention_t: np.ndarray | None
    scope: list[str]
    decisions: dict | None = None
    site_scores: np.ndarray | None = None


def site_keys(frame: pd.DataFrame) -> pd.Series:
    """The baseline each window belongs to: its site and, in a table of several captures, its capture
    (each recording of a site starts with its own grace period)."""
    import pandas as pd

    site = (frame["site_id"] if "site_id" in frame.columns else pd.Series("site", index=frame.index)).astype(str)
    if "capture" in frame.columns:
        return site + "\x1f" + frame["capture"].astype(str)
    return site


def fuse_frame(pipeline: FusionPipeline, frame: pd.DataFrame, embeddings: np.ndarray, *,
               grace_s: float | None = None, decide: Callable | None = None, learn_from: str = "decisions",
               retrospective: bool = False, on_slot: Callable[[int, int], None] | None = None) -> FusedFrame:
    """Replay a window table slot by slot through one :class:`SiteFusion` per site (module docstring).

    Parameters
    ----------
    pipeline : FusionPipeline
    frame : DataFrame
        Windows (the Window contract; ``label`` needed for ``learn_from="labels"``).
    embeddings : ndarray, shape (len(frame), 384)
    grace_s : float, optional
        Grace period (default the pipeline's).
    decide : callable, optional
        ``decide(vectors (m, OBS_DIM)) -> (level, attack_class, confidence, alert)`` arrays, called on each
        slot's windows after the grace period (the fog's decision rule, :func:`fog.alerts.decide`).
    learn_from : {"decisions", "labels", "none"}
        Which windows update the baselines: those ``decide`` did not alert (deployment), those labelled
        benign (building training data, where the decision is taken to be right), or none.
    retrospective : bool
        Give grace-period windows the Observations of the baseline fitted at the period's end, and fit a
        baseline on sites too short to finish their grace period (training data only).
    on_slot : callable, optional
        ``on_slot(done, total)`` progress, per slot.

    Returns
    -------
    FusedFrame

    Raises
    ------
    ValueError
        For a bad ``learn_from``, missing labels, or embeddings of the wrong shape.
    """
    if learn_from not in ("decisions", "labels", "none"):
        raise ValueError(f"learn_from={learn_from!r} is invalid: expected 'decisions', 'labels' or 'none'")
    if learn_from == "decisions" and decide is None:
        raise ValueError("learn_from='decisions' needs a decide function")
    if learn_from == "labels" and "label" not in frame.columns:
        raise ValueError("learn_from='labels' needs a 'label' column")
    df = frame.reset_index(drop=True)
    n = len(df)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.shape != (n, EMBED_DIM):
        raise ValueError(f"embeddings must have shape ({n}, {EMBED_DIM}), got {emb.shape}")
    T = int(getattr(pipeline, "seq_len_", 1)) if pipeline.scorer_ is not None else None
    out = FusedFrame(vectors=np.zeros((n, OBS_DIM), np.float32), learning=np.ones(n, dtype=bool),
                     z=np.zeros((n, N_FEATURES), np.float32), baseline=np.full((n, N_FEATURES), np.nan),
                     spread=np.full((n, N_FEATURES), np.nan), scores=np.full(n, np.nan),
                     attention=np.zeros((n, T), np.float32) if T else None,
                     attention_t=np.zeros((n, T), np.float64) if T else None, scope=["learning"] * n,
                     site_scores=np.full(n, np.nan),
                     decisions={"level": np.zeros(n, np.int64), "attack_class": np.zeros(n, np.int64),
                                "confidence": np.ones(n, np.float32), "alert": np.zeros(n, dtype=bool)}
                     if decide is not None else None)
    labels = df["label"].to_numpy() if "label" in df.columns else None
    keys = site_keys(df)
    slots = df.groupby([keys, df["t_start"].astype(float)], sort=True).indices
    by_site: dict[str, list] = {}
    for (site, _t), idx in slots.items():
        by_site.setdefault(site, []).append(np.asarray(idx))
    total = len(slots)
    done = 0

    def put(idx: np.ndarray, b: ObservationBatch, grace: bool) -> None:
        out.vectors[idx] = b.vectors
        out.learning[idx] = grace
        out.z[idx] = b.z
        out.baseline[idx] = b.baseline
        out.spread[idx] = b.spread
        out.scores[idx] = b.scores
        if b.site_scores is not None:
            out.site_scores[idx] = b.site_scores
        if T and b.attention is not None:
            out.attention[idx] = b.attention
            out.attention_t[idx] = b.attention_t
        for j, i in enumerate(idx):
            out.scope[i] = b.scope[j]

    site_col = df["site_id"].astype(str).to_numpy() if "site_id" in df.columns else np.full(n, "site", object)
    dev_col = df["device_id"].astype(str).to_numpy(object)
    t0_col, t1_col = df["t_start"].to_numpy(np.float64), df["t_end"].to_numpy(np.float64)
    x_col = df[list(FEATURE_NAMES)].to_numpy(np.float64)
    text_col = df["proto_text"].astype(str).to_numpy(object)
    peers_col = df["peers"].to_numpy(object) if "peers" in df.columns else None
    for site in sorted(by_site):
        sf = SiteFusion(pipeline, None, grace_s=grace_s, retrospective=retrospective)
        grace_idx: list[np.ndarray] = []
        for idx in by_site[site]:
            was_learning = sf.learning
            b = sf.transform_arrays(site_col[idx[0]], dev_col[idx], t0_col[idx], t1_col[idx], x_col[idx],
                                    list(text_col[idx]), emb[idx],
                                    peers=None if peers_col is None else list(peers_col[idx]))
            if was_learning and not sf.learning and retrospective:
                _fill_retro(sf, np.concatenate(grace_idx), dev_col, t0_col, put)
            if b.learning.all():
                grace_idx.append(idx)
                done += 1
                continue
            put(idx, b, False)
            no_alert = np.ones(len(idx), dtype=bool)
            if decide is not None:
                level, cls, conf, alert = decide(b.vectors)
                for k, v in zip(("level", "attack_class", "confidence", "alert"), (level, cls, conf, alert)):
                    out.decisions[k][idx] = v
                no_alert = ~np.asarray(alert, dtype=bool)
            if learn_from == "labels":
                no_alert = labels[idx] == 0
            if learn_from != "none":
                sf.learn(b, no_alert)
            done += 1
            if on_slot is not None:
                on_slot(done, total)
        if retrospective and sf.learning and grace_idx and sf.finish():
            _fill_retro(sf, np.concatenate(grace_idx), dev_col, t0_col, put)
    return out


def _fill_retro(sf: SiteFusion, grace_idx: np.ndarray, dev_col: np.ndarray, t0_col: np.ndarray, put) -> None:
    """Place the retrospective Observations of a finished grace period at their rows (matched by key)."""
    b = sf.pop_retrospective()
    if b is None:
        return
    pos = {(str(dev_col[i]), float(t0_col[i])): i for i in grace_idx}
    rows = np.array([pos[(str(d), float(t))] for d, t in zip(b.device_id, b.t_start)])
    put(rows, b, True)
