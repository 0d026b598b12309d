"""The fused Observation: one function builds it for training (the fog env) and at run time (the edge).

Layout of the float32 vector (``OBS_DIM`` = 63 + 384 + 2 + 4 = 453)::

    [ stats_z (63) | embedding (384) | score (1) | score_available (1) | attention summary (4) ]

* ``stats_z`` — the window statistics of :data:`edge.features.FEATURE_NAMES`, signed-log1p
  compressed and standardised on benign windows (:class:`edge.scorer._common.FeatureScaler`),
  clipped to ±:data:`Z_CLIP`.
* ``embedding`` — MiniLM of the window's protocol text (unit norm).
* ``score`` — the temporal scorer's calibrated anomaly probability in [0, 1] for the sequence
  ending at this window; ``score_available`` is 1 when the scorer had enough history (warm-up gives
  ``score = 0, score_available = 0`` — never a fake "normal" score).
* attention summary — from the scorer's attention weights ``(heads, T)`` averaged over heads:
  the largest weight, the normalised entropy (0 = one window, 1 = uniform), the relative position of
  the most attended window (0 = oldest, 1 = the current one) and the weight on the current window.
  All zeros when no score is available.
"""

from __future__ import annotations

import numpy as np

from edge.embed import EMBED_DIM
from edge.features import N_FEATURES

#: Clip of the standardised statistics.
Z_CLIP = 10.0
#: Attention summary entries.
ATTN_SUMMARY = ("attn_max", "attn_entropy", "attn_argmax_pos", "attn_last")
#: Name → slice of each part of the vector.
OBS_SLICES: dict[str, slice] = {
    "stats_z": slice(0, N_FEATURES),
    "embedding": slice(N_FEATURES, N_FEATURES + EMBED_DIM),
    "score": slice(N_FEATURES + EMBED_DIM, N_FEATURES + EMBED_DIM + 1),
    "score_available": slice(N_FEATURES + EMBED_DIM + 1, N_FEATURES + EMBED_DIM + 2),
    "attention": slice(N_FEATURES + EMBED_DIM + 2, N_FEATURES + EMBED_DIM + 2 + len(ATTN_SUMMARY)),
}
#: Length of the Observation vector.
OBS_DIM: int = OBS_SLICES["attention"].stop


def attention_summary(attention: np.ndarray) -> np.ndarray:
    """Summarise attention weights ``(n, heads, T)`` (or ``(n, T)``) into ``(n, 4)`` (module docstring).

    Raises
    ------
    ValueError
        If ``attention`` is not 2-D or 3-D.
    """
    a = np.asarray(attention, dtype=np.float64)
    if a.ndim == 3:
        a = a.mean(axis=1)
    if a.ndim != 2:
        raise ValueError(f"attention must have shape (n, heads, T) or (n, T), got {a.shape}")
    n, t = a.shape
    w = a / np.clip(a.sum(axis=1, keepdims=True), 1e-12, None)
    ent = -(w * np.log(np.clip(w, 1e-12, None))).sum(axis=1) / (np.log(t) if t > 1 else 1.0)
    pos = w.argmax(axis=1) / max(t - 1, 1)
    return np.stack([w.max(axis=1), ent, pos, w[:, -1]], axis=1).astype(np.float32)


