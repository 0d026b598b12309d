"""Baselines (Kitsune-style ensemble, LSTM autoencoder, Isolation Forest): real detection checks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from edge.scorer import NotFittedError
from edge.site_model import average_linkage, correlation_groups
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


def _scipy_groups(dist: np.ndarray, max_size: int) -> list[list[int]]:
    """The same top-down cut on scipy's average-linkage dendrogram (the reference)."""
    from scipy.cluster.hierarchy import linkage, to_tree
    from scipy.spatial.distance import squareform

    stack, groups = [to_tree(linkage(squareform(dist, checks=False), method="average"))], []
    while stack:
        node = stack.pop()
        if node.get_count() <= max_size:
            groups.append(sorted(node.pre_order()))
        else:
            stack.extend([node.get_right(), node.get_left()])
    return sorted(groups)


@pytest.mark.parametrize("seed", range(5))
def test_average_linkage_matches_scipy(seed):
    pytest.importorskip("scipy")
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 40)) @ rng.normal(size=(40, 40)) * rng.uniform(0.1, 3.0, size=40)
    corr = np.corrcoef(X, rowvar=False)
    dist = np.clip(1.0 - np.abs(corr), 0.0, None)
    np.fill_diagonal(dist, 0.0)
    dist = (dist + dist.T) / 2.0
    children, root = average_linkage(dist)
    assert root == 2 * 40 - 2 and len(children) == 39
    # the same merge heights: every merge of ours at the height scipy gives it
    heights = np.sort(linkage(squareform(dist, checks=False), method="average")[:, 2])
    ours = [dist[np.ix_(_leaves(children, a, 40), _leaves(children, b, 40))].mean() for a, b in children.values()]
    np.testing.assert_allclose(np.sort(ours), heights, rtol=1e-9)
    for m in (2, 4, 7, 16):
        assert correlation_groups(X, m) == _scipy_groups(dist, m)


@pytest.mark.parametrize("seed", range(40))
def test_correlation_groups_break_ties_as_scipy(seed):
    """Grace windows hold many constant statistics (all at distance 1 from everything) and exact copies
    (distance 0): the groups must still be scipy's, so a site model fitted here matches one fitted in training."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    X = np.round(rng.normal(size=(12, 64)), 0)
    X[:, rng.choice(64, 25, replace=False)] = 0.0
    X[:, 5] = 2 * X[:, 6]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(X, rowvar=False), nan=0.0)
    dist = 1.0 - np.abs(corr)
    np.fill_diagonal(dist, 0.0)
    dist = np.clip((dist + dist.T) / 2.0, 0.0, None)
    for m in (3, 5, 10):
        assert correlation_groups(X, m) == _scipy_groups(dist, m)


def _leaves(children: dict, node: int, n: int) -> list[int]:
    return [node] if node < n else _leaves(children, children[node][0], n) + _leaves(children, children[node][1], n)


def test_average_linkage_edge_cases():
    assert average_linkage(np.zeros((1, 1))) == ({}, 0)
    assert average_linkage(np.array([[0.0, 0.3], [0.3, 0.0]])) == ({2: (0, 1)}, 2)
    with pytest.raises(ValueError, match="square"):
        average_linkage(np.zeros((2, 3)))


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
