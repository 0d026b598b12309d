"""``marlids edge extract / inspect`` and ``marlids demo`` on the bundled range capture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from edge.features import FEATURE_NAMES
from edge.io import WindowFileError, read_embeddings, read_windows
from marlids.cli import app

runner = CliRunner()


def test_extract_writes_the_window_contract_with_embeddings(bundled_capture: Path, tmp_path: Path):
    out = tmp_path / "w.parquet"
    res = runner.invoke(app, ["edge", "extract", str(bundled_capture), "--out", str(out), "--site", "site_a"])
    assert res.exit_code == 0, res.output
    df, meta = read_windows(out)
    assert meta["window_s"] == 5.0 and meta["features"] == list(FEATURE_NAMES)
    assert meta["embedding_model"] == "all-MiniLM-L6-v2"
    for col in ("site_id", "device_id", "t_start", "t_end", "capture", "proto_text", "peers", *FEATURE_NAMES):
        assert col in df.columns
    assert (df["site_id"] == "site_a").all() and df["device_id"].nunique() >= 3
    emb = read_embeddings(out)
    assert emb.shape == (len(df), 384)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    # identical texts → identical vectors (served from the cache)
    first = df.groupby("proto_text").head(2).index
    for _, g in df.loc[first].groupby("proto_text"):
        if len(g) == 2:
            np.testing.assert_array_equal(emb[g.index[0]], emb[g.index[1]])


def test_inspect_prints_summary_tables(bundled_capture: Path, tmp_path: Path):
    out = tmp_path / "w.parquet"
    assert runner.invoke(app, ["edge", "extract", str(bundled_capture), "--out", str(out), "--no-embed"]).exit_code == 0
    res = runner.invoke(app, ["edge", "inspect", str(out)])
    assert res.exit_code == 0, res.output
    assert "windows" in res.output and "devices" in res.output and "widest spread" in res.output
    res = runner.invoke(app, ["edge", "inspect", str(bundled_capture)])  # a capture works too
    assert res.exit_code == 0, res.output


def test_reading_a_non_window_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "x.parquet"
    bad.write_text("nope")
    try:
        read_windows(bad)
    except WindowFileError as exc:
        assert "not a Parquet file" in str(exc)
    else:
        raise AssertionError("expected WindowFileError")


def test_help_teaches_every_command():
    for args in ([], ["edge"], ["edge", "extract"], ["edge", "inspect"], ["demo"]):
        res = runner.invoke(app, [*args, "--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_usage_errors_are_one_message_not_a_traceback():
    import subprocess
    import sys

    for args in (["edge", "--bogus"], ["train", "eval"]):
        res = subprocess.run([sys.executable, "-m", "marlids", *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr and "Usage: marlids" in res.stderr, res.stderr
