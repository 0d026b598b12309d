"""The detectors the experiments compare, behind one small interface: ``fit(src)`` then ``alerts(src)``.

* :class:`RandomForestDetector` — supervised per-window RandomForest on the 64 window statistics
  (the CICFlowMeter + scikit-learn notebook baseline); needs labels.
* :class:`KitsuneDetector` — the Kitsune-style autoencoder ensemble (Mirsky et al., NDSS 2018;
  :class:`training.scorer.baselines.KitsuneEnsemble`), fitted on benign windows, SPOT threshold.
* :class:`ScorerDetector` — our LSTM + temporal-attention scorer alone (benign windows, SPOT threshold).
* :class:`MarlDetector` — the MAPPO defender actor on the fused Observation, trained with RLlib
  (``training.mappo.train``); an optional feature mask zeroes parts of the Observation (ablation).

Every detector is seeded; ``alerts`` returns a boolean array ``(n,)`` (alert = the fog's decision rule
for the policy). The scorer and the policy run the deployment path: each site (``site_id`` × ``capture``)
learns its baseline in its first :data:`GRACE_S` seconds, during which they raise nothing; metrics leave
those windows out (:func:`grace_mask`).
"""

from __future__ import annotations

import copy
import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.baseline import DEFAULT_GRACE_S
from edge.features import FEATURE_NAMES
from edge.observation import OBS_DIM, OBS_SLICES
from experiments.data import Source

log = logging.getLogger(__name__)

#: Grace period of every site baseline in the experiments, seconds (the deployment default).
GRACE_S = DEFAULT_GRACE_S


def _memo(src: Source, key: tuple, compute) -> np.ndarray:
    """``compute()`` once per source object and ``key`` (a pure function of the source's windows); a copy."""
    cache = src.__dict__.setdefault("_memo", {})
    if key not in cache:
        cache[key] = compute()
    return cache[key].copy()


def grace_mask(src: Source, grace_s: float = GRACE_S) -> np.ndarray:
    """``(n,)`` True for windows in their site's grace period (the first ``grace_s`` seconds of each
    ``site_id`` × ``capture``, and at least the first 12 windows), which no detector decides (computed once
    per source)."""
    from edge.embed import EMBED_DIM
    from edge.observation import FusionPipeline
    from edge.online import fuse_frame

    def compute() -> np.ndarray:
        frame = src.frame.reset_index(drop=True)
        pipe = FusionPipeline(baseline={"grace_s": grace_s}).fit(frame)
        return fuse_frame(pipe, frame, np.zeros((len(frame), EMBED_DIM), np.float32), learn_from="none").learning

    return _memo(src, ("grace", float(grace_s)), compute)

#: Observation parts kept by each feature set of the ablation (the rest is zeroed).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "stats": ("stats_z", "stats_level"),
    "stats+minilm": ("stats_z", "stats_level", "embedding"),
    "stats+score": ("stats_z", "stats_level", "score", "score_available", "attention"),
    "full": ("stats_z", "stats_level", "embedding", "score", "score_available", "attention", "site_score"),
}


def obs_mask(feature_set: str) -> np.ndarray:
    """``(OBS_DIM,)`` float32 mask of ``feature_set`` (a key of :data:`FEATURE_SETS`).

    Raises
    ------
    ValueError
        For an unknown feature set.
    """
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature set {feature_set!r}: expected one of {list(FEATURE_SETS)}")
    m = np.zeros(OBS_DIM, dtype=np.float32)
    for part in FEATURE_SETS[feature_set]:
        m[OBS_SLICES[part]] = 1.0
    return m


def _stats(src: Source) -> np.ndarray:
    return src.frame[list(FEATURE_NAMES)].to_numpy(np.float64)


def _site_z(src: Source, grace_s: float = GRACE_S) -> np.ndarray:
    """Window statistics standardised by their site baseline ``(n, 63)`` (training-style: grace windows
    retrospectively, updates from benign-labelled windows; unlabeled sources learn from none)."""
    from edge.embed import EMBED_DIM
    from edge.observation import FusionPipeline
    from edge.online import fuse_frame

    def compute() -> np.ndarray:
        frame = src.frame.reset_index(drop=True)
        pipe = FusionPipeline(baseline={"grace_s": grace_s}).fit(frame)
        fused = fuse_frame(pipe, frame, np.zeros((len(frame), EMBED_DIM), np.float32), retrospective=True,
                           learn_from="labels" if "label" in frame.columns else "none")
        return np.clip(fused.z, -10, 10)

    return _memo(src, ("site_z", float(grace_s)), compute)


