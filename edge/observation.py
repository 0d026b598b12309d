"""The fused Observation: one function builds it for training (the fog env) and at run time (the edge).

Layout of the float32 vector (``OBS_DIM`` = 64 + 384 + 2 + 4 + 1 + 64 = 519)::

    [ stats_z (64) | embedding (384) | score (1) | score_available (1) | attention summary (4) | site_score (1)
      | stats_level (64) ]

* ``stats_z`` — the window statistics of :data:`edge.features.FEATURE_NAMES`, signed-log1p
  compressed and standardised against the window's **site baseline** (:mod:`edge.baseline`: its
  device's statistics, or its site's), clipped to ±:data:`Z_CLIP`.
* ``embedding`` — MiniLM of the window's protocol text (unit norm).
* ``score`` — the temporal scorer's calibrated anomaly probability in [0, 1] for the sequence
  of site-standardised windows ending at this window (its raw score through the scorer's threshold,
  :meth:`FusionPipeline.calibrate_raw`); ``score_available`` is 1 when the scorer had enough history (warm-up gives
  ``score = 0, score_available = 0`` — never a fake "normal" score).
* attention summary — from the scorer's attention weights ``(heads, T)`` averaged over heads:
  the largest weight, the normalised entropy (0 = one window, 1 = uniform), the relative position of
  the most attended window (0 = oldest, 1 = the current one) and the weight on the current window.
  All zeros when no score is available.
* ``site_score`` — how unlike the site's own grace period the window is, by the site's Kitsune-style
  autoencoder ensemble (:mod:`edge.site_model`): ``log(RMSE / RMSE_ref)`` in [−5, 10], about 0 for the
  grace period's most unusual windows; 0 when no site model exists.
* ``stats_level`` — the same statistics in absolute terms: ``c(x) / LEVEL_DIVISOR`` with the signed
  ``log1p`` compression ``c`` of :func:`edge.baseline.compress` and a fixed divisor (not fitted on any
  network). ``stats_z`` says how unusual a window is *for this site*; it cannot say how much happened: on a
  device that never sent a TCP reset in its grace period, 2 resets and 2,000 resets are both beyond the
  clip of ``stats_z``. The level part tells them apart, so "a few more packets than this quiet device
  usually sends" need not read as an attack (README › "Relative and absolute evidence").

Every part except the protocol embedding and ``stats_level`` is relative to the window's site (its
baseline, its grace period); nothing in it is scaled by the networks the policy was trained on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edge.baseline import compress
from edge.embed import EMBED_DIM
from edge.features import N_FEATURES

log = logging.getLogger(__name__)

#: Clip of the standardised statistics.
Z_CLIP = 10.0
#: Divisor of the compressed statistics in ``stats_level`` (``log1p`` of 22,000 packets is 10: about 1).
LEVEL_DIVISOR = 10.0
#: Attention summary entries.
ATTN_SUMMARY = ("attn_max", "attn_entropy", "attn_argmax_pos", "attn_last")
#: Name → slice of each part of the vector.
OBS_SLICES: dict[str, slice] = {
    "stats_z": slice(0, N_FEATURES),
    "embedding": slice(N_FEATURES, N_FEATURES + EMBED_DIM),
    "score": slice(N_FEATURES + EMBED_DIM, N_FEATURES + EMBED_DIM + 1),
    "score_available": slice(N_FEATURES + EMBED_DIM + 1, N_FEATURES + EMBED_DIM + 2),
    "attention": slice(N_FEATURES + EMBED_DIM + 2, N_FEATURES + EMBED_DIM + 2 + len(ATTN_SUMMARY)),
    "site_score": slice(N_FEATURES + EMBED_DIM + 2 + len(ATTN_SUMMARY), N_FEATURES + EMBED_DIM + 3 + len(ATTN_SUMMARY)),
    "stats_level": slice(N_FEATURES + EMBED_DIM + 3 + len(ATTN_SUMMARY),
                         2 * N_FEATURES + EMBED_DIM + 3 + len(ATTN_SUMMARY)),
}
#: Length of the Observation vector.
OBS_DIM: int = OBS_SLICES["stats_level"].stop
#: Version of ``fusion.json`` (3: site baselines and the ``stats_level`` part; 2 had no ``stats_level``;
#: 1 had one scaler fitted on the training networks).
FUSION_FORMAT = 3
#: What the temporal scorer reads, recorded in its checkpoint: windows standardised by their site baseline.
SCORER_INPUT = "site_z"
#: Units a scorer's threshold applies to, recorded in its checkpoint (``training.score_units``): ``"raw"``
#: scores (every scorer trained now) or ``"site"``, raw scores standardised by the site's
#: :class:`edge.baseline.ScoreBaseline` (checkpoints without the key; :meth:`FusionPipeline.calibrate_raw`).
SCORE_UNITS = ("raw", "site")


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
                       attention: np.ndarray | None = None, site_scores: np.ndarray | None = None, *,
                       stats: np.ndarray) -> np.ndarray:
    """Fuse per-window parts into Observation vectors.

    Parameters
    ----------
    stats_z : ndarray, shape (n, 63)
        Window statistics standardised by their site baseline (:meth:`edge.baseline.SiteBaseline.transform`);
        clipped to ±10 here.
    stats : ndarray, shape (n, 63)
        The same windows' raw statistics (units in :data:`edge.features.FEATURE_NAMES`); their compressed
        values divided by :data:`LEVEL_DIVISOR` form ``stats_level``.
    embeddings : ndarray, shape (n, 384)
        MiniLM embeddings of the windows' protocol texts.
    scores : ndarray, shape (n,), optional
        Calibrated anomaly probabilities in [0, 1]; NaN marks windows without a score (warm-up).
        ``None``: no scorer (all unavailable).
    attention : ndarray, shape (n, heads, T) or (n, T), optional
        Attention weights of the scored sequences; ignored where the score is NaN.
    site_scores : ndarray, shape (n,), optional
        Site scores of :class:`edge.site_model.SiteAnomalyModel` (default 0).

    Returns
    -------
    ndarray of float32, shape (n, OBS_DIM)

    Raises
    ------
    ValueError
        If the parts have the wrong widths or different numbers of rows, a score is outside [0, 1], or
        ``stats`` holds NaN or infinite values.
    """
    z = np.asarray(stats_z, dtype=np.float32)
    e = np.asarray(embeddings, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != N_FEATURES:
        raise ValueError(f"stats_z must have shape (n, {N_FEATURES}), got {z.shape}")
    if e.shape != (z.shape[0], EMBED_DIM):
        raise ValueError(f"embeddings must have shape ({z.shape[0]}, {EMBED_DIM}), got {e.shape}")
    n = z.shape[0]
    raw = np.asarray(stats, dtype=np.float64)
    if raw.shape != z.shape:
        raise ValueError(f"stats must have the shape of stats_z {z.shape}, got {raw.shape}")
    if not np.isfinite(raw).all():
        raise ValueError("stats hold NaN or infinite values")
    out = np.zeros((n, OBS_DIM), dtype=np.float32)
    out[:, OBS_SLICES["stats_z"]] = np.clip(z, -Z_CLIP, Z_CLIP)
    out[:, OBS_SLICES["stats_level"]] = np.clip(compress(raw) / LEVEL_DIVISOR, -Z_CLIP, Z_CLIP)
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
    if site_scores is not None:
        ss = np.asarray(site_scores, dtype=np.float64).reshape(n)
        if not np.isfinite(ss).all():
            raise ValueError("site scores must be finite")
        out[:, OBS_SLICES["site_score"].start] = np.clip(ss, -Z_CLIP, Z_CLIP)
    return out


def build_observation(stats_z: np.ndarray, embedding: np.ndarray, score: float | None = None,
                      attention: np.ndarray | None = None, site_score: float | None = None, *,
                      stats: np.ndarray) -> np.ndarray:
    """One Observation ``(OBS_DIM,)`` from one window's parts (``attention``: ``(heads, T)``; ``stats``: the
    raw statistics ``(63,)``); see :func:`build_observations`."""
    s = None if score is None else np.array([score], dtype=np.float64)
    a = None if attention is None else np.asarray(attention)[None]
    ss = None if site_score is None else np.array([site_score], dtype=np.float64)
    return build_observations(np.asarray(stats_z)[None], np.asarray(embedding)[None], s, a, ss,
                              stats=np.asarray(stats)[None])[0]


def _resolve_scorer_dir(directory, scorer_dir: str | None) -> str | None:
    """``scorer_dir`` of a saved ``fusion.json``: a relative path that exists under ``directory`` is taken from
    there (the layout of ``marlids edge export-onnx`` and of exported policies), anything else as written."""
    if scorer_dir and not Path(scorer_dir).is_absolute() and (Path(directory) / scorer_dir).is_dir():
        return str(Path(directory) / scorer_dir)
    return scorer_dir


def _alert_quantile(q: float | None) -> float:
    """The calibrated score above which the scorer alone alerts: ``1 − q`` of its threshold's quantile ``q``,
    0.5 for a scorer saved without a threshold."""
    return 1.0 - float(q) if q is not None else 0.5


class FusionPipeline:
    """The fitted assets that turn a site's windows into Observations: site-baseline settings and the scorer.

    The Observation of a window is built against its **site baseline** (:mod:`edge.baseline`), learned
    from the site's own traffic in a grace period, never against the training networks' statistics; this
    object carries what is common to every site — the baseline settings, the per-feature scale floor and
    the temporal scorer with its threshold — and :class:`edge.online.SiteFusion` holds one site's state.
    Training (``training.data``), evaluation, ``marlids fog detect`` and the edge daemon all use the
    same saved files, so the Observation layout and its standardisation cannot drift apart.

    Parameters
    ----------
    scorer_dir : str or Path, optional
        Checkpoint of the temporal scorer (``marlids edge train-scorer``), trained on site-standardised
        windows; without one the score part of every Observation is "unavailable".
    backend : {"auto", "onnx", "torch"}, optional
        How the scorer runs (:func:`edge.onnx_embed.resolve_backend`; default ``$MARLIDS_EDGE_BACKEND``
        or ``"auto"``).
    baseline : dict, optional
        Settings of every site's :class:`edge.baseline.SiteBaseline` (``grace_s``, ``min_grace_windows``,
        ``min_device_windows``, ``half_life_windows``, ``device_scale_floor``, ``min_scale``).
    scale_floor_factor : float, default 0.5
        The scale of each statistic is floored at this share of its spread over the training sites' benign
        windows (``fit``), so a site whose grace period was unusually regular does not turn ordinary
        variation into large deviations; only the spread is taken from the training networks, never
        their level.
    site_model : dict, optional
        Settings of every site's :class:`edge.site_model.SiteAnomalyModel` (``epochs``, ``seed``, …).

    Attributes
    ----------
    scale_floor_ : ndarray, shape (F,)
        Per-feature scale floor (compressed units), set by ``fit`` or ``load``.
    """

    def __init__(self, scorer_dir: str | None = None, backend: str | None = None, baseline: dict | None = None,
                 scale_floor_factor: float = 0.5, site_model: dict | None = None) -> None:
        self.scorer_dir = scorer_dir
        self.backend = backend
        self.baseline = dict(baseline or {})
        self.scale_floor_factor = scale_floor_factor
        self.site_model = dict(site_model or {})

    def fit(self, frame) -> FusionPipeline:
        """Set the scale floor from the benign windows of ``frame`` (``label == 0`` when labeled) and load
        the scorer. With a scorer, its checkpoint's scale floor and baseline settings are used instead
        (``training.scorer.train``): the scorer must see windows standardised as in its training.

        Raises
        ------
        ValueError
            If ``frame`` has no benign window or the factor is negative.
        """
        from edge.baseline import compress
        from edge.features import FEATURE_NAMES

        if not (isinstance(self.scale_floor_factor, (int, float)) and self.scale_floor_factor >= 0):
            raise ValueError(f"scale_floor_factor={self.scale_floor_factor!r} is invalid: expected a number >= 0")
        benign = frame[frame["label"] == 0] if "label" in frame.columns else frame
        if benign.empty:
            raise ValueError("no benign window to fit the scale floor on")
        c = compress(benign[list(FEATURE_NAMES)].to_numpy(np.float64))
        self.scale_floor_ = self.scale_floor_factor * c.std(axis=0)
        self._load_scorer()
        if self.scorer_ is not None and self._scorer_floor is not None:
            # the scorer learned on windows standardised with its own floor and settings: use the same
            self.scale_floor_ = np.asarray(self._scorer_floor, dtype=np.float64)
            self.scale_floor_factor = float(self._scorer_training.get("scale_floor_factor", self.scale_floor_factor))
            self.baseline = {**(self._scorer_training.get("baseline") or {}), **self.baseline}
        return self

    def _load_scorer(self) -> None:
        self.scorer_ = self.threshold_ = None
        self.score_min_scale_ = 1e-3
        self.score_units_ = "raw"
        self._scorer_floor = None
        self._scorer_training: dict = {}
        if self.scorer_dir:
            from edge.onnx_embed import resolve_scorer_backend

            backend = resolve_scorer_backend(self.backend, self.scorer_dir)
            if backend == "onnx":
                from edge.scorer.export import load_onnx_checkpoint as load_checkpoint
            else:
                from edge.scorer.checkpoint import load_checkpoint

            self.scorer_, self.threshold_, cfg = load_checkpoint(self.scorer_dir)
            training = cfg.get("training") or {}
            if training.get("input") != SCORER_INPUT:
                raise ValueError(f"scorer {self.scorer_dir} was trained on {training.get('input', 'raw')!r} windows, "
                                 f"this version feeds it {SCORER_INPUT!r}: retrain it (marlids edge train-scorer)")
            self.seq_len_ = int(cfg.get("seq_len", cfg.get("params", {}).get("seq_len", 20)))
            self.score_min_scale_ = float(training.get("score_min_scale", 1e-3))
            self.score_units_ = str(training.get("score_units", "site"))
            if self.score_units_ not in SCORE_UNITS:
                raise ValueError(f"scorer {self.scorer_dir}: score_units {self.score_units_!r}, expected one of "
                                 f"{', '.join(SCORE_UNITS)}")
            if self.score_units_ == "site":
                log.warning(
                    "scorer %s thresholds site-standardised scores (trained before score units were recorded): "
                    "on a new network it rarely alerts; retrain it (marlids edge train-scorer) for raw units",
                    self.scorer_dir)
            self._scorer_floor = training.get("scale_floor")
            self._scorer_training = training

    def new_baseline(self, grace_s: float | None = None):
        """A fresh :class:`edge.baseline.SiteBaseline` with this pipeline's settings (``grace_s`` overrides).

        Raises
        ------
        RuntimeError
            If the pipeline is neither fitted nor loaded.
        """
        from edge.baseline import SiteBaseline
        from edge.features import FEATURE_NAMES, N_FEATURES

        if not hasattr(self, "scale_floor_"):
            raise RuntimeError("FusionPipeline is not fitted: call fit(frame) or load a saved one")
        params = dict(self.baseline)
        if grace_s is not None:
            params["grace_s"] = float(grace_s)
        params.setdefault("burst_features", [FEATURE_NAMES.index("pkts"), FEATURE_NAMES.index("new_flows")])
        return SiteBaseline(N_FEATURES, scale_floor=self.scale_floor_.tolist(), **params)

    def new_site_model(self):
        """A fresh, unfitted :class:`edge.site_model.SiteAnomalyModel` with this pipeline's settings."""
        from edge.site_model import SiteAnomalyModel

        return SiteAnomalyModel(**self.site_model)

    def new_score_baseline(self):
        """A fresh :class:`edge.baseline.ScoreBaseline` floored at the scorer's ``score_min_scale``."""
        from edge.baseline import DEFAULT_HALF_LIFE_WINDOWS, ScoreBaseline

        return ScoreBaseline(self.score_min_scale_,
                             float(self.baseline.get("half_life_windows", DEFAULT_HALF_LIFE_WINDOWS)))

    def score_sequences(self, z_seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores ``(n,)`` and head-averaged attention ``(n, T)`` of site-standardised sequences
        ``(n, T, F)`` (clipped to ±:data:`Z_CLIP` like the Observation)."""
        raw, att = self.scorer_.score_with_attention(np.clip(z_seqs, -Z_CLIP, Z_CLIP))
        att = np.asarray(att, dtype=np.float32)
        return np.asarray(raw, dtype=np.float64), (att.mean(axis=1) if att.ndim == 3 else att)

    def calibrate(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated anomaly probabilities in [0, 1] of scores in the threshold's units (the SPOT threshold's
        ``calibrate``; a scorer without a threshold gives ``clip(s / 10, 0, 1)``)."""
        s = np.asarray(scores, dtype=np.float64)
        if self.threshold_ is None:
            return np.clip(s / 10.0, 0.0, 1.0)
        return np.asarray(self.threshold_.calibrate(s), dtype=np.float64)

    def calibrate_raw(self, raw: np.ndarray, score_baseline) -> np.ndarray:
        """Calibrated anomaly probabilities ``(n,)`` in [0, 1] of one site's raw scores ``(n,)``.

        ``score_baseline`` is the site's :class:`edge.baseline.ScoreBaseline`; it is read only for ``"site"``
        checkpoints.

        A scorer trained since score units were recorded (``score_units == "raw"``) has its threshold
        fitted on raw scores of benign validation windows: its input is already standardised by each
        site's baseline, and its raw scores' benign tail lies at the same height on networks it never saw
        (the 99th percentile of held-out range networks' and public captures' benign scores: 1.9–2.8 for a
        seed-0 fold model). Older checkpoints (``"site"``) divide by ``score_baseline``
        (:class:`edge.baseline.ScoreBaseline`, fitted on the grace period's scores) first; those scores are
        in-sample for the baseline that standardised the grace windows, so the scale came out too small
        and the threshold too high — on new networks the scorer alone almost never alerted (loading such a
        checkpoint logs a warning that says to retrain it).

        Raises
        ------
        RuntimeError
            For a ``"site"`` scorer whose score baseline is not fitted.
        """
        if self.score_units_ == "raw":
            return self.calibrate(raw)
        return self.calibrate(score_baseline.standardise(raw))

    def alert_quantile(self) -> float:
        """Calibrated score above which the scorer alone alerts (``1 − q`` of its threshold)."""
        return _alert_quantile(self.threshold_.q if self.threshold_ is not None else None)

    @staticmethod
    def saved_alert_quantile(directory) -> float | None:
        """:meth:`alert_quantile` of the pipeline saved in ``directory``, read from ``fusion.json`` and its
        scorer's ``config.json`` without loading the scorer (the fog needs only this number).

        Returns
        -------
        float or None
            ``1 − q``; 0.5 for a scorer without a threshold (as :meth:`alert_quantile`); None when the folder
            holds no readable fusion pipeline or scorer configuration (no scorer is known).
        """
        import json

        try:
            scorer_dir = _resolve_scorer_dir(directory, json.loads((Path(directory) / "fusion.json").read_text())
                                             .get("scorer_dir"))
            if not scorer_dir:
                return None
            cfg = json.loads((Path(scorer_dir) / "config.json").read_text())
            threshold = cfg.get("threshold")
            return _alert_quantile(threshold["params"]["q"] if threshold else None)
        except (OSError, AttributeError, KeyError, TypeError, ValueError):
            return None

    def save(self, directory) -> None:
        """Write ``fusion.json`` (format 2: baseline settings, scale floor, scorer path) into ``directory``."""
        import json

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "fusion.json").write_text(json.dumps(
            {"format": FUSION_FORMAT, "obs_dim": OBS_DIM, "scorer_dir": self.scorer_dir, "baseline": self.baseline,
             "scale_floor_factor": self.scale_floor_factor, "scale_floor": self.scale_floor_.tolist(),
             "site_model": self.site_model}, indent=1))

    @classmethod
    def load(cls, directory, backend: str | None = None) -> FusionPipeline:
        """Inverse of :meth:`save`; a relative ``scorer_dir`` that exists under ``directory`` is taken
        from there (the layout of ``marlids edge export-onnx``). ``backend`` as in the constructor.

        Raises
        ------
        ValueError
            If ``fusion.json`` is missing, corrupt, of another format or written for another Observation
            layout, or its scorer was trained on other inputs.
        """
        import json

        from edge.features import N_FEATURES

        p = Path(directory) / "fusion.json"
        try:
            d = json.loads(p.read_text())
            if d.get("format") != FUSION_FORMAT:
                raise ValueError(f"{p}: written by an older marlids (no site baseline, format "
                                 f"{d.get('format', 1)}); retrain the policy (marlids train mappo)")
            if d["obs_dim"] != OBS_DIM:
                raise ValueError(f"{p}: written for OBS_DIM={d['obs_dim']}, this version uses {OBS_DIM}")
            scorer_dir = _resolve_scorer_dir(directory, d.get("scorer_dir"))
            pipe = cls(scorer_dir, backend, d.get("baseline") or {}, float(d.get("scale_floor_factor", 0.5)),
                       d.get("site_model") or {})
            pipe.scale_floor_ = np.asarray(d["scale_floor"], dtype=np.float64)
            if pipe.scale_floor_.shape != (N_FEATURES,):
                raise ValueError(f"{p}: scale_floor has {pipe.scale_floor_.size} values, expected {N_FEATURES}")
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{p}: missing or corrupt fusion pipeline ({exc})") from exc
        pipe._load_scorer()
        return pipe
