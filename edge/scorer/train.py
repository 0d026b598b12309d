"""Train a :class:`TemporalScorer` and its threshold from a window table; the ``train-scorer`` command.

Only benign windows (``label == 0`` when a ``label`` column exists) are used. Each device's windows are
split by time: the first ``1 - val_fraction`` train the network, the rest give benign validation
scores for the :class:`SPOTThreshold`, so the threshold is fitted on windows the network never saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
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
    names = list(feature_names) if feature_names is not None else default_feature_names(frame)
    n_all = len(frame)
    if "label" in frame.columns:
        frame = frame[frame["label"] == 0]
    if len(frame) == 0:
        raise ValueError("no benign windows (label == 0) to train on")
    frame = frame.reset_index(drop=True)
    if not 0.0 < cfg.val_fraction < 1.0:
        raise ValueError(f"val_fraction={cfg.val_fraction!r} is invalid: expected a number in (0, 1)")
    train_df, val_df = time_split(frame, (1.0 - cfg.val_fraction, cfg.val_fraction))
    train = build_sequences(train_df, cfg.seq_len, feature_names=names).X
    # validation sequences keep their history from the train part; a sequence belongs to its last window
    full = build_sequences(frame, cfg.seq_len, feature_names=names)
    in_val = np.isin(full.rows, np.flatnonzero(frame.index.isin(val_df.index)))
    val = full.X[in_val]
    if len(train) < 2 or len(val) < 2:
        raise ValueError(f"{len(train)} train and {len(val)} validation sequences: expected at least 2 of each "
                         "(give more benign windows)")
    scorer = TemporalScorer(hidden_size=cfg.hidden_size, n_heads=cfg.n_heads, dropout=cfg.dropout,
                            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
    scorer.fit(train, feature_names=names, progress=progress)
    val_scores = scorer.score_samples(val)
    threshold = SPOTThreshold(q=cfg.q, level=cfg.level).fit(val_scores)
    summary = {"config": asdict(cfg), "windows_in": n_all, "benign_windows": len(frame),
               "train_sequences": len(train), "val_sequences": len(val),
               "final_loss": scorer.loss_curve_[-1] if scorer.loss_curve_ else None,
               "threshold": threshold.threshold_, "threshold_method": threshold.method_,
               "val_score_median": float(np.median(val_scores))}
    log.info("trained on %d sequences; threshold %.4g (%s) from %d validation sequences", len(train),
             threshold.threshold_, threshold.method_, len(val))
    return scorer, threshold, summary
