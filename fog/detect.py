"""Detection over a whole window table: site baselines → Observations → the defender actor → alerts. No Ray.

:func:`detect` is the runtime path applied offline (``marlids fog detect``, ``marlids train eval``,
``marlids demo``'s labels): each site's windows are replayed slot by slot through
:func:`edge.online.fuse_frame` — the same :class:`edge.online.SiteFusion` the edge daemon runs — so each
site first learns its baseline in a grace period (its windows are marked ``learning`` and never
decided), then every slot is decided by the shared defender actor with the rule of :func:`fog.alerts.decide`
and the baseline learns from the windows that raised no alert, as the fog's acknowledgements tell a live
edge. Alerts are built by :func:`fog.alerts.make_alert` with :func:`fog.alerts.window_evidence`, as the fog
coordinator builds them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from edge.features import FEATURE_NAMES
from edge.observation import FusionPipeline
from edge.online import fuse_frame
from fog.alerts import make_alert, policy_version_of, window_evidence
from fog.policy import DefenderActor

__all__ = ["detect", "policy_version_of"]


def detect(frame: pd.DataFrame, embeddings: np.ndarray, policy_dir: str | Path, *, grace_s: float | None = None,
           policy_version: str | None = None, pipeline: FusionPipeline | None = None,
           actor: DefenderActor | None = None) -> pd.DataFrame:
    """Decide every window of ``frame`` after its site's grace period; one row per window.

    Parameters
    ----------
    frame : DataFrame
        Windows (the Window contract; ``label``/``technique_id``/``attack`` are kept when present, never
        used). Each ``(site_id, capture)`` learns its own baseline.
    embeddings : ndarray, shape (len(frame), 384)
    policy_dir : str or Path
        Exported policy (``actor.json``, ``actor.pt``, ``fusion.json``).
    grace_s : float, optional
        Grace period in seconds (default the policy's, 60 s).
    policy_version : str, optional
        Reported version; default :func:`fog.alerts.policy_version_of` of ``policy_dir``.
    pipeline, actor : optional
        Already loaded from ``policy_dir`` (saves loading them twice).

    Returns
    -------
    DataFrame
        The Alert fields of :func:`fog.alerts.make_alert` (``alert_id, ts, site_id, device_id, level (0–4),
        attack_class, confidence (0–1), technique_ids, evidence, policy_version``), ``alert`` (bool),
        ``learning`` (bool: the window fell in its site's grace period and was not decided; level 0),
        ``score`` (the temporal scorer's calibrated score, NaN when unavailable) and the frame's
        ``label``/``technique_id``/``attack`` when present.

    Raises
    ------
    fog.policy.PolicyFileError, ValueError
        For a missing or mismatched policy or fusion pipeline.
    """
    frame = frame.reset_index(drop=True)
    pipe = pipeline or FusionPipeline.load(policy_dir)
    actor = actor or DefenderActor.load(policy_dir)
    fused = fuse_frame(pipe, frame, embeddings, grace_s=grace_s, decide=actor.decide_all, learn_from="decisions")
    dec = fused.decisions
    version = policy_version or policy_version_of(policy_dir)
    x = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    site = frame["site_id"].astype(str).to_numpy()
    dev = frame["device_id"].astype(str).to_numpy()
    t0, t1 = frame["t_start"].to_numpy(np.float64), frame["t_end"].to_numpy(np.float64)
    text = frame["proto_text"].astype(str).to_numpy()
    top_peers = frame["top_peers"].to_numpy(object) if "top_peers" in frame.columns else None
    rows = []
    for i in range(len(frame)):
        scored = fused.attention is not None and not fused.learning[i] and np.isfinite(fused.scores[i])
        evidence = window_evidence(x=x[i], z=fused.z[i], baseline=fused.baseline[i], spread=fused.spread[i],
                                   attention=fused.attention[i] if scored else None,
                                   attention_t=fused.attention_t[i] if scored else None, proto_text=text[i],
                                   scope=fused.scope[i], site_score=fused.site_scores[i],
                                   peers=None if top_peers is None else top_peers[i])
        row = make_alert(site_id=site[i], device_id=dev[i], t_start=float(t0[i]), t_end=float(t1[i]),
                         level=int(dec["level"][i]), attack_class=int(dec["attack_class"][i]),
                         confidence=float(dec["confidence"][i]), evidence=evidence, policy_version=version)
        row["alert"] = bool(dec["alert"][i])
        row["learning"] = bool(fused.learning[i])
        row["score"] = float(fused.scores[i])
        row["baseline_scope"] = fused.scope[i]
        rows.append(row)
    out = pd.DataFrame(rows)
    for extra in ("label", "technique_id", "attack", "capture"):
        if extra in frame.columns:
            out[extra] = frame[extra].to_numpy()
    return out
