"""Small shared pieces of :mod:`edge.scorer`: errors, argument checks, seeding, feature scaling."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np


class CheckpointError(RuntimeError):
    """A scorer checkpoint is missing, incomplete or corrupt (message is one line, fit for the CLI)."""


class NotFittedError(RuntimeError):
    """A scorer, baseline or threshold was used before ``fit``."""


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as int or raise ``ValueError`` naming the argument, the value and the range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")
    return int(value)


def check_fraction(name: str, value: Any, *, low: float = 0.0, high: float = 1.0,
                   inclusive: bool = False) -> float:
    """Return ``value`` as float in the open (or closed) interval ``(low, high)`` or raise ``ValueError``."""
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (low <= v <= high) if inclusive else (low < v < high)
    if not ok:
        brackets = "[]" if inclusive else "()"
        raise ValueError(f"{name}={value!r} is invalid: expected a number in {brackets[0]}{low}, {high}{brackets[1]}")
    return float(value)


def check_sequences(X: Any, *, name: str = "X", n_features: int | None = None,
                    seq_len: int | None = None) -> np.ndarray:
    """Validate a batch of sequences and return it as C-contiguous float32 ``(batch, T, F)``.

    Raises
    ------
    ValueError
        If ``X`` is not 3-D, is empty, holds NaN/inf, or its ``F`` (or ``T``) differs from the fitted one.
    """
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"{name} has shape {arr.shape}: expected 3 dimensions (batch, T, F)")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"{name} has shape {arr.shape}: expected a non-empty (batch, T, F) array")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds NaN or infinite values: expected finite window statistics")
    if n_features is not None and arr.shape[2] != n_features:
        raise ValueError(f"{name} has F={arr.shape[2]} features: expected F={n_features} as in fit")
    if seq_len is not None and arr.shape[1] != seq_len:
        raise ValueError(f"{name} has T={arr.shape[1]} windows: expected T={seq_len} as in fit")
    return np.ascontiguousarray(arr)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (if imported) and return a fresh NumPy generator for ``seed``."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


class FeatureScaler:
    """Signed ``log1p`` compression then per-feature standardisation, fitted on benign windows.

    Window statistics are counts, byte totals and rates with heavy right tails; ``sign(x)·log1p(|x|)``
    brings them to comparable ranges before the mean/std standardisation; the standard deviation is
    floored at ``min_scale`` so constant or nearly constant benign features do not divide by ~0.

    Parameters
    ----------
    log : bool, default True
        Apply the signed ``log1p`` before standardising.
    min_scale : float, default 0.1
        Floor of the per-feature standard deviation (in the log space). A feature that is almost always
        0 on benign windows (``syn_only_ratio`` of a camera) would otherwise turn one harmless SYN into
        ``|z| > 100``; with the floor a 0 → 1 count change is ``|z| ≈ 7``.

    Attributes
    ----------
    mean_ : ndarray of shape (F,)
        Mean of the (log-compressed) benign features.
    scale_ : ndarray of shape (F,)
        Their standard deviation, floored at ``min_scale``.
    raw_mean_ : ndarray of shape (F,)
        Mean of the benign features in their own units (the "benign baseline" shown as evidence).
    raw_std_ : ndarray of shape (F,)
        Standard deviation of the benign features in their own units.
    """

    def __init__(self, log: bool = True, min_scale: float = 0.1):
        self.log = log
        self.min_scale = min_scale

    def _compress(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.sign(X) * np.log1p(np.abs(X)) if self.log else X

    def fit(self, X: Any) -> FeatureScaler:
        """Fit on benign windows ``X`` of shape ``(n, F)`` or sequences ``(batch, T, F)``."""
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim not in (2, 3) or arr.size == 0:
            raise ValueError(f"X has shape {arr.shape}: expected (n, F) or (batch, T, F), non-empty")
        flat = arr.reshape(-1, arr.shape[-1])
        z = self._compress(flat)
        self.mean_ = z.mean(axis=0)
        std = z.std(axis=0)
        self.scale_ = np.maximum(std, self.min_scale)
        self.raw_mean_ = flat.mean(axis=0)
        self.raw_std_ = flat.std(axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Scale ``X`` of shape ``(..., F)``; returns float32 of the same shape."""
        if not hasattr(self, "mean_"):
            raise NotFittedError("FeatureScaler is not fitted: call fit(X) first")
        arr = np.asarray(X, dtype=np.float64)
        if arr.shape[-1] != self.mean_.shape[0]:
            raise ValueError(f"X has F={arr.shape[-1]} features: expected F={self.mean_.shape[0]} as in fit")
        return ((self._compress(arr) - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, X: Any) -> np.ndarray:
        """``fit(X).transform(X)``."""
        return self.fit(X).transform(X)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and fitted state."""
        return {"log": self.log, "min_scale": self.min_scale, "mean": self.mean_.tolist(),
                "scale": self.scale_.tolist(), "raw_mean": self.raw_mean_.tolist(),
                "raw_std": self.raw_std_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureScaler:
        """Inverse of :meth:`to_dict`."""
        s = cls(log=bool(d["log"]), min_scale=float(d["min_scale"]))
        s.mean_ = np.asarray(d["mean"], dtype=np.float64)
        s.scale_ = np.asarray(d["scale"], dtype=np.float64)
        s.raw_mean_ = np.asarray(d["raw_mean"], dtype=np.float64)
        s.raw_std_ = np.asarray(d["raw_std"], dtype=np.float64)
        if not (s.mean_.shape == s.scale_.shape == s.raw_mean_.shape == s.raw_std_.shape):
            raise ValueError("scaler arrays have different lengths")
        return s


def as_name_list(names: Sequence[str] | None, n: int) -> list[str]:
    """Feature names, or ``f0 … f{n-1}`` when none were given."""
    if names is None:
        return [f"f{i}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise ValueError(f"feature_names has {len(names)} names: expected {n}, one per feature")
    return names
