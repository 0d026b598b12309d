"""Scorer checkpoints: a directory with the weights and one JSON file describing everything else.

Layout of ``CKPT_DIR``::

    weights.pt     torch state_dict of the TemporalAttentionNet (loaded with ``weights_only=True``)
    config.json    format version, scorer parameters, seq_len, feature names, scaler, residual variances,
                   fitted threshold, training summary

Any problem reading it (missing directory or file, bad JSON, missing keys, weights that do not fit the
config) raises :class:`CheckpointError` with a one-line message naming the path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from edge.scorer._common import CheckpointError, FeatureScaler
from edge.scorer.model import TemporalScorer
from edge.scorer.threshold import SPOTThreshold

log = logging.getLogger(__name__)

FORMAT = "marlids.edge.scorer/1"
WEIGHTS = "weights.pt"
CONFIG = "config.json"


def save_checkpoint(directory: str | Path, scorer: TemporalScorer, threshold: SPOTThreshold | None = None,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``scorer`` (and its fitted ``threshold``) to ``directory`` (created if needed).

    Parameters
    ----------
    directory : str or Path
    scorer : TemporalScorer
        Fitted scorer.
    threshold : SPOTThreshold, optional
        Threshold fitted on benign validation scores of this scorer.
    extra : dict, optional
        JSON-ready training summary stored under ``"training"``.

    Returns
    -------
    Path
        The directory.
    """
    import torch

    scorer._check_fitted()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(scorer.net_.state_dict(), d / WEIGHTS)
    cfg = {
        "format": FORMAT,
        "params": scorer.get_params(),
        "seq_len": scorer.seq_len_,
        "n_features": scorer.n_features_in_,
        "feature_names": list(scorer.feature_names_in_),
        "scaler": scorer.scaler_.to_dict(),
        "resid_var": scorer.resid_var_.tolist(),
        "loss_curve": list(scorer.loss_curve_),
        "threshold": threshold.to_dict() if threshold is not None else None,
        "training": extra or {},
    }
    tmp = d / (CONFIG + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=1))
    tmp.replace(d / CONFIG)
    log.info("saved scorer checkpoint to %s", d)
    return d


def load_checkpoint(directory: str | Path) -> tuple[TemporalScorer, SPOTThreshold | None, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    scorer : TemporalScorer
        Fitted, in eval mode.
    threshold : SPOTThreshold or None
    config : dict
        The parsed ``config.json``.

    Raises
    ------
    CheckpointError
        If the directory or a file is missing, or any part is unreadable or inconsistent.
    """
    import torch

    d = Path(directory)
    if not d.is_dir():
        raise CheckpointError(f"scorer checkpoint {str(d)!r} not found: expected a directory with "
                              f"{WEIGHTS} and {CONFIG}")
    for name in (CONFIG, WEIGHTS):
        if not (d / name).is_file():
            raise CheckpointError(f"scorer checkpoint {str(d)!r} is incomplete: {name} is missing")
    try:
        cfg = json.loads((d / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"scorer checkpoint {str(d / CONFIG)!r} is corrupt: {exc}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        got = cfg.get("format") if isinstance(cfg, dict) else type(cfg).__name__
        raise CheckpointError(f"scorer checkpoint {str(d / CONFIG)!r} has format {got!r}: expected {FORMAT!r}")
    try:
        scorer = TemporalScorer(**cfg["params"])
        scorer.seq_len_ = int(cfg["seq_len"])
        scorer.n_features_in_ = int(cfg["n_features"])
        scorer.feature_names_in_ = list(cfg["feature_names"])
        scorer.scaler_ = FeatureScaler.from_dict(cfg["scaler"])
        scorer.resid_var_ = np.asarray(cfg["resid_var"], dtype=np.float64)
        scorer.loss_curve_ = list(cfg.get("loss_curve", []))
        threshold = SPOTThreshold.from_dict(cfg["threshold"]) if cfg.get("threshold") else None
        n = scorer.n_features_in_
        if not (len(scorer.feature_names_in_) == n == scorer.scaler_.mean_.size == scorer.resid_var_.size):
            raise ValueError(f"feature list, scaler and residual variances disagree with n_features={n}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"scorer checkpoint {str(d / CONFIG)!r} is invalid: "
                              f"{type(exc).__name__}: {exc}") from None
    try:
        state = torch.load(d / WEIGHTS, map_location="cpu", weights_only=True)
        net = scorer._build(scorer.n_features_in_, scorer.seq_len_)
        net.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file: pickle, zip, runtime errors
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"scorer checkpoint {str(d / WEIGHTS)!r} is corrupt or does not match "
                              f"{CONFIG}: {type(exc).__name__}: {msg[:200]}") from None
    scorer.net_ = net.eval()
    return scorer, threshold, cfg
