"""Per-window evaluation of exported defender policies (and of the temporal scorer alone) on labeled windows.

Every policy runs the runtime path (:func:`fog.detect.detect`): each site learns its baseline in a grace
period, then each slot is decided and the baseline learns from the windows that raised no alert. Windows
of the grace period are never decided and are left out of every metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fog.attacks import ATTACK_CLASSES, technique_class
from fog.policy import PolicyFileError, policy_dir  # noqa: F401  (policy_dir: re-exported for callers)


@dataclass
class EvalResult:
    """Per-window detection quality of one detector.

    Attributes
    ----------
    name : str
    precision, recall, f1, fpr, mcc : float
        Alert (level ≥ 2) against ``label``, on windows after the grace period (``sklearn.metrics``).
    windows, malicious : int
        Windows scored (grace period excluded) and how many of them are malicious.
    grace_windows : int
        Windows left out because they fell in their site's grace period.
    per_technique_recall : dict
        Technique ID → share of its malicious windows alerted.
    confusion : ndarray, shape (C, C)
        Rows: true class, columns: predicted class (benign when no alert); classes of :data:`ATTACK_CLASSES`.
    max_level : int
        Highest alert level on a scored window (0 when none alerted).
    """

    name: str
    precision: float
    recall: float
    f1: float
    fpr: float
    windows: int
    malicious: int
    mcc: float = 0.0
    grace_windows: int = 0
    per_technique_recall: dict = field(default_factory=dict)
    confusion: np.ndarray | None = None
    max_level: int = 0

    def to_dict(self) -> dict:
        """JSON-ready: ``name, precision, recall, f1, fpr, mcc, windows, malicious, grace_windows,
        per_technique, confusion, classes, max_level``; the five metrics are null when no window was scored
        (every window fell in a grace period), where they are undefined rather than 0."""
        m = {k: (getattr(self, k) if self.windows else None) for k in ("precision", "recall", "f1", "fpr", "mcc")}
        return {"name": self.name, **m, "windows": self.windows, "malicious": self.malicious,
                "grace_windows": self.grace_windows, "per_technique": dict(self.per_technique_recall),
                "confusion": None if self.confusion is None else self.confusion.tolist(),
                "classes": list(ATTACK_CLASSES), "max_level": self.max_level}


def window_metrics(y: np.ndarray, alert: np.ndarray) -> dict:
    """Precision, recall, F1, FPR and MCC of boolean alerts against boolean labels (``sklearn.metrics``;
    0 where undefined)."""
    from sklearn.metrics import confusion_matrix, f1_score, matthews_corrcoef, precision_score, recall_score

    y = np.asarray(y, dtype=bool)
    a = np.asarray(alert, dtype=bool)
    if len(y) == 0:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "fpr": 0.0, "mcc": 0.0, "tp": 0, "fp": 0, "fn": 0, "tn": 0}
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, a, labels=[False, True]).ravel())
    kw = {"zero_division": 0}
    return {"precision": float(precision_score(y, a, **kw)), "recall": float(recall_score(y, a, **kw)),
            "f1": float(f1_score(y, a, **kw)), "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "mcc": float(matthews_corrcoef(y, a)) if len(set(y)) > 1 or len(set(a)) > 1 else 0.0,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def score(name: str, frame: pd.DataFrame, alert: np.ndarray, cls: np.ndarray | None = None, *,
          scored: np.ndarray | None = None, level: np.ndarray | None = None) -> EvalResult:
    """Metrics of boolean ``alert`` (and predicted class indices ``cls``) against ``frame['label']``.

    Parameters
    ----------
    scored : ndarray of bool, optional
        Windows that count (default all); the others (grace period) are reported as ``grace_windows``.
    level : ndarray of int, optional
        Alert levels, for ``max_level``.
    """
    keep = np.ones(len(frame), dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    y = frame["label"].to_numpy().astype(bool)[keep]
    a = np.asarray(alert, dtype=bool)[keep]
    m = window_metrics(y, a)
    per_tech = {}
    tech = frame["technique_id"].fillna("").astype(str).to_numpy()[keep] if "technique_id" in frame.columns \
        else np.array([""] * int(keep.sum()))
    for t in sorted(set(tech[y])):
        per_tech[t] = float(a[y & (tech == t)].mean())
    conf = None
    if cls is not None:
        true_c = np.array([technique_class(t) if lab else 0 for t, lab in zip(tech, y)], dtype=np.int64)
        pred_c = np.where(a, np.asarray(cls)[keep], 0)
        conf = np.zeros((len(ATTACK_CLASSES), len(ATTACK_CLASSES)), dtype=np.int64)
        np.add.at(conf, (true_c, pred_c), 1)
    if not a.any():
        max_level = 0
    else:
        max_level = int(np.asarray(level)[keep][a].max()) if level is not None else 2
    return EvalResult(name, m["precision"], m["recall"], m["f1"], m["fpr"], len(y), int(y.sum()), mcc=m["mcc"],
                      grace_windows=int((~keep).sum()), per_technique_recall=per_tech, confusion=conf,
                      max_level=max_level)


def evaluate(policies: dict[str, str | Path], frame: pd.DataFrame, embeddings: np.ndarray, *,
             grace_s: float | None = None) -> list[EvalResult]:
    """Evaluate each exported policy, plus its temporal scorer alone when it has one.

    Parameters
    ----------
    policies : dict
        Display name → run or policy folder.
    frame : DataFrame
        Labeled windows (``label``, ``technique_id`` and the window columns).
    embeddings : ndarray, shape (len(frame), 384)
    grace_s : float, optional
        Grace period of every site (default the policy's, 60 s); its windows are not scored.

    Raises
    ------
    PolicyFileError
        For a missing or corrupt policy.
    """
    from fog.detect import detect

    frame = frame.reset_index(drop=True)
    results = []
    scorer_done = False
    for name, path in policies.items():
        d = policy_dir(path)
        from edge.observation import FusionPipeline

        pipe = FusionPipeline.load(d)
        res = detect(frame, embeddings, d, grace_s=grace_s, pipeline=pipe)
        scored = ~res["learning"].to_numpy()
        cls = np.array([ATTACK_CLASSES.index(c) for c in res["attack_class"]])
        results.append(score(name, frame, res["alert"].to_numpy(), cls, scored=scored, level=res["level"].to_numpy()))
        if pipe.scorer_ is not None and pipe.threshold_ is not None and not scorer_done:
            alert = np.nan_to_num(res["score"].to_numpy(), nan=0.0) >= pipe.alert_quantile()
            results.append(score("temporal scorer alone", frame, alert, scored=scored))
            scorer_done = True
    return results
