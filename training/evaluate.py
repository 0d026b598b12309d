"""Per-window evaluation of exported defender policies (and of the temporal scorer alone) on labeled windows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edge.observation import FusionPipeline
from fog.attacks import ATTACK_CLASSES, technique_class
from fog.env import ALERT_THRESHOLD
from fog.policy import DefenderActor, PolicyFileError


@dataclass
class EvalResult:
    """Per-window detection quality of one detector.

    Attributes
    ----------
    name : str
    precision, recall, f1, fpr : float
        Alert (level ≥ 2) against ``label``.
    per_technique_recall : dict
        Technique ID → share of its malicious windows alerted.
    confusion : ndarray, shape (C, C)
        Rows: true class, columns: predicted class (benign when no alert); classes of :data:`ATTACK_CLASSES`.
    """

    name: str
    precision: float
    recall: float
    f1: float
    fpr: float
    windows: int
    malicious: int
    per_technique_recall: dict = field(default_factory=dict)
    confusion: np.ndarray | None = None


def policy_dir(path: str | Path) -> Path:
    """Accept a run folder (``…/mappo__0__t``) or its ``policy`` folder.

    Raises
    ------
    PolicyFileError
        If neither holds an exported policy.
    """
    p = Path(path)
    for cand in (p, p / "policy"):
        if (cand / "actor.json").is_file():
            return cand
    raise PolicyFileError(f"{p}: no exported defender policy (expected actor.json here or in {p / 'policy'})")


def score(name: str, frame: pd.DataFrame, alert: np.ndarray, cls: np.ndarray | None = None) -> EvalResult:
    """Metrics of boolean ``alert`` (and predicted class indices ``cls``) against ``frame['label']``."""
    y = frame["label"].to_numpy().astype(bool)
    a = np.asarray(alert, dtype=bool)
    tp, fp = int((a & y).sum()), int((a & ~y).sum())
    fn, tn = int((~a & y).sum()), int((~a & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_tech = {}
    tech = frame["technique_id"].fillna("").astype(str).to_numpy()
    for t in sorted(set(tech[y])):
        m = y & (tech == t)
        per_tech[t] = float(a[m].mean())
    conf = None
    if cls is not None:
        true_c = np.array([technique_class(t) if lab else 0 for t, lab in zip(tech, y)])
        pred_c = np.where(a, np.asarray(cls), 0)
        conf = np.zeros((len(ATTACK_CLASSES), len(ATTACK_CLASSES)), dtype=np.int64)
        np.add.at(conf, (true_c, pred_c), 1)
    return EvalResult(name, precision, recall, f1, fp / (fp + tn) if fp + tn else 0.0, len(y), int(y.sum()),
                      per_tech, conf)


def evaluate(policies: dict[str, str | Path], frame: pd.DataFrame, embeddings: np.ndarray) -> list[EvalResult]:
    """Evaluate each exported policy, plus its temporal scorer alone when it has one.

    Parameters
    ----------
    policies : dict
        Display name → run or policy folder.
    frame : DataFrame
        Labeled windows (``label``, ``technique_id`` and the window columns).
    embeddings : ndarray, shape (len(frame), 384)

    Raises
    ------
    PolicyFileError
        For a missing or corrupt policy.
    """
    frame = frame.reset_index(drop=True)
    results = []
    scorer_done = False
    for name, path in policies.items():
        d = policy_dir(path)
        pipe = FusionPipeline.load(d)
        actor = DefenderActor.load(d)
        obs = pipe.transform(frame, embeddings)
        level, cls, _ = actor.decide(obs)
        results.append(score(name, frame, level >= ALERT_THRESHOLD, cls))
        if pipe.scorer_ is not None and pipe.threshold_ is not None and not scorer_done:
            cal, _ = pipe.scores(frame)
            alert = np.nan_to_num(cal, nan=0.0) >= 1.0 - float(pipe.threshold_.q)
            results.append(score("temporal scorer alone", frame, alert))
            scorer_done = True
    return results
