"""Thresholds fitted on benign scores: peaks-over-threshold (SPOT) and the mean + kσ reference.

A threshold object turns a scorer's raw score into a decision (``predict``) and a calibrated value in
[0, 1] (``calibrate``), independently of which scorer produced the score. Fit it on scores of *benign
validation* windows that the scorer did not train on — never on test labels.

:class:`SPOTThreshold` follows Siffer et al. (KDD 2017): above a high empirical quantile ``t`` of the
benign scores, excesses ``s - t`` follow a generalised Pareto distribution (Pickands–Balkema–de Haan);
fitting it (``scipy.stats.genpareto``) extrapolates the tail, so the threshold ``z_q`` with
``P(S > z_q) = q`` is accurate even for ``q`` far below ``1 / n`` and for heavy tails, where a Gaussian
``mean + 3σ`` rule has a false-positive rate off by an order of magnitude.

References
----------
Siffer, A., Fouque, P.-A., Termier, A. and Largouët, C. "Anomaly Detection in Streams with Extreme Value
Theory." KDD 2017.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from edge.scorer._common import NotFittedError, check_fraction, check_positive_int

log = logging.getLogger(__name__)


def _check_scores(scores: Any, name: str = "scores") -> np.ndarray:
    arr = np.asarray(scores, dtype=np.float64).ravel()
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{name} has {arr.size} values (finite: {np.isfinite(arr).sum()}): "
                         "expected a non-empty array of finite scores")
    return arr


class SPOTThreshold:
    """Extreme-value threshold on benign scores (SPOT, Siffer et al. KDD 2017).

    Parameters
    ----------
    q : float, default 1e-3
        Target false-positive rate per scored window: ``threshold_`` is the score exceeded by a benign
        window with probability ``q``.
    level : float, default 0.98
        Quantile of the benign scores used as the initial threshold ``t`` (peaks are scores above it).
    min_peaks : int, default 10
        Fewest peaks needed to fit the GPD; with fewer, the empirical quantile ``1 - q`` (or the maximum
        benign score) is used and ``method_`` says so.

    Attributes
    ----------
    threshold_ : float
        Decision threshold ``z_q``.
    init_threshold_ : float
        ``t``, the ``level`` quantile of the benign scores.
    gamma_, sigma_ : float
        GPD shape and scale of the excesses over ``t`` (``gamma_ > 0``: heavy tail).
    n_ : int
        Benign scores seen (grows with :meth:`learn_one`).
    peaks_ : ndarray
        Excesses over ``t``.
    sorted_scores_ : ndarray
        Benign scores, sorted, for the empirical CDF below ``t``.
    method_ : str
        ``"gpd"`` or ``"empirical"`` (too few peaks).

    Examples
    --------
    >>> import numpy as np
    >>> s = np.random.default_rng(0).lognormal(size=20000)
    >>> th = SPOTThreshold(q=1e-3).fit(s)
    >>> round(float(np.mean(np.random.default_rng(1).lognormal(size=200000) > th.threshold_)), 4) < 0.002
    True
    """

    def __init__(self, q: float = 1e-3, level: float = 0.98, min_peaks: int = 10):
        self.q = q
        self.level = level
        self.min_peaks = min_peaks

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {"q": self.q, "level": self.level, "min_peaks": self.min_peaks}

    # -- fitting --------------------------------------------------------------------------------------
    def fit(self, scores: Any) -> SPOTThreshold:
        """Fit on benign scores of shape ``(n,)``.

        Raises
        ------
        ValueError
            On ``q`` or ``level`` outside (0, 1), ``q >= 1 - level``, or empty / non-finite scores.
        """
        check_fraction("q", self.q)
        check_fraction("level", self.level)
        check_positive_int("min_peaks", self.min_peaks, minimum=2)
        if self.q >= 1.0 - self.level:
            raise ValueError(f"q={self.q} is invalid: expected q < 1 - level = {1.0 - self.level:g} "
                             "(the target rate must lie in the tail above the initial threshold)")
        s = _check_scores(scores)
        self.sorted_scores_ = np.sort(s)
        self.n_ = int(s.size)
        self.init_threshold_ = float(np.quantile(s, self.level))
        self.peaks_ = s[s > self.init_threshold_] - self.init_threshold_
        self._refit()
        return self

    def _refit(self) -> None:
        from scipy.stats import genpareto

        if self.peaks_.size >= self.min_peaks and np.ptp(self.peaks_) > 0:
            c, _, scale = genpareto.fit(self.peaks_, floc=0.0)
            self.gamma_, self.sigma_ = float(c), float(scale)
            self.method_ = "gpd"
            r = self.q * self.n_ / self.peaks_.size
            if abs(self.gamma_) < 1e-8:
                z = self.init_threshold_ - self.sigma_ * math.log(r)
            else:
                z = self.init_threshold_ + self.sigma_ / self.gamma_ * (r ** (-self.gamma_) - 1.0)
            self.threshold_ = float(z)
        else:
            self.gamma_, self.sigma_ = 0.0, float(np.mean(self.peaks_)) if self.peaks_.size else 0.0
            self.method_ = "empirical"
            self.threshold_ = float(np.quantile(self.sorted_scores_, 1.0 - self.q))
            log.warning("SPOTThreshold: only %d peaks above the %.3f quantile; using the empirical "
                        "1 - q quantile %.4g", self.peaks_.size, self.level, self.threshold_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError("SPOTThreshold is not fitted: call fit(benign_scores) first")

    # -- use ------------------------------------------------------------------------------------------
    def tail_probability(self, scores: Any) -> np.ndarray:
        """Estimated ``P(S_benign >= s)`` for each score: GPD tail above ``t``, empirical below it."""
        self._check_fitted()
        s = np.asarray(scores, dtype=np.float64)
        n_sorted = self.sorted_scores_.size
        emp = 1.0 - np.searchsorted(self.sorted_scores_, s, side="left") / n_sorted
        out = emp
        if self.method_ == "gpd":
            frac = self.peaks_.size / self.n_
            x = np.maximum(s - self.init_threshold_, 0.0)
            if abs(self.gamma_) < 1e-8:
                tail = frac * np.exp(-x / self.sigma_)
            else:
                base = np.maximum(1.0 + self.gamma_ * x / self.sigma_, 0.0)
                with np.errstate(divide="ignore"):
                    tail = frac * np.where(base > 0, base ** (-1.0 / self.gamma_), 0.0)
            out = np.where(s > self.init_threshold_, tail, emp)
        return np.clip(out, 0.0, 1.0)

    def calibrate(self, scores: Any) -> np.ndarray:
        """Calibrated anomaly value in [0, 1]: ``1 - P(S_benign >= s)`` (0.999 at ``threshold_`` for q=1e-3)."""
        return 1.0 - self.tail_probability(scores)

    def predict(self, scores: Any) -> np.ndarray:
        """``1`` where the score exceeds ``threshold_``, else ``0`` (int array)."""
        self._check_fitted()
        return (np.asarray(scores, dtype=np.float64) > self.threshold_).astype(np.int64)

    def learn_one(self, score: float) -> bool:
        """Streaming SPOT step: returns True if ``score`` is flagged; flagged scores are *not* learned.

        A benign score above ``t`` becomes a peak and the GPD is refitted (Siffer et al., Alg. 1), so the
        threshold follows slow drift without being poisoned by the anomalies it flags. The empirical CDF
        (``sorted_scores_``) is not updated.
        """
        self._check_fitted()
        s = float(score)
        if not math.isfinite(s):
            raise ValueError(f"score={score!r} is invalid: expected a finite number")
        if s > self.threshold_:
            return True
        self.n_ += 1
        if s > self.init_threshold_:
            self.peaks_ = np.append(self.peaks_, s - self.init_threshold_)
            self._refit()
        return False

    # -- persistence ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters and fitted state."""
        self._check_fitted()
        return {"kind": "spot", "params": self.get_params(), "threshold": self.threshold_,
                "init_threshold": self.init_threshold_, "gamma": self.gamma_, "sigma": self.sigma_,
                "n": self.n_, "method": self.method_, "peaks": self.peaks_.tolist(),
                "sorted_scores": self.sorted_scores_.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SPOTThreshold:
        """Inverse of :meth:`to_dict`."""
        th = cls(**d["params"])
        th.threshold_ = float(d["threshold"])
        th.init_threshold_ = float(d["init_threshold"])
        th.gamma_, th.sigma_ = float(d["gamma"]), float(d["sigma"])
        th.n_, th.method_ = int(d["n"]), str(d["method"])
        th.peaks_ = np.asarray(d["peaks"], dtype=np.float64)
        th.sorted_scores_ = np.asarray(d["sorted_scores"], dtype=np.float64)
        return th


class GaussianThreshold:
    """``mean + k·std`` of benign scores — the reference rule SPOT is compared with.

    Parameters
    ----------
    k : float, default 3.0
        Number of standard deviations.

    Attributes
    ----------
    threshold_ : float
    mean_, std_ : float
    """

    def __init__(self, k: float = 3.0):
        self.k = k

    def fit(self, scores: Any) -> GaussianThreshold:
        """Fit on benign scores ``(n,)``."""
        s = _check_scores(scores)
        self.mean_, self.std_ = float(s.mean()), float(s.std())
        self.threshold_ = self.mean_ + float(self.k) * self.std_
        return self

    def predict(self, scores: Any) -> np.ndarray:
        """``1`` above ``threshold_``, else ``0``."""
        if not hasattr(self, "threshold_"):
            raise NotFittedError("GaussianThreshold is not fitted: call fit(benign_scores) first")
        return (np.asarray(scores, dtype=np.float64) > self.threshold_).astype(np.int64)