def build_observations(stats_z: np.ndarray, embeddings: np.ndarray, scores: np.ndarray | None = None,
                       attention: np.ndarray | None = None) -> np.ndarray:
    """Fuse per-window parts into Observation vectors.

    Parameters
    ----------
    stats_z : ndarray, shape (n, 62)
        Scaled window statistics (``FeatureScaler.transform``); clipped to ±10 here.
    embeddings : ndarray, shape (n, 384)
        MiniLM embeddings of the windows' protocol texts.
    scores : ndarray, shape (n,), optional
        Calibrated anomaly probabilities in [0, 1]; NaN marks windows without a score (warm-up).
        ``None``: no scorer (all unavailable).
    attention : ndarray, shape (n, heads, T) or (n, T), optional
        Attention weights of the scored sequences; ignored where the score is NaN.

    Returns
    -------
    ndarray of float32, shape (n, OBS_DIM)

    Raises
    ------
    ValueError
        If the parts have the wrong widths or different numbers of rows, or a score is outside [0, 1].
    """
    z = np.asarray(stats_z, dtype=np.float32)
    e = np.asarray(embeddings, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != N_FEATURES:
        raise ValueError(f"stats_z must have shape (n, {N_FEATURES}), got {z.shape}")
    if e.shape != (z.shape[0], EMBED_DIM):
        raise ValueError(f"embeddings must have shape ({z.shape[0]}, {EMBED_DIM}), got {e.shape}")
    n = z.shape[0]
    out = np.zeros((n, OBS_DIM), dtype=np.float32)
    out[:, OBS_SLICES["stats_z"]] = np.clip(z, -Z_CLIP, Z_CLIP)
    out[:, OBS_SLICES["embedding"]] = e
    if scores is not None:
        s = np.asarray(scores, dtype=np.float64).reshape(n)
        ok = ~np.isnan(s)
        if ((s[ok] < 0) | (s[ok] > 1)).any():
            raise ValueError("scores must be calibrated probabilities in [0, 1] (NaN for unavailable)")
        out[ok, OBS_SLICES["score"].start] = s[ok]
        out[ok, OBS_SLICES["score_available"].start] = 1.0
        if attention is not None:
            summ = attention_summary(attention)
            if summ.shape[0] != n:
                raise ValueError(f"attention has {summ.shape[0]} rows, expected {n}")
            out[ok, OBS_SLICES["attention"]] = summ[ok]
    return out


def build_observation(stats_z: np.ndarray, embedding: np.ndarray, score: float | None = None,
                      attention: np.ndarray | None = None) -> np.ndarray:
    """One Observation ``(OBS_DIM,)`` from one window's parts (``attention``: ``(heads, T)``); see
    :func:`build_observations`."""
    s = None if score is None else np.array([score], dtype=np.float64)
    a = None if attention is None else np.asarray(attention)[None]
    return build_observations(np.asarray(stats_z)[None], np.asarray(embedding)[None], s, a)[0]


class FusionPipeline:
    """Fitted parts that turn windows into Observations: benign scaler, optional temporal scorer.

    Used by training (``training.data``) and, with the same saved files, by the edge runtime, so the
    Observation layout and scaling cannot drift apart.

    Parameters
    ----------
    scorer_dir : str or Path, optional
        Checkpoint of the temporal scorer (``marlids edge train-scorer``); without one the score part
        of every Observation is "unavailable".
    backend : {"auto", "onnx", "torch"}, optional
        How the scorer runs (:func:`edge.onnx_embed.resolve_backend`; default ``$MARLIDS_EDGE_BACKEND``
        or ``"auto"``: torch when importable, else onnxruntime on the checkpoint's ``scorer.onnx``).

    Attributes
    ----------
    scaler_ : FeatureScaler
        Fitted on benign windows.
    """

    def __init__(self, scorer_dir: str | None = None, backend: str | None = None) -> None:
        self.scorer_dir = scorer_dir
        self.backend = backend

    def fit(self, frame) -> FusionPipeline:
        """Fit the scaler on the benign windows of ``frame`` (``label == 0`` when labeled).

        Raises
        ------
        ValueError
            If ``frame`` has no benign window.
        """
        from edge.features import FEATURE_NAMES
        from edge.scorer._common import FeatureScaler

        benign = frame[frame["label"] == 0] if "label" in frame.columns else frame
        if benign.empty:
            raise ValueError("no benign window to fit the scaler on")
        self.scaler_ = FeatureScaler().fit(benign[list(FEATURE_NAMES)].to_numpy(np.float64))
        self._load_scorer()
        return self

    def _load_scorer(self) -> None:
        self.scorer_ = self.threshold_ = None
        if self.scorer_dir:
            from edge.onnx_embed import resolve_backend

            if resolve_backend(self.backend) == "onnx":
                from edge.scorer.export import load_onnx_checkpoint as load_checkpoint
            else:
                from edge.scorer.checkpoint import load_checkpoint

            self.scorer_, self.threshold_, cfg = load_checkpoint(self.scorer_dir)
            self.seq_len_ = int(cfg.get("seq_len", cfg.get("params", {}).get("seq_len", 20)))

    def scores(self, frame) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated scores ``(n,)`` (NaN without a scorer) and attention ``(n, heads, T)`` per window."""
        n = len(frame)
        if self.scorer_ is None:
            return np.full(n, np.nan), None
        from edge.scorer.sequences import build_sequences

        seqs = build_sequences(frame, self.seq_len_)
        raw, attn = self.scorer_.score_with_attention(seqs.X)
        cal = self.threshold_.calibrate(raw) if self.threshold_ is not None else np.clip(raw, 0, 1)
        scores = np.full(n, np.nan)
        att = np.zeros((n, *attn.shape[1:]), dtype=np.float32)
        scores[seqs.rows] = cal
        att[seqs.rows] = attn
        return scores, att

    def transform(self, frame, embeddings: np.ndarray) -> np.ndarray:
        """Observations ``(len(frame), OBS_DIM)`` of windows ``frame`` with their ``embeddings`` ``(n, 384)``."""
        from edge.features import FEATURE_NAMES

        if not hasattr(self, "scaler_"):
            raise RuntimeError("FusionPipeline is not fitted: call fit(frame) first")
        z = self.scaler_.transform(frame[list(FEATURE_NAMES)].to_numpy(np.float64))
        scores, att = self.scores(frame.reset_index(drop=True))
        return build_observations(z, embeddings, scores, att)

    def save(self, directory) -> None:
        """Write ``fusion.json`` (scaler state and scorer path) into ``directory``."""
        import json
        from pathlib import Path

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "fusion.json").write_text(json.dumps({"scaler": self.scaler_.to_dict(), "scorer_dir": self.scorer_dir,
                                                   "obs_dim": OBS_DIM}, indent=1))

    @classmethod
    def load(cls, directory, backend: str | None = None) -> FusionPipeline:
        """Inverse of :meth:`save`; a relative ``scorer_dir`` that exists under ``directory`` is taken
        from there (the layout of ``marlids edge export-onnx``). ``backend`` as in the constructor.

        Raises
        ------
        ValueError
            If ``fusion.json`` is missing, corrupt or written for another Observation layout.
        """
        import json
        from pathlib import Path

        from edge.scorer._common import FeatureScaler

        p = Path(directory) / "fusion.json"
        try:
            d = json.loads(p.read_text())
            if d["obs_dim"] != OBS_DIM:
                raise ValueError(f"{p}: written for OBS_DIM={d['obs_dim']}, this version uses {OBS_DIM}")
            scorer_dir = d.get("scorer_dir")
            if scorer_dir and not Path(scorer_dir).is_absolute() and (Path(directory) / scorer_dir).is_dir():
                scorer_dir = str(Path(directory) / scorer_dir)
            pipe = cls(scorer_dir, backend)
            pipe.scaler_ = FeatureScaler.from_dict(d["scaler"])
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p}: missing or corrupt fusion pipeline ({exc})") from exc
        pipe._load_scorer()
        return pipe
