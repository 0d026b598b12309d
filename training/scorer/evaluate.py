"""Train the temporal scorer and the baselines on benign windows and compare them on a labeled test split.

Protocol (no test label is used for anything but the metrics):

1. Each device's windows are split by time into train / validation / test (default 60 / 20 / 20 %,
   :func:`edge.scorer.time_split`).
2. Models are fitted on sequences built from the *benign* (``label == 0``) train windows only.
3. Each model's :class:`SPOTThreshold` is fitted on its scores of the benign validation sequences.
4. Test sequences (built on the full timeline, so their history reaches back before the split; a
   sequence belongs to the part of its last window) are scored: precision / recall / F1 at the
   threshold, ROC-AUC and PR-AUC (average precision) from the raw scores.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edge.scorer.model import TemporalScorer
from edge.scorer.sequences import build_sequences, default_feature_names, time_split
from edge.scorer.threshold import SPOTThreshold
from training.scorer.baselines import IsolationForestScorer, KitsuneEnsemble, LSTMAutoencoder

log = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = ("lstm_attention", "kitsune", "lstm_ae", "iforest")


@dataclass
class EvalConfig:
    """Settings of :func:`evaluate_scorers`."""

    seq_len: int = 20
    """T, windows per sequence."""
    epochs: int = 15
    """Training passes of the neural models (temporal scorer, LSTM autoencoder, Kitsune ensemble)."""
    hidden_size: int = 32
    """Width of the temporal scorer and the LSTM autoencoder."""
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """Per-device time shares of train / validation / test."""
    q: float = 1e-3
    """Target false-positive rate of the SPOT thresholds."""
    level: float = 0.98
    """SPOT initial quantile."""
    max_train: int = 30000
    """At most this many benign train sequences (a seeded sample) to bound training time."""
    models: tuple[str, ...] = MODEL_NAMES
    """Which models to run."""
    seed: int = 0
    """Seed of every model and of the train-sequence sample."""


@dataclass
class ModelResult:
    """Test metrics of one model."""

    name: str
    precision: float
    recall: float
    f1: float
    roc_auc: float
    pr_auc: float
    threshold: float
    fpr: float
    fit_s: float
    score_ms_per_seq: float
    curves: dict[str, list[float]] = field(default_factory=dict, repr=False)


def make_model(name: str, cfg: EvalConfig):
    """A fresh, unfitted model by name (see :data:`MODEL_NAMES`)."""
    if name == "lstm_attention":
        return TemporalScorer(hidden_size=cfg.hidden_size, epochs=cfg.epochs, seed=cfg.seed)
    if name == "kitsune":
        return KitsuneEnsemble(epochs=cfg.epochs, seed=cfg.seed)
    if name == "lstm_ae":
        return LSTMAutoencoder(hidden_size=cfg.hidden_size, epochs=cfg.epochs, seed=cfg.seed)
    if name == "iforest":
        return IsolationForestScorer(seed=cfg.seed)
    raise ValueError(f"model={name!r} is invalid: expected one of {MODEL_NAMES}")


def _split_sequences(frame: pd.DataFrame, cfg: EvalConfig, names: Sequence[str]):
    frame = frame.reset_index(drop=True)
    parts = time_split(frame, cfg.fractions)
    part_of = np.empty(len(frame), dtype=np.int64)
    for i, p in enumerate(parts):
        part_of[p.index.to_numpy()] = i
    labels = frame["label"].to_numpy().astype(np.int64)
    benign_train = frame[(part_of == 0) & (labels == 0)]
    train = build_sequences(benign_train, cfg.seq_len, feature_names=names).X
    full = build_sequences(frame, cfg.seq_len, feature_names=names)
    where = part_of[full.rows]
    val_mask = (where == 1) & (full.y == 0)
    test_mask = where == 2
    return train, full.X[val_mask], full.X[test_mask], full.y[test_mask]


def evaluate_scorers(frame: pd.DataFrame, cfg: EvalConfig | None = None, *,
                     feature_names: Sequence[str] | None = None,
                     on_model: Callable[[str, str], None] | None = None) -> list[ModelResult]:
    """Fit every model on benign train windows, threshold on benign validation, measure on test.

    Parameters
    ----------
    frame : pandas.DataFrame
        Labeled window table (``label`` 0/1, the feature columns, ``device_id``, ``t_start``).
    cfg : EvalConfig, optional
    feature_names : sequence of str, optional
        Default :data:`edge.features.FEATURE_NAMES`.
    on_model : callable, optional
        Called as ``on_model(name, stage)`` with stage ``"fit"``/``"done"`` (progress display).

    Returns
    -------
    list of ModelResult

    Raises
    ------
    ValueError
        If ``label`` is missing, or the test split lacks either class, or there is no benign training data.
    """
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        precision_recall_fscore_support,
        roc_auc_score,
        roc_curve,
    )

    cfg = cfg or EvalConfig()
    if "label" not in frame.columns:
        raise ValueError("the window table has no 'label' column: expected labeled windows (0 benign, 1 attack)")
    names = list(feature_names) if feature_names is not None else default_feature_names(frame)
    train, val, test, y_test = _split_sequences(frame, cfg, names)
    log.info("sequences: %d benign train, %d benign validation, %d test (%d attack)", len(train), len(val),
             len(test), int(y_test.sum()))
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{len(train)} benign train and {len(val)} benign validation sequences: expected both > 0")
    if y_test.min() == y_test.max():
        raise ValueError(f"the test split holds only label {int(y_test[0])}: expected benign and attack windows")
    if len(train) > cfg.max_train:
        idx = np.sort(np.random.default_rng(cfg.seed).choice(len(train), cfg.max_train, replace=False))
        train = train[idx]
    results = []
    for name in cfg.models:
        if on_model:
            on_model(name, "fit")
        model = make_model(name, cfg)
        t0 = time.perf_counter()
        if name == "lstm_attention":
            model.fit(train, feature_names=names)
        else:
            model.fit(train)
        fit_s = time.perf_counter() - t0
        th = SPOTThreshold(q=cfg.q, level=cfg.level).fit(model.score_samples(val))
        t0 = time.perf_counter()
        s = model.score_samples(test)
        score_ms = 1000 * (time.perf_counter() - t0) / len(test)
        pred = th.predict(s)
        p, r, f1, _ = precision_recall_fscore_support(y_test, pred, average="binary", zero_division=0)
        fpr_c, tpr_c, _ = roc_curve(y_test, s)
        prec_c, rec_c, _ = precision_recall_curve(y_test, s)
        res = ModelResult(name=name, precision=float(p), recall=float(r), f1=float(f1),
                          roc_auc=float(roc_auc_score(y_test, s)), pr_auc=float(average_precision_score(y_test, s)),
                          threshold=float(th.threshold_), fpr=float(np.mean(pred[y_test == 0])), fit_s=fit_s,
                          score_ms_per_seq=score_ms,
                          curves={"fpr": fpr_c.tolist(), "tpr": tpr_c.tolist(), "precision": prec_c.tolist(),
                                  "recall": rec_c.tolist()})
        log.info("%s: P=%.3f R=%.3f F1=%.3f ROC-AUC=%.3f PR-AUC=%.3f", name, res.precision, res.recall, res.f1,
                 res.roc_auc, res.pr_auc)
        results.append(res)
        if on_model:
            on_model(name, "done")
    return results


def save_results(results: Sequence[ModelResult], out_dir: str | Path, *, meta: dict[str, Any] | None = None) -> list[Path]:
    """Write ``metrics.json``, ``roc.png`` and ``pr.png`` (matplotlib, Agg backend) under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in asdict(r).items() if k != "curves"} for r in results]
    (out / "metrics.json").write_text(json.dumps({"meta": meta or {}, "results": rows}, indent=1))
    paths = [out / "metrics.json"]
    for fname, xk, yk, xl, yl in (("roc.png", "fpr", "tpr", "false-positive rate", "true-positive rate"),
                                  ("pr.png", "recall", "precision", "recall", "precision")):
        fig, ax = plt.subplots(figsize=(5, 4.2), dpi=120)
        for r in results:
            auc = r.roc_auc if fname == "roc.png" else r.pr_auc
            ax.plot(r.curves[xk], r.curves[yk], label=f"{r.name} ({auc:.3f})", lw=1.4)
        if fname == "roc.png":
            ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title("ROC" if fname == "roc.png" else "precision–recall")
        ax.legend(fontsize=8, loc="lower right" if fname == "roc.png" else "lower left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / fname)
        plt.close(fig)
        paths.append(out / fname)
    return paths
