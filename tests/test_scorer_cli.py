"""``marlids edge train-scorer`` / ``score-windows`` / ``score-eval`` on a tiny synthetic window table."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from typer.testing import CliRunner

from edge.features import FEATURE_NAMES
from edge.scorer import CheckpointError
from marlids.cli import app


def window_table(n_per_device: int = 60, attack: bool = False, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for d, dev in enumerate(("192.168.1.10", "192.168.1.11", "192.168.1.12")):
        base = rng.lognormal(1.0, 0.5, size=len(FEATURE_NAMES))
        for i in range(n_per_device):
            feats = base * (1 + 0.3 * np.sin(i / 3 + d)) * rng.lognormal(0, 0.05, size=base.size)
            label = int(attack and i >= n_per_device - 4 and d == 0)
            if label:
                feats = feats * 40
            rows.append({"site_id": "s", "device_id": dev, "t_start": 1e9 + 5 * i, "t_end": 1e9 + 5 * i + 5,
                         "capture": "x.pcap", **dict(zip(FEATURE_NAMES, feats.astype(np.float32))),
                         "proto_text": "", "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    window_table().to_parquet(d / "w.parquet")
    res = CliRunner().invoke(app, ["edge", "train-scorer", str(d / "w.parquet"), "--out", str(d / "ck"),
                                   "--seq-len", "6", "--epochs", "2", "--hidden", "16", "--q", "0.01", "--seed", "1"])
    assert res.exit_code == 0, res.output
    return d


def test_train_scorer_writes_checkpoint(trained):
    cfg = json.loads((trained / "ck" / "config.json").read_text())
    assert cfg["seq_len"] == 6 and cfg["feature_names"] == list(FEATURE_NAMES)
    assert cfg["threshold"]["kind"] == "spot" and cfg["scaler"]["mean"]
    assert cfg["training"]["input"] == "site_z" and len(cfg["training"]["scale_floor"]) == len(FEATURE_NAMES)
    assert (trained / "ck" / "weights.pt").is_file() and (trained / "ck" / "scorer.onnx").is_file()


def test_threshold_is_in_raw_score_units_whatever_the_site_grace_period_scored(trained, tmp_path, caplog):
    """The threshold applies to raw scores: a site whose grace period scored low (its windows are standardised
    by a baseline fitted on themselves) must not move it out of reach; old checkpoints keep their units."""
    import shutil

    from edge.baseline import ScoreBaseline
    from edge.observation import FusionPipeline

    cfg = json.loads((trained / "ck" / "config.json").read_text())
    assert cfg["training"]["score_units"] == "raw"
    pipe = FusionPipeline(str(trained / "ck"), backend="torch").fit(window_table())
    quiet = ScoreBaseline(1e-3).fit(np.linspace(0.01, 0.05, 50))
    busy = ScoreBaseline(1e-3).fit(np.linspace(0.5, 2.0, 50))
    raw = np.array([0.1, 1.0, pipe.threshold_.threshold_, 10.0])
    np.testing.assert_allclose(pipe.calibrate_raw(raw, quiet), pipe.calibrate_raw(raw, busy))
    np.testing.assert_allclose(pipe.calibrate_raw(raw, quiet), pipe.calibrate(raw))
    assert pipe.calibrate_raw(raw, quiet)[0] < pipe.calibrate_raw(raw, quiet)[-1]
    legacy = tmp_path / "legacy"
    shutil.copytree(trained / "ck", legacy)
    old = json.loads((legacy / "config.json").read_text())
    del old["training"]["score_units"]
    (legacy / "config.json").write_text(json.dumps(old))
    with caplog.at_level("WARNING", logger="edge.observation"):
        lp = FusionPipeline(str(legacy), backend="torch").fit(window_table())
    assert lp.score_units_ == "site" and "retrain it" in caplog.text
    np.testing.assert_allclose(lp.calibrate_raw(raw, quiet), lp.calibrate(quiet.standardise(raw)))
    old["training"]["score_units"] = "furlongs"
    (legacy / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="score_units"):
        FusionPipeline(str(legacy), backend="torch").fit(window_table())


def test_train_uses_only_benign_rows(tmp_path):
    from training.scorer.train import TrainConfig, train_from_frame

    df = window_table(attack=True)
    _, _, summary = train_from_frame(df, TrainConfig(seq_len=4, epochs=1, hidden_size=8, q=0.01))
    assert summary["benign_windows"] == len(df) - 4


def test_score_windows(trained):
    out = trained / "scores.parquet"
    res = CliRunner().invoke(app, ["edge", "score-windows", str(trained / "w.parquet"), "--ckpt",
                                   str(trained / "ck"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    scores = pd.read_parquet(out)
    after = scores[~scores["learning"]]
    assert len(scores) == 180 and len(after) == 180 - 3 * 12, "each device's first 60 s learn the site baseline"
    assert after["calibrated"].between(0, 1).all() and scores.loc[scores["learning"], "calibrated"].isna().all()


def test_score_windows_bad_checkpoint(trained, tmp_path):
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "config.json").write_text("{")
    (tmp_path / "ck" / "weights.pt").write_bytes(b"")
    res = CliRunner().invoke(app, ["edge", "score-windows", str(trained / "w.parquet"), "--ckpt",
                                   str(tmp_path / "ck")])
    assert isinstance(res.exception, CheckpointError)


def test_missing_checkpoint_is_one_line_error(trained, tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from marlids.cli import main; main()", "edge", "score-windows",
                           str(trained / "w.parquet"), "--ckpt", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not found" in lines[0] and "Traceback" not in proc.stderr


def test_score_eval(tmp_path):
    window_table(n_per_device=60, attack=True).to_parquet(tmp_path / "lab.parquet")
    res = CliRunner().invoke(app, ["edge", "score-eval", str(tmp_path / "lab.parquet"), "--out", str(tmp_path / "ev"),
                                   "--seq-len", "5", "--epochs", "2", "--q", "0.01",
                                   "--models", "lstm_attention,iforest"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert [r["name"] for r in metrics["results"]] == ["lstm_attention", "iforest"]
    assert all(0 <= r["roc_auc"] <= 1 for r in metrics["results"])
    assert (tmp_path / "ev" / "roc.png").stat().st_size > 1000 and (tmp_path / "ev" / "pr.png").is_file()
    bad = CliRunner().invoke(app, ["edge", "score-eval", str(tmp_path / "lab.parquet"), "--models", "svm"])
    assert isinstance(bad.exception, ValueError) and "svm" in str(bad.exception)
