"""Evidence for a scored sequence: where the attention looked and which features deviate.

Used by the observation builder (attention summary) and by the alert's ``evidence`` (top deviating
features with their benign baseline, attention peaks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge.scorer._common import check_positive_int, check_sequences
from edge.scorer.model import TemporalScorer


def explain(scorer: TemporalScorer, X: Any, *, top_windows: int = 3, top_features: int = 5,
            attention: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Top-k attended windows and most deviating features of each sequence's last window.

    Parameters
    ----------
    scorer : TemporalScorer
        Fitted scorer (its scaler holds the benign baseline).
    X : array-like of shape (batch, T, F)
        Raw sequences that were scored.
    top_windows : int, default 3
        Windows to report per sequence, by attention weight averaged over heads.
    top_features : int, default 5
        Features to report per sequence, by ``|z|``.
    attention : ndarray of shape (batch, heads, T), optional
        Attention already computed (e.g. by onnxruntime); computed with ``scorer`` when omitted.

    Returns
    -------
    list of dict
        One dict per sequence::

            {"attention": [{"index": t, "weight": w}, ...],   # t in 0..T-1, T-1 = the scored window
             "features": [{"name": str, "value": float, "baseline_mean": float, "z": float}, ...]}

        ``value`` and ``baseline_mean`` are in the feature's own unit (mean over benign training windows);
        ``z`` is the standardised deviation in the scorer's signed-log1p space
        (``(log1p(value) - mean) / std`` over benign windows), robust to the heavy tails of counts.
    """
    top_windows = check_positive_int("top_windows", top_windows)
    top_features = check_positive_int("top_features", top_features)
    scorer._check_fitted()
    X = check_sequences(X, n_features=scorer.n_features_in_)
    if attention is None:
        attention = scorer.score_with_attention(X)[1]
    attention = np.asarray(attention)
    if attention.shape[0] != X.shape[0] or attention.shape[-1] != X.shape[1]:
        raise ValueError(f"attention has shape {attention.shape}: expected (batch={X.shape[0]}, heads, "
                         f"T={X.shape[1]})")
    mean_attn = attention.mean(axis=1)                         # (batch, T)
    last = X[:, -1, :]
    z = scorer.scaler_.transform(last)                         # (batch, F)
    kw = min(top_windows, X.shape[1])
    kf = min(top_features, X.shape[2])
    names = scorer.feature_names_in_
    base = scorer.scaler_.raw_mean_
    out = []
    for i in range(X.shape[0]):
        w_idx = np.argsort(-mean_attn[i], kind="stable")[:kw]
        f_idx = np.argsort(-np.abs(z[i]), kind="stable")[:kf]
        out.append({
            "attention": [{"index": int(t), "weight": float(mean_attn[i, t])} for t in w_idx],
            "features": [{"name": names[j], "value": float(last[i, j]), "baseline_mean": float(base[j]),
                          "z": float(z[i, j])} for j in f_idx],
        })
    return out


#: Column names of :func:`attention_summary`.
ATTENTION_SUMMARY_NAMES: tuple[str, ...] = ("attn_peak_position", "attn_peak_weight", "attn_entropy")


def attention_summary(attention: Any) -> np.ndarray:
    """Fixed-size summary of attention weights for the Observation vector.

    Parameters
    ----------
    attention : array-like of shape (batch, heads, T)
        Weights from :meth:`TemporalScorer.score_with_attention` (each row sums to 1).

    Returns
    -------
    ndarray of shape (batch, 3), float32
        Columns :data:`ATTENTION_SUMMARY_NAMES`, all in [0, 1]: position of the head-averaged peak
        (``t / (T - 1)``, 1 = the current window), its weight, and the Shannon entropy of the head-averaged
        weights divided by ``log(T)`` (1 = uniform over the sequence, 0 = one window).
    """
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim != 3 or a.shape[-1] < 1:
        raise ValueError(f"attention has shape {a.shape}: expected (batch, heads, T)")
    m = a.mean(axis=1)
    T = m.shape[1]
    peak = m.argmax(axis=1)
    ent = -(m * np.log(np.clip(m, 1e-12, None))).sum(axis=1) / (np.log(T) if T > 1 else 1.0)
    pos = peak / (T - 1) if T > 1 else np.ones_like(peak, dtype=np.float64)
    return np.stack([pos, m.max(axis=1), np.clip(ent, 0.0, 1.0)], axis=1).astype(np.float32)
