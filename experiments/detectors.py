"""The detectors the experiments compare, behind one small interface: ``fit(src)`` then ``alerts(src)``.

* :class:`RandomForestDetector` — supervised per-window RandomForest on the 63 window statistics
  (the CICFlowMeter + scikit-learn notebook baseline); needs labels.
* :class:`KitsuneDetector` — the Kitsune-style autoencoder ensemble (Mirsky et al., NDSS 2018;
  :class:`edge.scorer.baselines.KitsuneEnsemble`), fitted on benign windows, SPOT threshold.
* :class:`ScorerDetector` — our LSTM + temporal-attention scorer alone (benign windows, SPOT threshold).
* :class:`MarlDetector` — the MAPPO defender actor on the fused Observation, trained with RLlib
  (``training.mappo.train``); an optional feature mask zeroes parts of the Observation (ablation).

Every detector is seeded; ``alerts`` returns a boolean array ``(n,)`` (alert = level ≥ 2 for the policy).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge.features import FEATURE_NAMES
from edge.observation import OBS_DIM, OBS_SLICES
from experiments.data import Source

log = logging.getLogger(__name__)

#: Observation parts kept by each feature set of the ablation (the rest is zeroed).
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "stats": ("stats_z",),
    "stats+minilm": ("stats_z", "embedding"),
    "stats+score": ("stats_z", "score", "score_available", "attention"),
    "full": ("stats_z", "embedding", "score", "score_available", "attention"),
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


class RandomForestDetector:
    """Supervised RandomForest on the window statistics ``(n, 62)``; alert when P(attack) ≥ 0.5.

    ``class_weight="balanced_subsample"`` (attacks are rare), one job (deterministic with ``seed``).
    With only benign training windows it never alerts (it cannot learn an attack it has not seen).
    """

    name = "RandomForest"

    def __init__(self, seed: int = 0, n_estimators: int = 200) -> None:
        self.seed, self.n_estimators = seed, n_estimators

    def fit(self, src: Source) -> RandomForestDetector:  # noqa: D102
        from sklearn.ensemble import RandomForestClassifier

        y = src.frame["label"].to_numpy()
        self.model_ = None
        if y.min() != y.max():
            self.model_ = RandomForestClassifier(n_estimators=self.n_estimators, class_weight="balanced_subsample",
                                                 min_samples_leaf=2, random_state=self.seed, n_jobs=1)
            self.model_.fit(_stats(src), y)
        return self

    def scores(self, src: Source) -> np.ndarray:
        """P(attack) per window ``(n,)``."""
        if self.model_ is None:
            return np.zeros(len(src.frame))
        return self.model_.predict_proba(_stats(src))[:, 1]

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        return self.scores(src) >= 0.5


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
        from edge.scorer.baselines import KitsuneEnsemble
        from edge.scorer.threshold import SPOTThreshold

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


class ScorerDetector(_SequenceAnomalyDetector):
    """The LSTM + temporal-attention scorer alone (``edge.scorer``), trained on benign windows; alert
    when the calibrated score ≥ 1 − q. Its checkpoint feeds the Observation of :class:`MarlDetector`."""

    name = "temporal scorer"

    def fit(self, src: Source, directory: str | Path | None = None) -> ScorerDetector:
        """Train on the benign windows of ``src``; the checkpoint goes to ``directory`` (default: a
        temporary folder kept as long as this object)."""
        from edge.scorer.checkpoint import save_checkpoint
        from edge.scorer.train import TrainConfig, train_from_frame

        scorer, threshold, summary = train_from_frame(
            src.frame, TrainConfig(seq_len=self.seq_len, epochs=self.epochs, q=self.q, seed=self.seed))
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="marlids-scorer-")
            directory = self._tmp.name
        self.dir_ = str(save_checkpoint(directory, scorer, threshold, summary))
        self._pipe = self.pipeline(src)
        return self

    def pipeline(self, fit_on: Source):
        """A :class:`edge.observation.FusionPipeline` with this scorer, scaler fitted on ``fit_on``."""
        from edge.observation import FusionPipeline

        return FusionPipeline(self.dir_).fit(fit_on.frame)

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        cal, _ = self._pipe.scores(src.frame.reset_index(drop=True))
        return np.nan_to_num(cal, nan=0.0) >= 1.0 - float(self._pipe.threshold_.q)


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
        self.state_ = None
        self.train_seconds_ = 0.0

    def observations(self, src: Source) -> np.ndarray:
        """Masked Observations ``(n, OBS_DIM)`` of ``src`` through the fitted pipeline."""
        return self.pipe_.transform(src.frame.reset_index(drop=True), src.embeddings) * self.mask

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
        self.policy_dir_ = final["policy_dir"]
        self.train_seconds_ += final["train_seconds"]
        return self

    def decide(self, src: Source) -> tuple[np.ndarray, np.ndarray]:
        """Alert levels ``(n,)`` (0–4) and attack classes ``(n,)`` of the greedy actor."""
        level, cls, _ = self.actor_.decide(self.observations(src))
        return level, cls

    def alerts(self, src: Source) -> np.ndarray:  # noqa: D102
        from fog.env import ALERT_THRESHOLD

        return self.decide(src)[0] >= ALERT_THRESHOLD