def _decisions_from_alerts(alert: np.ndarray, level: int = 2) -> dict:
    a = np.asarray(alert, dtype=bool)
    return {"alert": a, "level": np.where(a, level, 0)}


class RandomForestDetector:
    """Supervised RandomForest on the window statistics ``(n, 63)``; alert when P(attack) ≥ 0.5.

    ``class_weight="balanced_subsample"`` (attacks are rare), one job (deterministic with ``seed``).
    With only benign training windows it never alerts (it cannot learn an attack it has not seen).
    ``site_standardised=True`` trains and predicts on the statistics standardised by each site's baseline
    (the ``stats_z`` part of the Observation) instead of the raw ones; it raises nothing in a site's grace
    period.
    """

    def __init__(self, seed: int = 0, n_estimators: int = 200, site_standardised: bool = False) -> None:
        self.seed, self.n_estimators, self.site_standardised = seed, n_estimators, site_standardised
        self.name = "RandomForest (site baseline)" if site_standardised else "RandomForest"

    def _x(self, src: Source) -> np.ndarray:
        return _site_z(src) if self.site_standardised else _stats(src)

    def fit(self, src: Source) -> RandomForestDetector:  # noqa: D102
        from sklearn.ensemble import RandomForestClassifier

        y = src.frame["label"].to_numpy()
        self.model_ = None
        if y.min() != y.max():
            self.model_ = RandomForestClassifier(n_estimators=self.n_estimators, class_weight="balanced_subsample",
                                                 min_samples_leaf=2, random_state=self.seed, n_jobs=1)
            self.model_.fit(self._x(src), y)
        return self

    def scores(self, src: Source) -> np.ndarray:
        """P(attack) per window ``(n,)``."""
        if self.model_ is None:
            return np.zeros(len(src.frame))
        p = self.model_.predict_proba(self._x(src))[:, 1]
        if self.site_standardised:
            p[grace_mask(src)] = 0.0
        return p

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        return self.scores(src) >= 0.5

    def decisions(self, src: Source) -> dict:
        """``alert`` and ``level`` (2 for an alert) arrays ``(n,)``."""
        return _decisions_from_alerts(self.alerts(src))


class _SequenceAnomalyDetector:
    """Shared part of the benign-trained sequence scorers: per-device sequences, SPOT threshold."""

    def __init__(self, seed: int = 0, epochs: int = 15, seq_len: int = 10, q: float = 1e-3) -> None:
        self.seed, self.epochs, self.seq_len, self.q = seed, epochs, seq_len, q

    def _sequences(self, frame):
        from edge.scorer.sequences import build_sequences

        return build_sequences(frame, self.seq_len)


class KitsuneDetector(_SequenceAnomalyDetector):
    """Kitsune-style ensemble of small autoencoders on the current window, trained on benign windows
    (the first 80 % in time), SPOT threshold (q = 1e-3) on the last 20 %."""

    name = "Kitsune-style"

    def fit(self, src: Source) -> KitsuneDetector:  # noqa: D102
        from edge.scorer.threshold import SPOTThreshold
        from training.scorer.baselines import KitsuneEnsemble

        benign = src.frame[src.frame["label"] == 0].reset_index(drop=True)
        seqs = self._sequences(benign)
        order = np.argsort(benign["t_start"].to_numpy()[seqs.rows], kind="stable")
        cut = int(0.8 * len(order))
        X = seqs.X[order]
        self.model_ = KitsuneEnsemble(epochs=self.epochs, seed=self.seed).fit(X[:cut])
        self.threshold_ = SPOTThreshold(q=self.q).fit(self.model_.score_samples(X[cut:]))
        return self

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        seqs = self._sequences(src.frame)
        out = np.zeros(len(src.frame), dtype=bool)
        out[seqs.rows] = self.threshold_.predict(self.model_.score_samples(seqs.X)).astype(bool)
        return out


