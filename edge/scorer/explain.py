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


