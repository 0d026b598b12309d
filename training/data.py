"""Labeled training data: captures + ground truth (or labeled Parquet) → Observations → trace sets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from edge.observation import FusionPipeline
from fog.traces import TraceSet

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
#: The bundled range recordings (each with ``<name>.groundtruth.csv``).
BUNDLED_CAPTURES = REPO / "data" / "captures"


def load_labeled(sources: Sequence[str | Path], *, window_s: float = 5.0) -> pd.DataFrame:
    """Labeled windows from labeled Parquet files and/or captures with a ground-truth CSV beside them.

    Raises
    ------
    FileNotFoundError
        If a source or a capture's ground truth is missing.
    ValueError
        If a Parquet file has no ``label`` column.
    """
    from training.range.label import label_capture

    frames = []
    for src in sources:
        p = Path(src)
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
            if "label" not in df.columns:
                raise ValueError(f"{p}: not a labeled window file (no 'label' column); run `marlids range label`")
            if "embedding" in df.columns:
                df = df.drop(columns=["embedding"])
        else:
            df = label_capture(p, window_s=window_s)
        frames.append(df)
    if not frames:
        raise ValueError("no training data given")
    return pd.concat(frames, ignore_index=True)


def embed_texts(frame: pd.DataFrame) -> np.ndarray:
    """MiniLM embeddings ``(n, 384)`` of the windows' ``proto_text`` (distinct texts encoded once)."""
    from edge.embed import TextEmbedder

    return TextEmbedder(cache_size=1 << 16).embed(frame["proto_text"].tolist())


def observations(frame: pd.DataFrame, pipeline: FusionPipeline, embeddings: np.ndarray | None = None, *,
                 grace_s: float | None = None) -> np.ndarray:
    """Training Observations ``(len(frame), OBS_DIM)`` of labeled windows, standardised as in deployment.

    Each ``(site, capture)`` learns its own baseline in a grace period (:func:`edge.online.fuse_frame`);
    the grace period's windows get the Observations of the baseline fitted at its end (they are training
    data too), and afterwards the baseline updates from the windows labeled benign — the windows a correct
    policy leaves unalerted. A capture shorter than the grace period is standardised by a baseline of its
    whole length.
    """
    from edge.online import fuse_frame

    frame = frame.reset_index(drop=True)
    emb = embed_texts(frame) if embeddings is None else embeddings
    return fuse_frame(pipeline, frame, emb, grace_s=grace_s, learn_from="labels", retrospective=True).vectors


def build_traces(frame: pd.DataFrame, pipeline: FusionPipeline, embeddings: np.ndarray | None = None, *,
                 grace_s: float | None = None, **kwargs) -> TraceSet:
    """:func:`observations` of ``frame`` as a :class:`fog.traces.TraceSet`."""
    frame = frame.reset_index(drop=True)
    return TraceSet.from_frame(frame, observations(frame, pipeline, embeddings, grace_s=grace_s), **kwargs)


def split_by_time(frame: pd.DataFrame, train_fraction: float = 0.7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each (site, capture) at the time that leaves ``train_fraction`` of its attacks before it.

    Attack episodes are kept whole: the cut falls between ground-truth intervals, so the held-out part
    holds later, unseen recordings of the techniques.

    Raises
    ------
    ValueError
        If ``train_fraction`` is not in (0, 1).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    train, test = [], []
    for _, g in frame.groupby(["site", "capture"], sort=True):
        g = g.sort_values("t_start", kind="stable")
        mal_t = np.sort(g.loc[g["label"] == 1, "t_start"].unique())
        if len(mal_t) >= 2:
            gaps = np.flatnonzero(np.diff(mal_t) > 15.0)
            starts = np.concatenate([[mal_t[0]], mal_t[gaps + 1]])
            k = int(round(train_fraction * len(starts)))
            cut = starts[min(max(k, 1), len(starts) - 1)] - 1e-6
        else:
            cut = g["t_start"].quantile(train_fraction)
        train.append(g[g["t_start"] < cut])
        test.append(g[g["t_start"] >= cut])
    return pd.concat(train, ignore_index=True), pd.concat(test, ignore_index=True)
