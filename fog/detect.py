"""Offline detection: windows → Observations → the exported defender actor → alerts. No Ray.

The fog coordinator applies the same steps per tick; this module applies them to a whole capture or
window file, which is what ``marlids fog detect`` and the demo do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from edge.features import FEATURE_NAMES
from edge.observation import FusionPipeline
from fog.attacks import ATTACK_CLASSES, CLASS_TECHNIQUE
from fog.env import ALERT_THRESHOLD
from fog.policy import DefenderActor

#: Top deviating features attached to an alert as evidence.
EVIDENCE_FEATURES = 5


def alert_id(site_id: str, device_id: str, t_start: float) -> str:
    """Deterministic alert id from the window key, so a retried post never duplicates an alert."""
    key = f"{site_id}\x1f{device_id}\x1f{t_start:.3f}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def detect(frame: pd.DataFrame, embeddings: np.ndarray, policy_dir: str | Path, *,
           policy_version: str | None = None) -> pd.DataFrame:
    """Decide every window of ``frame``; return one row per window with the decision and evidence.

    Parameters
    ----------
    frame : DataFrame
        Windows (the Window contract; ``label``/``technique_id`` are kept when present, never used).
    embeddings : ndarray, shape (len(frame), 384)
    policy_dir : str or Path
        Exported policy (``actor.json``, ``actor.pt``, ``fusion.json``).

    Returns
    -------
    DataFrame
        ``alert_id, ts, site_id, device_id, level (0–4), attack_class, confidence (0–1), alert (bool),
        technique_ids, evidence`` (dict: top deviating features with value and benign baseline, protocol summary),
        plus the frame's ``label``/``technique_id`` when present.

    Raises
    ------
    fog.policy.PolicyFileError, ValueError
        For a missing or mismatched policy or fusion pipeline.
    """
    frame = frame.reset_index(drop=True)
    pipe = FusionPipeline.load(policy_dir)
    actor = DefenderActor.load(policy_dir)
    obs = pipe.transform(frame, embeddings)
    level, cls, conf = actor.decide(obs)
    x = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    z = pipe.scaler_.transform(x)
    top = np.argsort(-np.abs(z), axis=1)[:, :EVIDENCE_FEATURES]
    version = policy_version or Path(policy_dir).resolve().name
    rows = []
    for i in range(len(frame)):
        w = frame.iloc[i]
        evidence = {
            "top_features": [{"name": FEATURE_NAMES[j], "value": float(x[i, j]),
                              "baseline_mean": float(pipe.scaler_.raw_mean_[j]), "z": float(z[i, j])}
                             for j in top[i]],
            "protocol_summary": str(w["proto_text"]),
        }
        row = {"alert_id": alert_id(str(w["site_id"]), str(w["device_id"]), float(w["t_start"])),
               "ts": float(w["t_end"]), "site_id": str(w["site_id"]), "device_id": str(w["device_id"]),
               "level": int(level[i]), "attack_class": ATTACK_CLASSES[int(cls[i])] if level[i] >= ALERT_THRESHOLD
               else "benign", "confidence": float(conf[i]), "alert": bool(level[i] >= ALERT_THRESHOLD),
               "evidence": evidence, "policy_version": version}
        row["technique_ids"] = [CLASS_TECHNIQUE[row["attack_class"]]] if row["attack_class"] in CLASS_TECHNIQUE else []
        for extra in ("label", "technique_id", "attack"):
            if extra in frame.columns:
                row[extra] = w[extra]
        rows.append(row)
    return pd.DataFrame(rows)
