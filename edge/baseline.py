"""The site baseline: what "normal" means on *this* network, learned from its own traffic without labels.

A policy trained on a few networks reads "a different network" as "an attack" when the window statistics
are standardised with the training networks' scaler (DESIGN.md › "Why the site baseline"). Every detection
path therefore standardises a site's windows against a baseline learned from that site alone, the way
Kitsune learns its normal model in a grace period (Mirsky et al., NDSS 2018) — in training exactly as in
deployment.

Life of a baseline
------------------
1. **Grace period** (default :data:`DEFAULT_GRACE_S` = 60 s of site time, and at least
   :data:`DEFAULT_MIN_GRACE_WINDOWS` windows). The windows of the site are collected; no Observation is
   made and no policy alert can be raised (nothing is decided while a site is learning).
2. **Fit.** When the grace period is over, robust statistics of the signed-``log1p`` compressed window
   statistics ``c(x) = sign(x)·log1p(|x|)`` are computed per feature:

   * centre = median;
   * scale = max(1.4826·MAD, (q90 − q10) / 2.5631, :data:`MIN_SCALE`) — the MAD and the 10–90 %
     range are both consistent estimators of σ for a normal distribution; taking the larger keeps
     a statistic that is non-zero in more than ~10 % of windows (a device's periodic DHCP or NTP)
     from getting a near-zero scale, and the floor keeps a statistic that is always 0 from turning
     one packet into an extreme value.

   Median, MAD and the 10–90 % range ignore a minority of attack windows inside the grace period
   (``tests/test_baseline.py``). Before the fit, **burst slots** are left out: a window slot whose
   site-wide total of packets or of new flows is more than :data:`BURST_FACTOR` times the grace period's
   median slot total (a flood, a sweep) — at most half of the slots and of the windows; without that, an
   attacker busy during the grace period would get its attack traffic as its own baseline. With a temporal scorer, the grace period's windows are also scored
   when it ends (their scores against the robust :class:`ScoreBaseline`); windows the scorer flags
   (standardised score ≥ :data:`edge.online.GRACE_CLEAN_Z`), at most half of them, are left out and the
   statistics fitted again — an attack that fills much of the grace period (a subnet scan touches every
   device) is then mostly kept out of the baseline.
3. **Scope rule** (per device where a device has enough history, per site otherwise): a device with at
   least ``min_device_windows`` windows (default 6, i.e. 30 s of activity) gets its own centre and
   scale; its scale is floored at ``device_scale_floor`` (default 0.5) times the site's scale, so a
   device that was very regular during the grace period does not turn ordinary variation into large
   deviations. Every other device — a quiet one, or one first seen after the grace period — uses the
   site statistics (pooled over all devices' windows) until it has collected ``min_device_windows``
   windows that raised no alert; then its own statistics are fitted from those windows.
4. **Slow update** (never from flagged windows). After the grace period, each window that raised no
   alert — and is not far from the site's grace period by the site anomaly model (site score ≤
   :data:`edge.online.LEARN_MAX_SITE_SCORE`; a window the policy let pass but unlike anything normal is
   more likely a missed attack) — updates its device's and its site's statistics by one Huber step (Huber 1964):
   ``ψ = clip(z, −k, k)``, ``centre += α·scale·ψ``, ``scale² ← (1 − α)·scale² + α·scale²·ψ² / β`` with
   ``k = 3`` and ``β = E[ψ²] ≈ 0.995`` under a normal law, so the fixed point of a stationary
   stream is its Huber location and scale. The weight ``α = 1 − 2^(−1 / half_life_windows)`` makes
   the statistics forget with a half-life of ``half_life_windows`` updates (default 720: one hour of
   a device active in every 5 s window; the site statistics see every device's windows and so adapt
   faster in wall time). Windows that raised an alert never update anything, so an attacker cannot
   teach the baseline its traffic by being detected (river's filter rule, STYLE.md).

The temporal scorer's raw scores get a baseline of their own (:class:`ScoreBaseline`): lower quantiles of
the grace-period windows' scores (attacks only raise a score), then a slow quantile-tracking update. It finds
attack episodes inside the grace period (windows scoring far above the site's usual score, :mod:`edge.online`).
The scorer's threshold applies to its raw scores, whose input is already site-standardised
(:meth:`edge.observation.FusionPipeline.calibrate_raw`); only checkpoints written before score units were
recorded apply it to scores standardised by this baseline.

State is a small JSON document (:meth:`SiteBaseline.to_dict`), persisted per site by the edge daemon so a
restarted edge resumes with the learned baseline (:func:`save_baseline`, :func:`load_baseline`).

References
----------
Mirsky, Y. et al. "Kitsune: An Ensemble of Autoencoders for Online Network Intrusion Detection." NDSS 2018
(grace periods). Huber, P. J. "Robust Estimation of a Location Parameter." Ann. Math. Statist. 1964.
Rousseeuw, P. J. and Croux, C. "Alternatives to the Median Absolute Deviation." JASA 1993 (MAD, 1.4826).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Default grace period, seconds of site time.
DEFAULT_GRACE_S = 60.0
#: Fewest windows a grace period holds (a quiet site learns for longer than ``grace_s``).
DEFAULT_MIN_GRACE_WINDOWS = 12
#: Windows a device needs for its own statistics.
DEFAULT_MIN_DEVICE_WINDOWS = 6
#: Half-life of the slow update, in updates (windows that raised no alert).
DEFAULT_HALF_LIFE_WINDOWS = 720.0
#: Floor of every scale, in ``log1p`` units (a 0 → 1 count change is then at most ~7 scales).
MIN_SCALE = 0.1
#: Floor of a device's scale, as a share of the site's scale.
DEFAULT_DEVICE_SCALE_FLOOR = 0.5
#: Huber clip ``k`` of the slow update and ``E[clip(Z, −k, k)²]`` for a standard normal ``Z``.
HUBER_K = 3.0
HUBER_BETA = 2 * (0.5 - HUBER_K * math.exp(-HUBER_K**2 / 2) / math.sqrt(2 * math.pi) - (1 - math.erf(HUBER_K / math.sqrt(2))) / 2) \
    + HUBER_K**2 * (1 - math.erf(HUBER_K / math.sqrt(2)))
#: σ-consistency factors: MAD · 1.4826 and (q90 − q10) / 2.5631 estimate σ of a normal law.
MAD_TO_SIGMA = 1.4826
Q10_90_TO_SIGMA = 2.5631
#: A grace-period slot is a burst when its site-wide packets or new flows exceed this many times the median.
BURST_FACTOR = 4.0
#: Version of the persisted state.
STATE_VERSION = 1


def compress(x: np.ndarray) -> np.ndarray:
    """Signed ``log1p``: ``sign(x)·log1p(|x|)`` (float64, same shape) — counts, bytes and rates have heavy
    right tails; this brings them to comparable ranges before robust standardisation."""
    a = np.asarray(x, dtype=np.float64)
    return np.sign(a) * np.log1p(np.abs(a))


def expand(c: np.ndarray) -> np.ndarray:
    """Inverse of :func:`compress` (back to the statistic's own unit)."""
    a = np.asarray(c, dtype=np.float64)
    return np.sign(a) * np.expm1(np.abs(a))


def robust_location_scale(c: np.ndarray, min_scale: float | np.ndarray = MIN_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust scale of each column of ``c`` ``(n, F)`` (module docstring, step 2).

    Raises
    ------
    ValueError
        If ``c`` is not 2-D with at least one row.
    """
    a = np.asarray(c, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, F) array, got shape {a.shape}")
    center = np.median(a, axis=0)
    mad = np.median(np.abs(a - center), axis=0) * MAD_TO_SIGMA
    q10, q90 = np.quantile(a, [0.10, 0.90], axis=0)
    scale = np.maximum(np.maximum(mad, (q90 - q10) / Q10_90_TO_SIGMA), min_scale)
    return center, scale


@dataclass
class RobustStats:
    """Centre and scale of F statistics (compressed units) and how many updates they have seen.

    Attributes
    ----------
    center, scale : ndarray, shape (F,)
    n : int
        Windows fitted plus slow updates.
    """

    center: np.ndarray
    scale: np.ndarray
    n: int

    def huber_update(self, c: np.ndarray, alpha: float, min_scale: np.ndarray | float) -> None:
        """One slow-update step with the compressed statistics ``c`` ``(F,)`` (module docstring, step 4)."""
        psi = np.clip((c - self.center) / self.scale, -HUBER_K, HUBER_K)
        self.center = self.center + alpha * self.scale * psi
        var = (1 - alpha) * self.scale**2 + alpha * self.scale**2 * psi**2 / HUBER_BETA
        self.scale = np.maximum(np.sqrt(var), min_scale)
        self.n += 1

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"center": self.center.tolist(), "scale": self.scale.tolist(), "n": int(self.n)}

    @classmethod
    def from_dict(cls, d: dict) -> RobustStats:
        """Inverse of :meth:`to_dict`."""
        return cls(np.asarray(d["center"], np.float64), np.asarray(d["scale"], np.float64), int(d["n"]))


def grace_notice(decided: int, learning: int, grace_s: float | None = None) -> str | None:
    """What to tell a user whose capture was all grace period, or None when some window was decided.

    Parameters
    ----------
    decided : int
        Windows decided (after their site's grace period).
    learning : int
        Windows that fell in a grace period (learned the site baseline, not decided).
    grace_s : float, optional
        The grace period asked for (``--grace``), seconds; None: the policy's own (saved with its fusion
        pipeline; the bundled defender's is :data:`DEFAULT_GRACE_S`), which the sentence then names without a
        number rather than guess it.

    Returns
    -------
    str or None
        One sentence naming the rule (the grace seconds of site time and at least
        :data:`DEFAULT_MIN_GRACE_WINDOWS` windows by default) and what to do, when ``decided`` is 0 and
        ``learning`` is not.
    """
    if decided or not learning:
        return None
    length = "the policy's grace period" if grace_s is None else f"{float(grace_s):g} s"
    return (f"all {learning} windows fell in their site's grace period ({length} of the site's traffic and, by "
            f"default, at least {DEFAULT_MIN_GRACE_WINDOWS} windows), so nothing was decided: a site first learns its "
            f"baseline from its own traffic. Give a capture that runs past the grace period, or a shorter --grace.")


def _check_positive(name: str, value: Any, *, integer: bool = False) -> None:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(float(value)) and value > 0
    if ok and integer:
        ok = float(value) == int(value)
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} is invalid: expected {kind} > 0")


class SiteBaseline:
    """Robust per-site / per-device baseline of one site's window statistics (module docstring).

    Parameters
    ----------
    n_features : int
        ``F``, statistics per window (:data:`edge.features.N_FEATURES`).
    grace_s : float, default 60
        Grace period in seconds of site time (from the site's first window).
    min_grace_windows : int, default 12
        The grace period also lasts until this many windows were seen.
    min_device_windows : int, default 6
        Windows a device needs for its own statistics.
    half_life_windows : float, default 720
        Half-life of the slow update, in updates.
    device_scale_floor : float, default 0.5
        A device's scale is at least this share of the site's scale.
    min_scale : float, default 0.1
        Floor of every scale (compressed units).
    scale_floor : sequence of float, optional
        Per-feature floor of the scale (compressed units), above ``min_scale``.
    burst_features : sequence of int, optional
        Indices of the statistics whose site-wide slot totals detect burst slots (packets, new flows);
        none: no burst rejection.

    Attributes
    ----------
    t0_ : float or None
        ``t_start`` of the site's first window (epoch s).
    fitted_ : bool
        The grace period is over and the statistics exist.
    site_ : RobustStats or None
    devices_ : dict of str → RobustStats
    fitted_at_ : float or None
        ``t_start`` of the first window after the grace period.

    Raises
    ------
    ValueError
        For non-positive settings.

    Examples
    --------
    >>> import numpy as np
    >>> b = SiteBaseline(n_features=2, grace_s=10, min_grace_windows=3)
    >>> b.add_grace(["d1", "d1", "d1"], np.array([0.0, 5.0, 10.0]), np.array([[1, 0], [2, 0], [3, 0]]))
    >>> b.ready(15.0)
    True
    >>> _ = b.fit()
    >>> z, _, _ = b.transform(["d1"], np.array([[2.0, 0.0]]))
    >>> float(z[0, 0]), float(z[0, 1])
    (0.0, 0.0)
    """

    def __init__(self, n_features: int, *, grace_s: float = DEFAULT_GRACE_S,
                 min_grace_windows: int = DEFAULT_MIN_GRACE_WINDOWS,
                 min_device_windows: int = DEFAULT_MIN_DEVICE_WINDOWS,
                 half_life_windows: float = DEFAULT_HALF_LIFE_WINDOWS,
                 device_scale_floor: float = DEFAULT_DEVICE_SCALE_FLOOR, min_scale: float = MIN_SCALE,
                 scale_floor: Sequence[float] | None = None, burst_features: Sequence[int] | None = None) -> None:
        _check_positive("n_features", n_features, integer=True)
        if not (isinstance(grace_s, (int, float)) and math.isfinite(grace_s) and grace_s >= 0):
            raise ValueError(f"grace_s={grace_s!r} is invalid: expected a number of seconds >= 0")
        _check_positive("min_grace_windows", min_grace_windows, integer=True)
        _check_positive("min_device_windows", min_device_windows, integer=True)
        _check_positive("half_life_windows", half_life_windows)
        _check_positive("min_scale", min_scale)
        if not (isinstance(device_scale_floor, (int, float)) and 0 <= device_scale_floor <= 1):
            raise ValueError(f"device_scale_floor={device_scale_floor!r} is invalid: expected a number in [0, 1]")
        self.n_features = int(n_features)
        self.grace_s = float(grace_s)
        self.min_grace_windows = int(min_grace_windows)
        self.min_device_windows = int(min_device_windows)
        self.half_life_windows = float(half_life_windows)
        self.device_scale_floor = float(device_scale_floor)
        self.min_scale = float(min_scale)
        self.scale_floor = None if scale_floor is None else [float(v) for v in scale_floor]
        self.burst_features = None if burst_features is None else [int(i) for i in burst_features]
        if self.burst_features is not None and not all(0 <= i < self.n_features for i in self.burst_features):
            raise ValueError(f"burst_features must be indices in [0, {self.n_features})")
        if self.scale_floor is not None and (len(self.scale_floor) != self.n_features
                                             or not all(math.isfinite(v) and v >= 0 for v in self.scale_floor)):
            raise ValueError(f"scale_floor must hold {self.n_features} finite numbers >= 0")
        self._floor = np.maximum(self.min_scale, np.asarray(self.scale_floor if self.scale_floor is not None
                                                            else [0.0] * self.n_features, np.float64))
        self.t0_: float | None = None
        self.fitted_ = False
        self.fitted_at_: float | None = None
        self.site_: RobustStats | None = None
        self.devices_: dict[str, RobustStats] = {}
        self._grace: list[tuple[str, float, np.ndarray]] = []  # (device, t_start, compressed x)
        self._pending: dict[str, list[np.ndarray]] = {}  # devices without own stats: compressed windows

    # -- settings ----------------------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Constructor parameters."""
        return {"n_features": self.n_features, "grace_s": self.grace_s, "min_grace_windows": self.min_grace_windows,
                "min_device_windows": self.min_device_windows, "half_life_windows": self.half_life_windows,
                "device_scale_floor": self.device_scale_floor, "min_scale": self.min_scale,
                "scale_floor": self.scale_floor, "burst_features": self.burst_features}

    @property
    def alpha(self) -> float:
        """Weight of one slow-update step, ``1 − 2^(−1 / half_life_windows)``."""
        return 1.0 - 2.0 ** (-1.0 / self.half_life_windows)

    # -- grace period ------------------------------------------------------------------------------
    def _check_x(self, x: np.ndarray, n: int) -> np.ndarray:
        a = np.asarray(x, dtype=np.float64)
        if a.shape != (n, self.n_features):
            raise ValueError(f"window statistics must have shape ({n}, {self.n_features}), got {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError("window statistics hold NaN or infinite values")
        return a

    def add_grace(self, device_ids: Sequence[str], t_start: np.ndarray, x: np.ndarray) -> None:
        """Collect windows of the grace period.

        Parameters
        ----------
        device_ids : sequence of str, length n
        t_start : ndarray, shape (n,)
            Window starts, epoch s.
        x : ndarray, shape (n, F)
            Raw window statistics (units in the feature names).

        Raises
        ------
        RuntimeError
            If the baseline is already fitted.
        ValueError
            For mismatched shapes or non-finite values.
        """
        if self.fitted_:
            raise RuntimeError("the grace period is over: use transform/update")
        t = np.asarray(t_start, dtype=np.float64).reshape(-1)
        a = self._check_x(x, len(t))
        if len(device_ids) != len(t):
            raise ValueError(f"{len(device_ids)} device ids for {len(t)} windows")
        if len(t) and self.t0_ is None:
            self.t0_ = float(t.min())
        c = compress(a)
        for d, ti, ci in zip(device_ids, t, c):
            self._grace.append((str(d), float(ti), ci))

    def note_start(self, t_start: float) -> None:
        """Start the grace clock at ``t_start`` (epoch s) if it has not started (a slot without windows)."""
        if self.t0_ is None:
            self.t0_ = float(t_start)

    def grace_elapsed(self, t_now: float) -> float:
        """Seconds of site time since the first window (0 before any)."""
        return 0.0 if self.t0_ is None else max(0.0, float(t_now) - self.t0_)

    @property
    def grace_windows(self) -> int:
        """Windows collected in the grace period."""
        return len(self._grace)

    def ready(self, t_now: float) -> bool:
        """True when the grace period is over at site time ``t_now`` (epoch s): ``grace_s`` elapsed and
        ``min_grace_windows`` windows seen."""
        return (not self.fitted_ and self.t0_ is not None and self.grace_elapsed(t_now) >= self.grace_s - 1e-9
                and len(self._grace) >= self.min_grace_windows)

    def grace_state(self) -> list[tuple[str, float, np.ndarray]]:
        """The collected grace windows as stored (device, t_start, compressed statistics)."""
        return list(self._grace)

    def grace_rows(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The collected grace windows: device ids, ``t_start`` ``(n,)`` and raw statistics ``(n, F)``."""
        if not self._grace:
            return [], np.zeros(0), np.zeros((0, self.n_features))
        devs = [g[0] for g in self._grace]
        t = np.array([g[1] for g in self._grace])
        return devs, t, expand(np.stack([g[2] for g in self._grace]))

    def fit(self, t_now: float | None = None, keep: np.ndarray | None = None) -> SiteBaseline:
        """End the grace period: fit site and device statistics from the collected windows.

        Parameters
        ----------
        t_now : float, optional
            Site time the baseline takes effect (recorded as ``fitted_at_``).
        keep : ndarray of bool, optional
            Which collected windows (in :meth:`grace_rows` order) to fit on; default all. Used to leave out
            grace-period windows the temporal scorer flagged (:class:`edge.online.SiteFusion`).

        Raises
        ------
        RuntimeError
            If no window was collected (or kept) or it is already fitted.
        """
        if self.fitted_:
            raise RuntimeError("the baseline is already fitted")
        if keep is None:
            keep = self.burst_keep()
        rows = self._grace if keep is None else [g for g, k in zip(self._grace, keep) if k]
        if not rows:
            raise RuntimeError("no window was collected in the grace period")
        c = np.stack([g[2] for g in rows])
        center, scale = robust_location_scale(c, self._floor)
        self.site_ = RobustStats(center, scale, len(c))
        by_dev: dict[str, list[np.ndarray]] = {}
        for d, _, ci in rows:
            by_dev.setdefault(d, []).append(ci)
        for d, rows in by_dev.items():
            if len(rows) >= self.min_device_windows:
                self._fit_device(d, np.stack(rows))
            else:
                self._pending[d] = rows
        self._grace = []
        self.fitted_ = True
        self.fitted_at_ = None if t_now is None else float(t_now)
        return self

    def burst_keep(self) -> np.ndarray | None:
        """``(n,)`` mask of the grace windows outside burst slots (module docstring), or None (keep all)."""
        if not self.burst_features or len(self._grace) < 2:
            return None
        t = np.array([g[1] for g in self._grace])
        x = expand(np.stack([g[2][self.burst_features] for g in self._grace]))
        slots, inv = np.unique(t, return_inverse=True)
        totals = np.zeros((len(slots), x.shape[1]))
        np.add.at(totals, inv, np.maximum(x, 0))
        busy = (totals > BURST_FACTOR * np.maximum(np.median(totals, axis=0), 1.0)).any(axis=1)
        keep = ~busy[inv]
        if not busy.any() or busy.sum() > len(slots) / 2 or keep.sum() < max(len(keep) / 2, self.min_grace_windows / 2):
            return None
        return keep

    def refit(self, keep: np.ndarray) -> SiteBaseline:
        """Fit again, right after :meth:`fit`, on the grace windows ``keep`` (``grace_rows`` order of the
        original fit); the collected windows must be passed back through :meth:`restore_grace` first."""
        self.fitted_ = False
        self.site_, self.devices_, self._pending = None, {}, {}
        return self.fit(self.fitted_at_, keep)

    def restore_grace(self, rows: list[tuple[str, float, np.ndarray]]) -> None:
        """Put back grace windows ``(device, t_start, compressed x)`` (for :meth:`refit`)."""
        self._grace = list(rows)

    def _fit_device(self, device: str, c: np.ndarray) -> None:
        center, scale = robust_location_scale(c, self._floor)
        scale = np.maximum(scale, self.device_scale_floor * self.site_.scale)
        self.devices_[device] = RobustStats(center, scale, len(c))

    # -- after the grace period --------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise RuntimeError("the site baseline is still learning (grace period): no standardised values yet")

    def stats_for(self, device_id: str) -> tuple[RobustStats, str]:
        """The statistics used for ``device_id`` and their scope (``"device"`` or ``"site"``)."""
        self._check_fitted()
        s = self.devices_.get(str(device_id))
        return (s, "device") if s is not None else (self.site_, "site")

    def transform(self, device_ids: Sequence[str], x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Standardise windows against the baseline.

        Parameters
        ----------
        device_ids : sequence of str, length n
        x : ndarray, shape (n, F)
            Raw window statistics.

        Returns
        -------
        z : ndarray of float32, shape (n, F)
            ``(c(x) − centre) / scale`` (unclipped).
        baseline : ndarray of float64, shape (n, F)
            The centre in the statistics' own units (``expand(centre)``): the "normal value" shown as
            evidence.
        spread : ndarray of float64, shape (n, F)
            Half the width of ``centre ± scale`` in the statistics' own units.

        Raises
        ------
        RuntimeError
            While the site is learning.
        ValueError
            For mismatched shapes or non-finite values.
        """
        self._check_fitted()
        a = self._check_x(x, len(device_ids))
        n = len(device_ids)
        center = np.empty((n, self.n_features))
        scale = np.empty((n, self.n_features))
        for i, d in enumerate(device_ids):
            s, _ = self.stats_for(d)
            center[i], scale[i] = s.center, s.scale
        z = ((compress(a) - center) / scale).astype(np.float32)
        spread = (expand(center + scale) - expand(center - scale)) / 2
        return z, expand(center), spread

    def update(self, device_ids: Sequence[str], x: np.ndarray) -> None:
        """Slow update from windows that raised **no** alert (module docstring, step 4).

        Call it only with windows whose decision was "no alert"; flagged windows must never reach it.

        Raises
        ------
        RuntimeError
            While the site is learning.
        """
        self._check_fitted()
        a = self._check_x(x, len(device_ids))
        alpha = self.alpha
        for d, ci in zip(device_ids, compress(a)):
            d = str(d)
            self.site_.huber_update(ci, alpha, self._floor)
            own = self.devices_.get(d)
            if own is not None:
                own.huber_update(ci, alpha, np.maximum(self._floor, self.device_scale_floor * self.site_.scale))
                continue
            rows = self._pending.setdefault(d, [])
            rows.append(ci)
            if len(rows) >= self.min_device_windows:
                self._fit_device(d, np.stack(rows))
                del self._pending[d]

    # -- state -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready state (settings, statistics, grace and pending windows in compressed units)."""
        return {"version": STATE_VERSION, "params": self.get_params(), "t0": self.t0_, "fitted": self.fitted_,
                "fitted_at": self.fitted_at_, "site": self.site_.to_dict() if self.site_ else None,
                "devices": {d: s.to_dict() for d, s in self.devices_.items()},
                "grace": [[d, t, c.tolist()] for d, t, c in self._grace],
                "pending": {d: [c.tolist() for c in rows] for d, rows in self._pending.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> SiteBaseline:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            For a document of another version or with arrays of the wrong length.
        """
        if not isinstance(d, dict) or d.get("version") != STATE_VERSION:
            raise ValueError(f"not a site-baseline state of version {STATE_VERSION}")
        try:
            b = cls(**d["params"])
            b.t0_ = None if d["t0"] is None else float(d["t0"])
            b.fitted_ = bool(d["fitted"])
            b.fitted_at_ = None if d.get("fitted_at") is None else float(d["fitted_at"])
            b.site_ = RobustStats.from_dict(d["site"]) if d["site"] else None
            b.devices_ = {k: RobustStats.from_dict(v) for k, v in d["devices"].items()}
            b._grace = [(str(g[0]), float(g[1]), np.asarray(g[2], np.float64)) for g in d["grace"]]
            b._pending = {k: [np.asarray(r, np.float64) for r in v] for k, v in d["pending"].items()}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"corrupt site-baseline state ({exc!r})") from exc
        f = b.n_features
        arrays = [s.center for s in b.devices_.values()] + [s.scale for s in b.devices_.values()]
        arrays += [g[2] for g in b._grace] + [r for v in b._pending.values() for r in v]
        if b.site_ is not None:
            arrays += [b.site_.center, b.site_.scale]
        if any(a.shape != (f,) for a in arrays) or (b.fitted_ and b.site_ is None):
            raise ValueError(f"corrupt site-baseline state: arrays are not of length {f}")
        return b


class ScoreBaseline:
    """Where one site's temporal-scorer raw scores usually lie: lower quantiles of the grace period's scores,
    then a slow quantile-tracking update.

    Attacks only ever *raise* an anomaly score, so the baseline is read from the lower part of the
    distribution, which attack windows inside the grace period do not reach: location = the 25 % quantile,
    scale = (q25 − q05) / 0.9693 (σ of a normal law), floored at ``min_scale``. Up to ~70 % of the grace
    period's windows could be attack windows and these quantiles would still come from benign ones.
    ``(raw − location) / scale`` marks grace-period windows far above the site's usual score (an attack
    inside the grace period, :data:`edge.online.GRACE_CLEAN_Z`); it is not a unit for the threshold (since
    ``score_units`` ``"raw"``): the grace windows are standardised by a baseline fitted on themselves, so
    they score lower than any later window and a threshold in these units was out of reach on new networks
    (:meth:`edge.observation.FusionPipeline.calibrate_raw`). After the grace period, each window that raised
    no alert moves each quantile ``q_p`` by
    ``η·(p − 1[raw ≤ q_p])`` with ``η = 2·α·scale`` (stochastic quantile tracking; ``α`` as in
    :class:`SiteBaseline`).

    Parameters
    ----------
    min_scale : float
        Floor of the scale (raw score units), normally a share of the training sites' spread.
    half_life_windows : float
        As in :class:`SiteBaseline`.
    """

    QUANTILES = (0.05, 0.25)
    #: Φ⁻¹(0.25) − Φ⁻¹(0.05) for a standard normal law.
    SPREAD_TO_SIGMA = 0.9693

    def __init__(self, min_scale: float, half_life_windows: float = DEFAULT_HALF_LIFE_WINDOWS) -> None:
        _check_positive("min_scale", min_scale)
        _check_positive("half_life_windows", half_life_windows)
        self.min_scale = float(min_scale)
        self.half_life_windows = float(half_life_windows)
        self.q_: np.ndarray | None = None  # (q05, q25)
        self.n_ = 0

    @property
    def stats_(self) -> RobustStats | None:
        """Location and scale as :class:`RobustStats` (None before ``fit``)."""
        if self.q_ is None:
            return None
        scale = max((self.q_[1] - self.q_[0]) / self.SPREAD_TO_SIGMA, self.min_scale)
        return RobustStats(np.array([self.q_[1]]), np.array([scale]), self.n_)

    def fit(self, raw: np.ndarray) -> ScoreBaseline:
        """Fit on the raw scores ``(n,)`` of the grace period's windows.

        Raises
        ------
        ValueError
            If no finite score is given.
        """
        s = np.asarray(raw, dtype=np.float64).reshape(-1)
        s = s[np.isfinite(s)]
        if s.size == 0:
            raise ValueError("no finite score to fit the score baseline on")
        self.q_ = np.quantile(s, self.QUANTILES)
        self.n_ = int(s.size)
        return self

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """``(raw − location) / scale`` of scores ``(n,)`` (NaN stays NaN)."""
        st = self.stats_
        if st is None:
            raise RuntimeError("the score baseline is not fitted")
        return (np.asarray(raw, dtype=np.float64) - st.center[0]) / st.scale[0]

    def update(self, raw: np.ndarray) -> None:
        """Slow update from scores of windows that raised no alert (NaN scores are skipped)."""
        if self.q_ is None:
            raise RuntimeError("the score baseline is not fitted")
        alpha = 1.0 - 2.0 ** (-1.0 / self.half_life_windows)
        p = np.asarray(self.QUANTILES)
        for s in np.asarray(raw, dtype=np.float64).reshape(-1):
            if np.isfinite(s):
                eta = 2.0 * alpha * self.stats_.scale[0]
                self.q_ = self.q_ + eta * (p - (s <= self.q_))
                self.q_[1] = max(self.q_[1], self.q_[0])
                self.n_ += 1

    def to_dict(self) -> dict:
        """JSON-ready state."""
        return {"min_scale": self.min_scale, "half_life_windows": self.half_life_windows,
                "q": None if self.q_ is None else self.q_.tolist(), "n": self.n_}

    @classmethod
    def from_dict(cls, d: dict) -> ScoreBaseline:
        """Inverse of :meth:`to_dict`."""
        b = cls(float(d["min_scale"]), float(d["half_life_windows"]))
        b.q_ = None if d.get("q") is None else np.asarray(d["q"], np.float64)
        b.n_ = int(d.get("n", 0))
        return b


def save_state(path: str | Path, state: dict) -> None:
    """Write a JSON state atomically with mode 0600 (a temporary file renamed over ``path``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, p)


def load_state(path: str | Path) -> dict | None:
    """The JSON state at ``path``, or None when there is none.

    Raises
    ------
    ValueError
        If the file exists but is not JSON.
    """
    p = Path(path)
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: unreadable baseline state ({exc}); move it away to learn a new baseline") from exc
