"""Temporal scorer: shapes, attention, determinism, sequences, checkpoints, ONNX parity, explanations."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from edge.scorer import (
    CheckpointError,
    NotFittedError,
    OnnxScorer,
    SPOTThreshold,
    TemporalScorer,
    build_sequences,
    explain,
    export_onnx,
    load_checkpoint,
    save_checkpoint,
    time_split,
)

T, F = 12, 6


def benign(n: int, seed: int) -> np.ndarray:
    """Periodic per-device traffic: rates follow a sine of random phase, sizes stay stable."""
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1))
    t = np.arange(T)[None, :]
    rate = 50 + 30 * np.sin(phase + t * 0.6)
    X = np.stack([rate, rate * 80, rate * 0.5, np.full_like(rate, 3.0), 80 + 0 * rate, 0.1 + 0 * rate], axis=-1)
    X = X * rng.lognormal(0, 0.05, size=X.shape)
    return X.astype(np.float32)


@pytest.fixture(scope="module")
def fitted() -> TemporalScorer:
    return TemporalScorer(hidden_size=16, n_heads=2, epochs=25, batch_size=64, seed=3).fit(
        benign(600, 0), feature_names=[f"feat{i}" for i in range(F)])


def test_shapes_and_attention_sums_to_one(fitted):
    X = benign(10, 1)
    scores, attn = fitted.score_with_attention(X)
    assert scores.shape == (10,)
    assert attn.shape == (10, 2, T)
    np.testing.assert_allclose(attn.sum(axis=-1), 1.0, atol=1e-5)
    assert (attn >= 0).all()


def test_injected_anomalies_score_higher(fitted):
    normal = benign(200, 7)
    bad = benign(200, 8)
    bad[:, -1, 0] *= 20          # packet burst in the current window
    bad[:, -1, 3] += 40          # many new peers
    s0, s1 = fitted.score_samples(normal), fitted.score_samples(bad)
    # every injected sequence outranks the 99th percentile of the normal ones
    assert np.mean(s1 > np.quantile(s0, 0.99)) > 0.95


def test_temporal_context_matters(fitted):
    """A window normal on its own but out of phase with the device's recent past scores higher."""
    X = benign(200, 11)
    shuffled = X.copy()
    shuffled[:, -1, :] = X[::-1, -1, :]          # last window from another device's phase
    assert np.median(fitted.score_samples(shuffled)) > 1.5 * np.median(fitted.score_samples(X))


def test_determinism_with_seed():
    X = benign(120, 2)
    a = TemporalScorer(hidden_size=8, n_heads=2, epochs=2, seed=5).fit(X).score_samples(X[:5])
    b = TemporalScorer(hidden_size=8, n_heads=2, epochs=2, seed=5).fit(X).score_samples(X[:5])
    c = TemporalScorer(hidden_size=8, n_heads=2, epochs=2, seed=6).fit(X).score_samples(X[:5])
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_mc_dropout_uncertainty(fitted):
    mean, std = fitted.score_uncertainty(benign(5, 3), n_samples=8)
    assert mean.shape == std.shape == (5,)
    assert (std > 0).all()
    again = fitted.score_uncertainty(benign(5, 3), n_samples=8)
    np.testing.assert_array_equal(mean, again[0])
    # dropout is off again afterwards: plain scores are deterministic
    np.testing.assert_array_equal(fitted.score_samples(benign(3, 4)), fitted.score_samples(benign(3, 4)))


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_size": 30, "n_heads": 4}, "multiple of n_heads"),
    ({"hidden_size": 0}, "hidden_size"),
    ({"dropout": 1.5}, "dropout"),
    ({"epochs": -1}, "epochs"),
])
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TemporalScorer(**kwargs).fit(benign(4, 0))


@pytest.mark.parametrize("X, match", [
    (np.zeros((4, 6)), "3 dimensions"),
    (np.zeros((4, 1, 6)), "T >= 2"),
    (np.full((4, 3, 6), np.nan), "NaN"),
])
def test_bad_input(X, match):
    with pytest.raises(ValueError, match=match):
        TemporalScorer(epochs=1).fit(X)


def test_not_fitted_and_wrong_features(fitted):
    with pytest.raises(NotFittedError):
        TemporalScorer().score_samples(benign(2, 0))
    with pytest.raises(ValueError, match="F=5"):
        fitted.score_samples(benign(2, 0)[..., :5])


