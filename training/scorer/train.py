"""Train a :class:`TemporalScorer` and its threshold from a window table; the ``train-scorer`` command.

The scorer reads windows standardised by their **site baseline** (:mod:`edge.baseline`), as every detection
path feeds it (:class:`edge.online.SiteFusion`): each ``(site, capture)`` of the table learns its own
baseline in a grace period (its windows standardised retrospectively), then updates it from its benign
windows. Only benign windows (``label == 0`` when a ``label`` column exists) train the network. Each
device's windows are split by time: the first ``1 - val_fraction`` train the network, the rest give benign
validation scores, and the :class:`SPOTThreshold` is fitted on those raw scores (``score_units: "raw"``
in the checkpoint), so the threshold is fitted on windows the network never saw, in the units the runtime
applies it to. The scores need no second, per-site standardisation: the scorer's input already is one, and
standardising the scores by the lower quantiles of each site's grace-period scores (what this module did
before) made the threshold unreachable on new networks, because grace windows are standardised by a
baseline fitted on themselves and score lower than any later window (see
:meth:`edge.observation.FusionPipeline.calibrate_raw`). ``score_min_scale`` (a quarter of the validation
scores' lower spread) still floors each site's :class:`edge.baseline.ScoreBaseline`, which finds attack
episodes inside a grace period (:mod:`edge.online`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edge.scorer.model import TemporalScorer
from edge.scorer.sequences import build_sequences, default_feature_names, time_split
from edge.scorer.threshold import SPOTThreshold

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Every knob of ``marlids edge train-scorer``."""

    seq_len: int = 20
    """T, windows per sequence (20 × 5 s windows = 100 s of a device's history)."""
    epochs: int = 20
    """Passes over the benign training sequences."""
    hidden_size: int = 32
    """LSTM / attention width."""
    n_heads: int = 4
    """Temporal attention heads."""
    dropout: float = 0.1
    """Dropout (MC-dropout uncertainty)."""
    batch_size: int = 128
    """Sequences per optimiser step."""
    lr: float = 2e-3
    """Adam learning rate."""
    val_fraction: float = 0.2
    """Last share of each device's benign windows held out to fit the threshold."""
    q: float = 1e-3
    """Target false-positive rate of the threshold."""
    level: float = 0.98
    """SPOT initial quantile."""
    seed: int = 0
    """Seed of initialisation and shuffling."""
    grace_s: float = 60.0
    """Grace period of each site's baseline, seconds."""
    scale_floor_factor: float = 0.5
    """Scale floor of the site baselines as a share of the training windows' spread (FusionPipeline)."""


def train_from_frame(frame: pd.DataFrame, cfg: TrainConfig | None = None, *,
                     feature_names: Sequence[str] | None = None,
                     progress: Callable[[int, float], None] | None = None
                     ) -> tuple[TemporalScorer, SPOTThreshold, dict[str, Any]]:
    """Fit scorer and threshold on the benign windows of ``frame``.

    Returns
    -------
    scorer : TemporalScorer
    threshold : SPOTThreshold
    summary : dict
        Config, window and sequence counts, final loss (JSON-ready; stored in the checkpoint).

    Raises
    ------
    ValueError
        If there are no benign windows, or too few to build train and validation sequences.
    """
    cfg = cfg or TrainConfig()
    import dataclasses

    from edge.baseline import ScoreBaseline
    from edge.embed import EMBED_DIM
    from edge.observation import SCORER_INPUT, FusionPipeline
    from edge.online import fuse_frame

    names = list(feature_names) if feature_names is not None else default_feature_names(frame)
    n_all = len(frame)
    frame = frame.reset_index(drop=True)
    has_benign = bool((frame["label"] == 0).any()) if "label" in frame.columns else len(frame) > 0
    if not has_benign:
        raise ValueError("no benign windows (label == 0) to train on")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"val_fraction={cfg.val_fraction!r} is invalid: expected a number in (0, 1)")
    # 1. site-standardised statistics of every window (grace periods retrospectively, benign updates)
    pipe = FusionPipeline(None, baseline={"grace_s": float(cfg.grace_s)},
                          scale_floor_factor=cfg.scale_floor_factor).fit(frame)
    fused = fuse_frame(pipe, frame, np.zeros((len(frame), EMBED_DIM), np.float32),
                       learn_from="labels" if "label" in frame.columns else "none", retrospective=True)
    zf = frame.copy()
    zf[names] = np.clip(fused.z[:, [list(pipe_names()).index(n) for n in names]], -10, 10)
    if "label" in zf.columns:
        zf = zf[zf["label"] == 0]
    zf = zf.reset_index(drop=True)
    if len(zf) == 0:
        raise ValueError("no benign windows (label == 0) to train on")
    train_df, val_df = time_split(zf, (1.0 - cfg.val_fraction, cfg.val_fraction))
    train = build_sequences(train_df, cfg.seq_len, feature_names=names).X
    # validation sequences keep their history from the train part; a sequence belongs to its last window
    full = build_sequences(zf, cfg.seq_len, feature_names=names)
    in_val = np.isin(full.rows, np.flatnonzero(zf.index.isin(val_df.index)))
    if len(train) < 2 or in_val.sum() < 2:
        raise ValueError(f"{len(train)} train and {int(in_val.sum())} validation sequences: expected at least 2 of "
                         "each (give more benign windows)")
    scorer = TemporalScorer(hidden_size=cfg.hidden_size, n_heads=cfg.n_heads, dropout=cfg.dropout,
                            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, log_scale=False, seed=cfg.seed)
    scorer.fit(train, feature_names=names, progress=progress)
    # 2. scores of every benign window; the threshold from the validation windows' raw scores
    raw = np.full(len(zf), np.nan)
    raw[full.rows] = scorer.score_samples(full.X)
    val_raw = raw[full.rows[in_val]]
    q05, q25 = np.quantile(val_raw, ScoreBaseline.QUANTILES)
    score_min_scale = 0.25 * max(float(q25 - q05) / ScoreBaseline.SPREAD_TO_SIGMA, 1e-6)
    threshold = SPOTThreshold(q=cfg.q, level=cfg.level).fit(val_raw[np.isfinite(val_raw)])
    summary = {"config": dataclasses.asdict(cfg), "windows_in": n_all, "benign_windows": len(zf),
               "train_sequences": len(train), "val_sequences": int(in_val.sum()),
               "final_loss": scorer.loss_curve_[-1] if scorer.loss_curve_ else None,
               "threshold": threshold.threshold_, "threshold_method": threshold.method_,
               "val_score_median": float(np.median(val_raw)), "input": SCORER_INPUT,
               "score_min_scale": score_min_scale, "score_units": "raw", "baseline": pipe.baseline,
               "scale_floor_factor": cfg.scale_floor_factor, "scale_floor": pipe.scale_floor_.tolist()}
    log.info("trained on %d sequences; threshold %.4g (%s) from %d validation sequences", len(train),
             threshold.threshold_, threshold.method_, int(in_val.sum()))
    return scorer, threshold, summary


def pipe_names() -> tuple[str, ...]:
    """The statistics in the order of the site baseline's columns (:data:`edge.features.FEATURE_NAMES`)."""
    from edge.features import FEATURE_NAMES

    return FEATURE_NAMES