class KitsuneGraceDetector:
    """Kitsune as it is deployed: a KitNET-style autoencoder ensemble learned from each test site's own grace
    period (its first ``grace_s`` seconds, unlabeled; :class:`edge.site_model.SiteAnomalyModel`, the model
    whose score is also part of the Observation), alerting afterwards on windows reconstructed worse than any
    grace window (Kitsune's threshold). Nothing is learned from other networks; ``fit`` does nothing."""

    name = "Kitsune-style (grace period)"

    def __init__(self, seed: int = 0, epochs: int = 60) -> None:
        self.seed, self.epochs = seed, epochs

    def fit(self, src: Source | None = None) -> KitsuneGraceDetector:  # noqa: D102
        return self

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        from edge.online import site_keys
        from edge.site_model import SiteAnomalyModel

        frame = src.frame.reset_index(drop=True)
        grace = grace_mask(src)
        x = _stats(src)
        keys = site_keys(frame).to_numpy()
        out = np.zeros(len(frame), dtype=bool)
        for k in np.unique(keys):
            m = keys == k
            g = m & grace
            if g.sum() < 2 or not (m & ~grace).any():
                continue
            model = SiteAnomalyModel(epochs=self.epochs, seed=self.seed).fit(x[g])
            thr = float(np.max(model.score(x[g])))
            after = m & ~grace
            out[after] = model.score(x[after]) > thr
        return out

    def decisions(self, src: Source) -> dict:
        """``alert`` and ``level`` (2 for an alert) arrays ``(n,)``."""
        return _decisions_from_alerts(self.alerts(src))


class ScorerDetector(_SequenceAnomalyDetector):
    """The LSTM + temporal-attention scorer alone (``edge.scorer``), trained on benign windows; alert
    when the calibrated score ≥ 1 − q. Its checkpoint feeds the Observation of :class:`MarlDetector`."""

    name = "temporal scorer"

    def fit(self, src: Source, directory: str | Path | None = None) -> ScorerDetector:
        """Train on the benign windows of ``src``; the checkpoint goes to ``directory`` (default: a
        temporary folder kept as long as this object)."""
        from edge.scorer.checkpoint import save_checkpoint
        from training.scorer.train import TrainConfig, train_from_frame

        scorer, threshold, summary = train_from_frame(
            src.frame, TrainConfig(seq_len=self.seq_len, epochs=self.epochs, q=self.q, seed=self.seed))
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="marlids-scorer-")
            directory = self._tmp.name
        self.dir_ = str(save_checkpoint(directory, scorer, threshold, summary))
        self._pipe = self.pipeline(src)
        return self

    def pipeline(self, fit_on: Source):
        """A :class:`edge.observation.FusionPipeline` with this scorer (its site-baseline settings)."""
        from edge.observation import FusionPipeline

        return FusionPipeline(self.dir_).fit(fit_on.frame)

    def alerts(self, src: Source) -> np.ndarray:
        """The scorer alone on the deployment path: each site's grace period first (no alerts), then an
        alert when the calibrated score ≥ 1 − q; the baselines learn from the windows it did not flag."""
        from edge.online import fuse_frame

        q = self._pipe.alert_quantile()
        j = OBS_SLICES["score"].start

        def decide(v):
            hot = v[:, j] >= q
            n = len(v)
            return np.where(hot, 2, 0), np.where(hot, 6, 0), np.ones(n, np.float32), hot

        fused = fuse_frame(self._pipe, src.frame.reset_index(drop=True), src.embeddings, decide=decide)
        return fused.decisions["alert"]

    def decisions(self, src: Source) -> dict:
        """``alert`` and ``level`` (2 for an alert) arrays ``(n,)``."""
        return _decisions_from_alerts(self.alerts(src))


