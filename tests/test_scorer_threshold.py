"""SPOT (peaks-over-threshold) threshold vs the mean + 3σ rule on heavy-tailed benign scores."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from edge.scorer import GaussianThreshold, NotFittedError, SPOTThreshold

Q = 1e-3
GENERATORS = {
    "lognormal": lambda rng, n: rng.lognormal(0.0, 1.0, size=n),
    "pareto": lambda rng, n: rng.pareto(3.0, size=n),
    "student_t3": lambda rng, n: np.abs(rng.standard_t(3, size=n)),
}


@pytest.mark.parametrize("dist", sorted(GENERATORS))
@pytest.mark.parametrize("seed", [0, 1])
def test_spot_hits_target_fpr_where_gaussian_misses(dist, seed):
    rng = np.random.default_rng(seed)
    fit_scores = GENERATORS[dist](rng, 5000)
    fresh = GENERATORS[dist](rng, 400_000)      # unseen benign scores
    spot = SPOTThreshold(q=Q, level=0.98).fit(fit_scores)
    gauss = GaussianThreshold(k=3.0).fit(fit_scores)
    fpr_spot = np.mean(fresh > spot.threshold_)
    fpr_gauss = np.mean(fresh > gauss.threshold_)
    assert spot.method_ == "gpd" and spot.gamma_ > -0.1          # heavy (or exponential) tail found
    assert Q / 3 <= fpr_spot <= 3 * Q                            # within a factor 3 of the target
    assert fpr_gauss > 8 * Q                                     # mean+3σ: an order of magnitude off
    assert abs(np.log(fpr_spot / Q)) < abs(np.log(fpr_gauss / Q))


def test_calibrated_value_is_monotone_and_in_unit_interval():
    s = np.random.default_rng(0).lognormal(size=5000)
    th = SPOTThreshold(q=Q).fit(s)
    grid = np.linspace(0, 3 * th.threshold_, 500)
    c = th.calibrate(grid)
    assert ((c >= 0) & (c <= 1)).all() and (np.diff(c) >= -1e-12).all()
    np.testing.assert_allclose(th.calibrate([th.threshold_]), 1 - Q, atol=1e-9)
    # the calibrated value of fresh benign scores is ~uniform: ~10 % above 0.9
    fresh = np.random.default_rng(1).lognormal(size=50_000)
    assert 0.08 < np.mean(th.calibrate(fresh) > 0.9) < 0.12
    assert (th.predict([0.0, 10 * th.threshold_]) == [0, 1]).all()


def test_learn_one_skips_flagged_and_updates_peaks():
    th = SPOTThreshold(q=Q).fit(np.random.default_rng(0).lognormal(size=3000))
    n, peaks = th.n_, th.peaks_.size
    assert th.learn_one(th.threshold_ * 5) is True and th.n_ == n       # flagged: not learned
    assert th.learn_one(th.init_threshold_ * 1.01) is False
    assert th.n_ == n + 1 and th.peaks_.size == peaks + 1


def test_round_trip_dict():
    th = SPOTThreshold(q=0.01, level=0.9).fit(np.random.default_rng(0).exponential(size=1000))
    th2 = SPOTThreshold.from_dict(th.to_dict())
    grid = np.linspace(0, 10, 50)
    np.testing.assert_array_equal(th.calibrate(grid), th2.calibrate(grid))


@pytest.mark.parametrize("kwargs, match", [
    ({"q": 0.0}, "q=0.0"), ({"q": 0.5}, "q=0.5"), ({"level": 1.2}, "level"), ({"min_peaks": 1}, "min_peaks"),
])
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SPOTThreshold(**kwargs).fit(np.arange(100.0))


def test_bad_scores_and_not_fitted():
    with pytest.raises(ValueError, match="finite"):
        SPOTThreshold().fit([1.0, np.nan])
    with pytest.raises(NotFittedError):
        SPOTThreshold().predict([1.0])


def test_few_peaks_falls_back_to_empirical():
    th = SPOTThreshold(q=0.01, level=0.95, min_peaks=50).fit(np.arange(200.0))
    assert th.method_ == "empirical" and 196 <= th.threshold_ <= 199
