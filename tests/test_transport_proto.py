"""Wire contract: generated code is current, messages round-trip, option checks give one-line errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from edge.features import FEATURE_NAMES, N_FEATURES
from edge.observation import OBS_DIM
from edge.online import ObservationBatch
from edge.transport import observation_pb2 as pb
from edge.transport.tls import INSECURE_WARNING, parse_hostport, resolve_security
from edge.transport.wire import (
    hello_message,
    observation_arrays,
    observation_messages,
    observation_peers,
    watermark_message,
)


def test_generated_code_is_up_to_date():
    from importlib.metadata import version

    from edge.transport.codegen import GRPC_TOOLS_VERSION, stale_files

    assert version("grpcio-tools") == GRPC_TOOLS_VERSION, "pin grpcio-tools to the version that made the files"
    assert stale_files() == [], "run: python -m edge.transport.codegen"


def test_codegen_check_detects_a_stale_file(tmp_path, monkeypatch):
    import shutil

    import edge.transport.codegen as cg

    fake_root = tmp_path / "repo"
    shutil.copytree(cg.ROOT / "edge" / "transport", fake_root / "edge" / "transport")
    (fake_root / "edge" / "transport" / "observation_pb2.py").write_text("# edited by hand\n")
    monkeypatch.setattr(cg, "ROOT", fake_root)
    assert cg.stale_files() == ["observation_pb2.py"]
    assert cg.main(["--check"]) == 1


def _batch(n: int = 3, T: int = 4, scored: bool = True, learning: tuple[int, ...] = ()) -> ObservationBatch:
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=n) if scored else np.full(n, np.nan)
    if scored:
        scores[1] = np.nan  # warm-up window
    att = rng.dirichlet(np.ones(T), size=n).astype(np.float32)
    learn = np.zeros(n, dtype=bool)
    learn[list(learning)] = True
    return ObservationBatch(site_id="s1", device_id=np.array([f"10.0.0.{i}" for i in range(n)], dtype=object),
                            t_start=1000.0 + 5 * np.arange(n), t_end=1005.0 + 5 * np.arange(n),
                            proto_text=[f"DNS out: {i} packets." for i in range(n)],
                            x=rng.uniform(0, 100, (n, N_FEATURES)).astype(np.float32), learning=learn,
                            z=rng.normal(size=(n, N_FEATURES)).astype(np.float32),
                            vectors=rng.normal(size=(n, OBS_DIM)).astype(np.float32), scores=scores,
                            raw_scores=scores.copy(), attention=att if scored else None,
                            attention_t=np.tile(1000.0 + 5 * np.arange(T), (n, 1)) if scored else None,
                            baseline=rng.uniform(0, 10, (n, N_FEATURES)), spread=rng.uniform(0, 2, (n, N_FEATURES)),
                            scope=["device"] * n)


def test_observations_round_trip_through_bytes():
    batch = _batch()
    msgs = observation_messages(batch)
    assert len(msgs) == 3
    for i, m in enumerate(msgs):
        o = pb.EdgeMessage.FromString(m.SerializeToString()).observation
        arr = observation_arrays(o)
        assert not arr["learning"]
        np.testing.assert_array_equal(arr["vector"], batch.vectors[i])
        np.testing.assert_array_equal(arr["features"], batch.x[i])
        np.testing.assert_array_equal(arr["features_z"], batch.z[i])
        np.testing.assert_allclose(arr["baseline"], batch.baseline[i], rtol=1e-6)
        np.testing.assert_allclose(arr["baseline_spread"], batch.spread[i], rtol=1e-6)
        assert o.baseline_scope == "device"
        assert (o.site_id, o.device_id, o.t_start, o.t_end, o.proto_text) == tuple(batch.keys.iloc[i])
        if i == 1:
            assert not o.score_available and arr["attention"] is None
        else:
            assert o.score_available and o.anomaly_score == pytest.approx(batch.scores[i], rel=1e-6)
            np.testing.assert_array_equal(arr["attention"], batch.attention[i])
            np.testing.assert_array_equal(arr["attention_t"], batch.attention_t[i])


def test_top_peers_travel_with_the_observation():
    batch = _batch()
    batch.top_peers = [[{"address": "10.0.0.66", "port": 22, "direction": "in", "packets": 1800, "bytes": 240000,
                         "ports": 1}], [], [{"address": "fe80::1", "port": 0, "direction": "out", "packets": 3,
                                             "bytes": 180, "ports": 0}]]
    got = [observation_peers(pb.EdgeMessage.FromString(m.SerializeToString()).observation)
           for m in observation_messages(batch)]
    assert got == batch.top_peers
    batch.top_peers = None  # windows without top_peers (an older edge) send none
    assert all(observation_peers(m.observation) == [] for m in observation_messages(batch))


def test_grace_period_windows_travel_without_a_vector():
    batch = _batch(learning=(0,))
    o = pb.EdgeMessage.FromString(observation_messages(batch)[0].SerializeToString()).observation
    arr = observation_arrays(o)
    assert o.learning and arr["learning"] and len(o.vector) == 0 and arr["vector"] is None
    np.testing.assert_array_equal(arr["features"], batch.x[0])


def test_hello_watermark_and_ack_messages():
    h = hello_message(site_id="s1", edge_id="e", window_s=5.0, grace_s=60.0).hello
    assert h.obs_dim == OBS_DIM and list(h.feature_names) == list(FEATURE_NAMES) and h.grace_s == 60.0
    w = watermark_message("s1", 1005.0, 7).watermark
    assert (w.site_id, w.t_end, w.n_observations, w.learning) == ("s1", 1005.0, 7, False)
    w = watermark_message("s1", 1005.0, 0, {"state": "learning", "grace_elapsed_s": 35.0, "grace_s": 60.0,
                                             "grace_windows": 40, "devices_own": 0}).watermark
    assert w.learning and (w.grace_elapsed_s, w.grace_s, w.grace_windows) == (35.0, 60.0, 40)
    ack = pb.Ack.FromString(pb.Ack(edge_id="e", ack_seq=9, alerted_seqs=[3, 7]).SerializeToString())
    assert list(ack.alerted_seqs) == [3, 7]


@pytest.mark.parametrize("field, size, match", [("vector", OBS_DIM - 1, "vector has"),
                                                ("features", N_FEATURES + 1, "features, expected"),
                                                ("baseline", N_FEATURES - 1, "baseline values"),
                                                ("attention", 3, "attention and attention_t")])
def test_observation_arrays_reject_other_layouts(field, size, match):
    o = observation_messages(_batch(1, scored=False))[0].observation
    getattr(o, field)[:] = [0.0] * size
    if field == "attention":
        o.attention_t[:] = [0.0] * 2
    with pytest.raises(ValueError, match=match):
        observation_arrays(o)


@pytest.mark.parametrize("field", ["vector", "features", "features_z", "baseline"])
def test_observation_arrays_reject_non_finite_values(field):
    o = observation_messages(_batch(1, scored=False))[0].observation
    getattr(o, field)[0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        observation_arrays(o)


@pytest.mark.parametrize("value, ok", [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:7", ("::1", 7)),
                                       ("fog.local:0", ("fog.local", 0)), ("127.0.0.1", None), (":80", None),
                                       ("h:99999", None), ("h:x", None)])
def test_parse_hostport(value, ok):
    if ok is None:
        with pytest.raises(ValueError, match="expected HOST:PORT"):
            parse_hostport(value, "--fog")
    else:
        assert parse_hostport(value, "--fog") == ok


@pytest.mark.parametrize("role, given, insecure, match", [
    ("server", {}, False, "the fog needs --tls-cert and --tls-key"),
    ("client", {}, False, "the edge needs --tls-ca"),
    ("server", {"cert": "c"}, False, "go together"),
    ("client", {"ca": "a"}, True, "contradicts"),
    ("client", {"ca": "missing.pem"}, False, "--tls-ca missing.pem: no such file"),
])
def test_tls_option_errors(tmp_path, monkeypatch, role, given, insecure, match):
    monkeypatch.chdir(tmp_path)
    for name in ("c", "k", "a"):
        Path(name).write_text("x")
    args = {"cert": None, "key": None, "ca": None} | {k: Path(v) for k, v in given.items()}
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        resolve_security(role=role, insecure=insecure, **args)


def test_insecure_is_explicit_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_security(role="server", cert=None, key=None, ca=None, insecure=True) is None
    assert INSECURE_WARNING in caplog.text