class MarlDetector:
    """The MAPPO (or IPPO / single-agent PPO) defender actor on the fused Observation.

    Parameters
    ----------
    args : training.mappo.config.MappoArgs
        Training settings (``out_dir`` is where the runs go).
    scorer : ScorerDetector
        Fitted temporal scorer for the score part of the Observation.
    feature_set : str
        Key of :data:`FEATURE_SETS`; other Observation parts are zeroed in training and evaluation.
    name : str
    """

    def __init__(self, args, scorer: ScorerDetector, feature_set: str = "full", name: str = "MAPPO") -> None:
        self.args, self.scorer, self.feature_set, self.name = args, scorer, feature_set, name
        self.mask = obs_mask(feature_set)
        self.evidence_gate = True
        self.scorer_alerts = False
        self.state_ = None
        self.train_seconds_ = 0.0

    def observations(self, src: Source) -> np.ndarray:
        """Masked training Observations ``(n, OBS_DIM)`` of labeled ``src`` (:func:`training.data.observations`:
        each site standardised by its own grace-period baseline, grace windows included)."""
        from training.data import observations

        return observations(src.frame.reset_index(drop=True), self.pipe_, src.embeddings) * self.mask

    def fit(self, src: Source, *, iterations: int | None = None, fine_tune: bool = False,
            scaler_on: Source | None = None) -> MarlDetector:
        """Train (or, with ``fine_tune``, continue training from the current weights) on ``src``.

        The Observation scaler is fitted once, on the benign windows of ``scaler_on`` (default ``src``),
        at the first call; fine-tuning keeps it (the run-time pipeline stays what was deployed).
        """
        from fog.policy import DefenderActor
        from fog.traces import TraceSet
        from training.mappo.train import train

        if not fine_tune or not hasattr(self, "pipe_"):
            self.pipe_ = self.scorer.pipeline(scaler_on or src)
        traces = TraceSet.from_frame(src.frame.reset_index(drop=True), self.observations(src))
        args = replace(self.args, iterations=iterations or self.args.iterations)
        final = train(args, prepared=(self.pipe_, traces), initial_state=self.state_ if fine_tune else None)
        self.state_ = final["defender_state"]
        self.actor_ = DefenderActor.load(final["policy_dir"])
        self.actor_.anomaly_threshold = self.pipe_.alert_quantile()  # corroboration (and with_scorer_alerts)
        self.policy_dir_ = final["policy_dir"]
        self.train_seconds_ += final["train_seconds"]
        return self

    def decide(self, src: Source) -> tuple[np.ndarray, np.ndarray]:
        """Alert levels ``(n,)`` (0–4) and attack classes ``(n,)`` on the deployment path (grace period
        first, then the fog's decision rule on each slot; the baselines learn from windows not alerted)."""
        d = self.decide_all(src)
        return d["level"], d["attack_class"]

    def decide_all(self, src: Source) -> dict:
        """``level, attack_class, confidence, alert`` arrays ``(n,)`` (see :meth:`decide`); levels after the
        alert severity rule (:func:`fog.alerts.severity`)."""
        from edge.online import fuse_frame
        from fog.alerts import severity

        mask = self.mask
        fused = fuse_frame(self.pipe_, src.frame.reset_index(drop=True), src.embeddings,
                           decide=lambda v: self._decide(v * mask))
        d = dict(fused.decisions)  # levels as the alerts carry them (fog.alerts.severity, as make_alert applies it)
        d["level"] = severity(d["level"], d["attack_class"], np.abs(np.nan_to_num(fused.z)).max(axis=1))
        return d

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        return self.decide_all(src)["alert"]

    def _decide(self, v: np.ndarray):
        """The fog's rule (:meth:`fog.policy.DefenderActor.decide_all`) on Observations ``v`` ``(m, OBS_DIM)``,
        with or without the evidence gate and the scorer's alerts (the scorer's alert quantile, set by
        :meth:`fit`, is that of :class:`ScorerDetector`)."""
        return self.actor_.decide_all(v, evidence_gate=self.evidence_gate, scorer_alerts=self.scorer_alerts)

    def with_scorer_alerts(self) -> MarlDetector:
        """The same fitted actor, and an alert also where the temporal scorer alone would alert (with the
        evidence gate): the policy ∨ the anomaly detector, from one training run."""
        other = copy.copy(self)
        other.scorer_alerts, other.name = True, f"{self.name} ∨ scorer"
        other.__dict__.pop("_dec_cache", None)
        return other

    def without_evidence_gate(self) -> MarlDetector:
        """The same fitted actor deciding without the evidence gate (:func:`fog.alerts.decide`): what the
        gate adds, from one training run."""
        other = copy.copy(self)
        other.evidence_gate, other.name = False, f"{self.name} (no evidence gate)"
        other.__dict__.pop("_dec_cache", None)
        return other

    def decisions(self, src: Source) -> dict:
        """``level, attack_class, confidence, alert`` arrays ``(n,)`` (cached per source object)."""
        cache = getattr(self, "_dec_cache", None)
        if cache is not None and cache[0] is src:
            return cache[1]
        d = self.decide_all(src)
        self._dec_cache = (src, d)
        return d
