"""Observations for windows that arrive slot by slot — what the edge daemon streams to the fog.

:class:`OnlineFusion` keeps, per ``(site_id, device_id)``, the state that spans windows — the last
``T - 1`` windows for the temporal scorer and the set of peers already seen (``new_peers``) — so that
feeding the windows of a capture slot by slot gives the same Observations as
:meth:`edge.observation.FusionPipeline.transform` over the whole capture at once (the function used to
build training data). ``tests/test_transport_edge.py`` checks this equality on the bundled capture.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edge.features import FEATURE_NAMES
from edge.observation import FusionPipeline, build_observations


@dataclass
class ObservationBatch:
    """Observations of some windows and the evidence inputs the fog needs.

    Attributes
    ----------
    keys : DataFrame
        ``site_id, device_id, t_start, t_end, proto_text`` per window (n rows).
    x : ndarray, shape (n, F), float32
        Raw statistics in :data:`edge.features.FEATURE_NAMES` order.
    z : ndarray, shape (n, F), float32
        Standardised statistics (unclipped).
    vectors : ndarray, shape (n, OBS_DIM), float32
        The fused Observations (:mod:`edge.observation`).
    scores : ndarray, shape (n,)
        Calibrated anomaly probabilities; NaN where unavailable.
    attention : ndarray, shape (n, T), float32, or None
        Head-averaged scorer attention, oldest window first (None without a scorer).
    attention_t : ndarray, shape (n, T), or None
        ``t_start`` of the windows the attention weights refer to.
    """

    keys: pd.DataFrame
    x: np.ndarray
    z: np.ndarray
    vectors: np.ndarray
    scores: np.ndarray
    attention: np.ndarray | None
    attention_t: np.ndarray | None

    def __len__(self) -> int:
        return len(self.keys)


class OnlineFusion:
    """Incremental Observation builder around a fitted :class:`FusionPipeline` and a text embedder.

    Parameters
    ----------
    pipeline : FusionPipeline
        Fitted (``fit`` or ``FusionPipeline.load``).
    embedder : object
        Anything with ``embed(texts) -> ndarray (n, 384)``, normally :class:`edge.embed.TextEmbedder`.

    Raises
    ------
    RuntimeError
        If ``pipeline`` is not fitted.
    """

    def __init__(self, pipeline: FusionPipeline, embedder) -> None:
        if not hasattr(pipeline, "scaler_"):
            raise RuntimeError("the fusion pipeline is not fitted: fit it or load a saved one")
        self.pipeline = pipeline
        self.embedder = embedder
        self.seq_len = int(getattr(pipeline, "seq_len_", 1)) if pipeline.scorer_ is not None else 1
        self._history: dict[tuple[str, str], deque] = {}
        self._peers: dict[tuple[str, str], set] = {}

    def _new_peers(self, windows: pd.DataFrame) -> np.ndarray:
        """``new_peers`` of each window (time order per device), updating the seen-peer sets."""
        out = np.zeros(len(windows), dtype=np.float32)
        order = np.lexsort((windows["t_start"].to_numpy(), windows["device_id"].astype(str).to_numpy()))
        for i in order:
            key = (str(windows["site_id"].iat[i]), str(windows["device_id"].iat[i]))
            seen = self._peers.setdefault(key, set())
            n = 0
            for p in windows["peers"].iat[i]:
                if p not in seen:
                    seen.add(p)
                    n += 1
            out[i] = n
        return out

    def transform(self, windows: pd.DataFrame) -> ObservationBatch:
        """Observations of newly closed windows (any order; each device's windows in time order overall).

        Parameters
        ----------
        windows : DataFrame
            The Window contract (``site_id, device_id, t_start, t_end``, the features, ``proto_text``);
            with a ``peers`` column, ``new_peers`` is recomputed from the state kept here (needed when
            the windows come from several extraction batches).

        Returns
        -------
        ObservationBatch
            In the row order of ``windows``.
        """
        w = windows.reset_index(drop=True)
        if "peers" in w.columns:
            w = w.copy()
            w["new_peers"] = self._new_peers(w)
        x = w[list(FEATURE_NAMES)].to_numpy(np.float32)
        z = self.pipeline.scaler_.transform(x.astype(np.float64))
        texts = w["proto_text"].astype(str).tolist()
        emb = self.embedder.embed(texts) if len(texts) else np.zeros((0, 384), np.float32)
        scores = np.full(len(w), np.nan)
        attention = attention_t = None
        if self.pipeline.scorer_ is not None and len(w):
            scores, attention, attention_t = self._score(w, x)
            vectors = build_observations(z, emb, scores, attention)
        else:
            vectors = build_observations(z, emb, None, None)
        self._remember(w, x)
        keys = w[["site_id", "device_id", "t_start", "t_end", "proto_text"]].copy()
        return ObservationBatch(keys=keys, x=x, z=z, vectors=vectors, scores=scores, attention=attention,
                                attention_t=attention_t)

    def _score(self, w: pd.DataFrame, x: np.ndarray):
        """Scores of the new windows from ``history + new`` per device (the pipeline's edge padding)."""
        T = self.seq_len
        parts, new_pos = [], []
        for key, idx in w.groupby([w["site_id"].astype(str), w["device_id"].astype(str)], sort=False).groups.items():
            idx = np.asarray(idx)
            idx = idx[np.argsort(w.loc[idx, "t_start"].to_numpy(), kind="stable")]
            hist = list(self._history.get(key, ()))
            rows = [h[1] for h in hist] + [x[i] for i in idx]
            ts = [h[0] for h in hist] + [float(w.at[i, "t_start"]) for i in idx]
            frame = pd.DataFrame(np.asarray(rows, dtype=np.float32), columns=list(FEATURE_NAMES))
            frame.insert(0, "t_start", ts)
            frame.insert(0, "device_id", key[1])
            frame.insert(0, "site_id", key[0])
            parts.append(frame)
            new_pos.append((idx, len(hist)))
        scores = np.full(len(w), np.nan)
        att = np.zeros((len(w), T), dtype=np.float32)
        att_t = np.zeros((len(w), T), dtype=np.float64)
        for frame, (idx, n_hist) in zip(parts, new_pos):
            s, a = self.pipeline.scores(frame)
            a = a.mean(axis=1) if a.ndim == 3 else a
            t = frame["t_start"].to_numpy(np.float64)
            padded = np.concatenate([np.repeat(t[:1], T - 1), t])
            for j, i in enumerate(idx):
                p = n_hist + j
                scores[i] = s[p]
                att[i] = a[p]
                att_t[i] = padded[p:p + T]
        return scores, att, att_t

    def _remember(self, w: pd.DataFrame, x: np.ndarray) -> None:
        if self.seq_len <= 1:
            return
        order = np.argsort(w["t_start"].to_numpy(), kind="stable")
        for i in order:
            key = (str(w["site_id"].iat[i]), str(w["device_id"].iat[i]))
            hist = self._history.get(key)
            if hist is None:
                hist = self._history[key] = deque(maxlen=self.seq_len - 1)
            hist.append((float(w["t_start"].iat[i]), x[i]))
