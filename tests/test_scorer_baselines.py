"""Baselines (Kitsune-style ensemble, LSTM autoencoder, Isolation Forest): real detection checks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edge.scorer import NotFittedError
from edge.site_model import correlation_groups
from training.scorer.baselines import IsolationForestScorer, KitsuneEnsemble, LSTMAutoencoder

T = 6


def benign(n: int, seed: int) -> np.ndarray:
    """Three latent drivers, each behind four correlated features, plus two noise features."""
    rng = np.random.default_rng(seed)
    z = rng.lognormal(2.0, 0.3, size=(n, T, 3))
    cols = []
    for k in range(3):
        for scale in (1.0, 2.0, 5.0, 0.5):
            cols.append(z[..., k] * scale * rng.lognormal(0, 0.05, size=(n, T)))
    cols += [rng.uniform(0, 1, size=(n, T)), rng.uniform(0, 1, size=(n, T))]
    return np.stack(cols, axis=-1).astype(np.float32)


def inject(X: np.ndarray) -> np.ndarray:
    """A flood in the last window: group 0 scales up ×15, one feature of group 1 breaks its correlation."""
    A = X.copy()
    A[:, -1, [0, 1, 2, 3, 4]] *= 15.0
    return A


def test_correlation_groups_recover_latent_structure():
    X = benign(800, 0)[:, -1, :]
    groups = correlation_groups(np.log1p(X), max_size=4)
    assert sorted(i for g in groups for i in g) == list(range(14))
    assert all(len(g) <= 4 for g in groups)
    for block in ([0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]):
        assert block in groups


@pytest.mark.parametrize("make", [
    lambda: KitsuneEnsemble(max_group=4, epochs=15, seed=0),
    lambda: LSTMAutoencoder(hidden_size=16, epochs=15, seed=0),
    lambda: IsolationForestScorer(n_estimators=100, seed=0),
], ids=["kitsune", "lstm_ae", "iforest"])
def test_baseline_scores_injected_anomalies_above_normal(make):
    model = make().fit(benign(600, 1))
    s_norm = model.score_samples(benign(200, 2))
    s_anom = model.score_samples(inject(benign(200, 3)))
    assert s_norm.shape == s_anom.shape == (200,)
    # most injected sequences score above the 95th percentile of the normal ones
    assert np.mean(s_anom > np.quantile(s_norm, 0.95)) > 0.9
    with pytest.raises(ValueError, match="F=13"):
        model.score_samples(benign(3, 4)[..., :13])


def test_baselines_deterministic_and_not_fitted():
    X = benign(150, 5)
    a = KitsuneEnsemble(max_group=4, epochs=2, seed=1).fit(X).score_samples(X[:5])
    b = KitsuneEnsemble(max_group=4, epochs=2, seed=1).fit(X).score_samples(X[:5])
    np.testing.assert_array_equal(a, b)
    for cls in (KitsuneEnsemble, LSTMAutoencoder, IsolationForestScorer):
        with pytest.raises(NotFittedError):
            cls().score_samples(X)


@pytest.mark.parametrize("kwargs, match", [({"max_group": 1}, "max_group"), ({"hidden_ratio": 0}, "hidden_ratio")])
def test_kitsune_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        KitsuneEnsemble(**kwargs).fit(benign(10, 0))


def test_lstm_ae_score_on():
    X = benign(100, 6)
    with pytest.raises(ValueError, match="score_on"):
        LSTMAutoencoder(score_on="max", epochs=1).fit(X)
    last = LSTMAutoencoder(hidden_size=8, epochs=2, score_on="last", seed=0).fit(X).score_samples(X[:4])
    seq = LSTMAutoencoder(hidden_size=8, epochs=2, score_on="sequence", seed=0).fit(X).score_samples(X[:4])
    assert last.shape == seq.shape == (4,) and not np.allclose(last, seq)
