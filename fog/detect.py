"""Detection: Observations → the exported defender actor → alerts with evidence. No Ray.

Two users share the helpers of this module, so an alert looks the same whichever path made it:

* :func:`detect` decides every window of a whole capture or window file at once (``marlids fog detect``);
* the fog coordinator (:mod:`fog.coordinator`) decides each tick's streamed Observations and builds
  its alerts with :func:`feature_evidence`, :func:`attention_evidence` and :func:`make_alert`.

The alert dictionaries follow the Alert contract of DESIGN.md as the cloud API validates it
(``cloud/schemas.py``: ``AlertCreate`` and ``Evidence``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from edge.features import FEATURE_NAMES
from edge.observation import FusionPipeline, build_observations
from fog.attacks import ATTACK_CLASSES, CLASS_TECHNIQUE
from fog.env import ALERT_THRESHOLD
from fog.policy import DefenderActor

#: Top deviating features attached to an alert as evidence.
EVIDENCE_FEATURES = 5
#: Attention peaks (most attended windows of the scorer's sequence) attached to an alert.
ATTENTION_PEAKS = 3


def alert_id(site_id: str, device_id: str, t_start: float) -> str:
    """Deterministic alert id from the window key, so a retried post never duplicates an alert.

    The first 32 hex digits of SHA-256 over ``site_id ␟ device_id ␟ t_start`` (t_start in epoch
    seconds, rounded to the millisecond).
    """
    key = f"{site_id}\x1f{device_id}\x1f{t_start:.3f}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def policy_version_of(policy_dir: str | Path) -> str:
    """Version string of an exported policy: ``<run or folder name>@<first 12 hex of SHA-256(actor.pt)>``.

    Two exports with the same weights get the same version; retraining changes it.

    Raises
    ------
    FileNotFoundError
        If ``actor.pt`` is missing.
    """
    d = Path(policy_dir)
    digest = hashlib.sha256((d / "actor.pt").read_bytes()).hexdigest()[:12]
    name = d.resolve().name
    try:
        meta = json.loads((d / "actor.json").read_text()).get("meta") or {}
        name = str(meta.get("run") or name)
    except (OSError, json.JSONDecodeError):
        pass
    return f"{name[:100]}@{digest}"


def feature_evidence(x: np.ndarray, z_model: np.ndarray, baseline_mean: np.ndarray, baseline_std: np.ndarray, *,
                     names: tuple[str, ...] = FEATURE_NAMES, k: int = EVIDENCE_FEATURES) -> list[dict]:
    """The ``k`` statistics of one window that deviate most from the benign baseline.

    Parameters
    ----------
    x : ndarray, shape (F,)
        Raw window statistics (units in the names).
    z_model : ndarray, shape (F,)
        The standardised values the policy saw (log-compressed, :class:`edge.scorer._common.FeatureScaler`);
        they rank the features.
    baseline_mean, baseline_std : ndarray, shape (F,)
        Benign mean and standard deviation of each statistic in its own unit.
    names : tuple of str
        The F feature names.
    k : int
        Features kept.

    Returns
    -------
    list of dict
        ``{"name", "value", "baseline", "baseline_std", "z"}`` in decreasing ``|z_model|`` order, where
        ``z = (value - baseline) / baseline_std`` in raw units (``None`` when the benign std is 0), as the
        cloud's ``FeatureEvidence`` defines it.
    """
    x = np.asarray(x, dtype=np.float64)
    zm = np.asarray(z_model, dtype=np.float64)
    order = np.argsort(-np.abs(zm), kind="stable")[:k]
    out = []
    for j in order:
        mean, std = float(baseline_mean[j]), float(baseline_std[j])
        out.append({"name": names[j], "value": float(x[j]), "baseline": mean, "baseline_std": std,
                    "z": float((x[j] - mean) / std) if std > 0 else None})
    return out


def attention_evidence(attention: np.ndarray | None, attention_t: np.ndarray | None,
                       n_peaks: int = ATTENTION_PEAKS) -> tuple[list[dict], list[dict]]:
    """Attention peaks and the full series of one scored window.

    Parameters
    ----------
    attention : ndarray, shape (T,), optional
        Head-averaged attention over the device's last T windows, oldest first.
    attention_t : ndarray, shape (T,), optional
        ``t_start`` (epoch s) of those windows.
    n_peaks : int
        Peaks kept.

    Returns
    -------
    (peaks, series)
        Lists of ``{"t", "weight"}``; peaks in decreasing weight order. Both empty without attention.
        Padded positions (a device seen for fewer than T windows) repeat its first window and are
        merged into one point, their weights summed.
    """
    if attention is None or attention_t is None or len(attention) == 0:
        return [], []
    a = np.asarray(attention, dtype=np.float64)
    a = a / a.sum() if a.sum() > 0 else a
    merged: dict[float, float] = {}
    for t, w in zip(np.asarray(attention_t, dtype=np.float64), a):
        merged[float(t)] = merged.get(float(t), 0.0) + float(w)
    series = [{"t": t, "weight": min(1.0, max(0.0, w))} for t, w in merged.items()]
    peaks = sorted(series, key=lambda p: -p["weight"])[:n_peaks]
    return peaks, series


def make_alert(*, site_id: str, device_id: str, t_start: float, t_end: float, level: int, attack_class: int,
               confidence: float, evidence: dict, policy_version: str) -> dict:
    """One decision as an Alert (DESIGN.md › Alert), whether or not it reaches the alert threshold.

    Parameters
    ----------
    level : int
        Alert level 0–4 chosen by the actor.
    attack_class : int
        Index in :data:`fog.attacks.ATTACK_CLASSES`; reported as ``"benign"`` below the threshold.
    confidence : float
        Probability of the chosen level (0–1).
    evidence : dict
        ``top_features``, ``attention_peaks``, ``attention``, ``protocol_summary``.

    Returns
    -------
    dict
        ``alert_id, ts (window end, epoch s), site_id, device_id, level, attack_class, confidence,
        technique_ids, evidence, policy_version`` — the body of ``POST /api/v1/alerts``.
    """
    alerting = int(level) >= ALERT_THRESHOLD
    cls = ATTACK_CLASSES[int(attack_class)] if alerting else "benign"
    return {"alert_id": alert_id(site_id, device_id, float(t_start)), "ts": float(t_end), "site_id": site_id,
            "device_id": device_id, "level": int(level), "attack_class": cls,
            "confidence": float(min(1.0, max(0.0, confidence))),
            "technique_ids": [CLASS_TECHNIQUE[cls]] if cls in CLASS_TECHNIQUE else [],
            "evidence": evidence, "policy_version": policy_version}


def sequence_times(frame: pd.DataFrame, seq_len: int) -> np.ndarray:
    """``t_start`` of the T windows in each window's scorer sequence, ``(len(frame), T)``, oldest first.

    Mirrors :func:`edge.scorer.sequences.build_sequences` (``pad="edge"``): a device's first windows
    repeat its first window's time.
    """
    out = np.zeros((len(frame), seq_len), dtype=np.float64)
    df = frame.reset_index(drop=True)
    site = df["site_id"].astype(str) if "site_id" in df.columns else pd.Series(["site"] * len(df))
    for idx in df.groupby([site, df["device_id"].astype(str)], sort=False).groups.values():
        idx = np.asarray(idx)
        order = idx[np.argsort(df.loc[idx, "t_start"].to_numpy(), kind="stable")]
        t = df.loc[order, "t_start"].to_numpy(np.float64)
        padded = np.concatenate([np.repeat(t[:1], seq_len - 1), t])
        for i, row in enumerate(order):
            out[row] = padded[i:i + seq_len]
    return out


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
    policy_version : str, optional
        Reported version; default :func:`policy_version_of` of ``policy_dir``.

    Returns
    -------
    DataFrame
        The Alert fields of :func:`make_alert` (``alert_id, ts, site_id, device_id, level (0–4),
        attack_class, confidence (0–1), technique_ids, evidence, policy_version``), ``alert`` (bool:
        level ≥ :data:`fog.env.ALERT_THRESHOLD`) and the frame's ``label``/``technique_id``/``attack``
        when present.

    Raises
    ------
    fog.policy.PolicyFileError, ValueError
        For a missing or mismatched policy or fusion pipeline.
    """
    frame = frame.reset_index(drop=True)
    pipe = FusionPipeline.load(policy_dir)
    actor = DefenderActor.load(policy_dir)
    x = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    z = pipe.scaler_.transform(x)
    scores, att = pipe.scores(frame)
    obs = build_observations(z, embeddings, scores, att)
    level, cls, conf = actor.decide(obs)
    att_mean = att.mean(axis=1) if att is not None and att.ndim == 3 else att
    att_t = sequence_times(frame, att_mean.shape[1]) if att_mean is not None else None
    version = policy_version or policy_version_of(policy_dir)
    base_mean, base_std = pipe.scaler_.raw_mean_, pipe.scaler_.raw_std_
    rows = []
    for i in range(len(frame)):
        w = frame.iloc[i]
        scored = att_mean is not None and not np.isnan(scores[i])
        peaks, series = attention_evidence(att_mean[i] if scored else None, att_t[i] if scored else None)
        evidence = {"top_features": feature_evidence(x[i], z[i], base_mean, base_std),
                    "attention_peaks": peaks, "attention": series, "protocol_summary": str(w["proto_text"])}
        row = make_alert(site_id=str(w["site_id"]), device_id=str(w["device_id"]), t_start=float(w["t_start"]),
                         t_end=float(w["t_end"]), level=int(level[i]), attack_class=int(cls[i]),
                         confidence=float(conf[i]), evidence=evidence, policy_version=version)
        row["alert"] = bool(level[i] >= ALERT_THRESHOLD)
        for extra in ("label", "technique_id", "attack"):
            if extra in frame.columns:
                row[extra] = w[extra]
        rows.append(row)
    return pd.DataFrame(rows)
