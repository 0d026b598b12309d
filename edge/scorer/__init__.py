"""Temporal anomaly scorer for per-device window sequences ``(batch, T, F)`` and its thresholds: what the edge runs.

* :class:`TemporalScorer` — LSTM + multi-head temporal attention, trained on benign sequences to predict
  the current window; ``score_samples`` (higher = more anomalous), attention ``(batch, heads, T)``,
  MC-dropout uncertainty.
* :class:`SPOTThreshold` — extreme-value (peaks-over-threshold) threshold fitted on benign validation
  scores, with a calibrated 0–1 value (``1 - P(benign score >= s)``).
* Training, the comparison with baselines and the baselines themselves are offline work:
  :mod:`training.scorer`.
* :func:`build_sequences`, :func:`time_split` — window table → sequences, time-ordered splits.
* :func:`save_checkpoint` / :func:`load_checkpoint` (:class:`CheckpointError`), :func:`export_onnx` /
  :class:`OnnxScorer`, :func:`explain` (the Observation's attention summary is :func:`edge.observation.attention_summary`).

Nothing heavy is imported at package import: torch, scipy and scikit-learn load inside the functions.
"""

from edge.scorer._common import CheckpointError, FeatureScaler, NotFittedError
from edge.scorer.checkpoint import load_checkpoint, save_checkpoint
from edge.scorer.explain import explain
from edge.scorer.export import OnnxScorer, export_onnx
from edge.scorer.model import TemporalScorer
from edge.scorer.sequences import SequenceSet, build_sequences, time_split
from edge.scorer.threshold import GaussianThreshold, SPOTThreshold

__all__ = [
    "CheckpointError",
    "FeatureScaler",
    "GaussianThreshold",
    "NotFittedError",
    "OnnxScorer",
    "SPOTThreshold",
    "SequenceSet",
    "TemporalScorer",
    "build_sequences",
    "explain",
    "export_onnx",
    "load_checkpoint",
    "save_checkpoint",
    "time_split",
]