def _frame() -> pd.DataFrame:
    rows = []
    for dev, n in (("cam", 8), ("plug", 3)):
        for i in range(n):
            rows.append({"site_id": "s1", "device_id": dev, "t_start": 100.0 + 5 * i, "a": float(i),
                         "b": float(10 * i), "label": int(dev == "plug" and i == 2)})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)   # rows out of time order


def test_build_sequences_edge_and_skip():
    df = _frame()
    seq = build_sequences(df, 4, feature_names=["a", "b"], pad="edge")
    assert seq.X.shape == (11, 4, 2)
    assert len(seq.keys) == 11 and seq.y is not None and seq.y.sum() == 1
    cam = [i for i, k in enumerate(seq.keys) if k[1] == "cam"]
    # the cam sequence ending at its 6th window holds windows 2..5 in time order
    i = next(i for i in cam if seq.keys[i][2] == 125.0)
    np.testing.assert_array_equal(seq.X[i, :, 0], [2, 3, 4, 5])
    # the first window is edge-padded
    j = next(i for i in cam if seq.keys[i][2] == 100.0)
    np.testing.assert_array_equal(seq.X[j, :, 0], [0, 0, 0, 0])
    # rows point back at the frame rows of the last window
    assert df.reset_index(drop=True).loc[seq.rows[i], "t_start"] == 125.0
    skip = build_sequences(df, 4, feature_names=["a", "b"], pad="skip")
    assert skip.X.shape == (5, 4, 2) and all(k[1] == "cam" for k in skip.keys)
    with pytest.raises(ValueError, match="pad"):
        build_sequences(df, 4, feature_names=["a"], pad="zero")


def test_time_split_is_per_device_and_ordered():
    df = _frame()
    train, test = time_split(df, (0.5, 0.5))
    for dev in ("cam", "plug"):
        assert train[train.device_id == dev].t_start.max() < test[test.device_id == dev].t_start.min()
    assert len(train) + len(test) == len(df)


def test_checkpoint_round_trip(fitted, tmp_path):
    X = benign(20, 9)
    th = SPOTThreshold(q=0.01, level=0.9).fit(fitted.score_samples(benign(300, 10)))
    save_checkpoint(tmp_path / "ck", fitted, th, extra={"epochs": 25})
    scorer, th2, cfg = load_checkpoint(tmp_path / "ck")
    np.testing.assert_allclose(scorer.score_samples(X), fitted.score_samples(X), rtol=1e-6)
    assert th2.threshold_ == th.threshold_
    assert cfg["feature_names"] == [f"feat{i}" for i in range(F)] and cfg["seq_len"] == T


def test_checkpoint_errors(fitted, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")
    d = save_checkpoint(tmp_path / "ck", fitted)
    (d / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value)
    d = save_checkpoint(tmp_path / "ck2", fitted)
    (d / "config.json").write_text("{truncated")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(d)
    d = save_checkpoint(tmp_path / "ck3", fitted)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_features"] = 99
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="invalid"):
        load_checkpoint(d)
    d = save_checkpoint(tmp_path / "ck4", fitted)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(d)


def test_onnx_parity(fitted, tmp_path):
    pytest.importorskip("onnxruntime")
    path = export_onnx(fitted, tmp_path / "scorer.onnx")
    ort_scorer = OnnxScorer(path, threads=1)
    for batch in (1, 17):
        X = benign(batch, 20 + batch)
        X[0, -1, 0] *= 30                         # include an anomalous one
        s_ort, a_ort = ort_scorer.score_with_attention(X)
        s_pt, a_pt = fitted.score_with_attention(X)
        assert np.max(np.abs(s_ort - s_pt)) <= 1e-4
        assert np.max(np.abs(a_ort - a_pt)) <= 1e-4


def test_explain(fitted):
    X = benign(4, 12)
    X[1, -1, 3] = 500.0                           # new_peers-like explosion
    ev = explain(fitted, X, top_windows=3, top_features=2)
    assert len(ev) == 4
    assert len(ev[1]["attention"]) == 3 and len(ev[1]["features"]) == 2
    top = ev[1]["features"][0]
    assert top["name"] == "feat3" and top["value"] == 500.0 and top["z"] > 5
    assert abs(top["baseline_mean"] - 3.0) < 0.5
    w = [a["weight"] for a in ev[0]["attention"]]
    assert w == sorted(w, reverse=True) and all(0 <= a["index"] < T for a in ev[0]["attention"])
