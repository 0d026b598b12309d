"""Torch-free edge path: int8 ONNX MiniLM parity, the ONNX scorer inside the fusion pipeline, backend
selection and its errors, and (slow) a fresh virtual environment with only ``.[edge]`` — the install
steps of ``deploy/docker/edge.Dockerfile`` — running the pipeline and the edge daemon on the bundled
capture without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")

from typer.testing import CliRunner

from edge.embed import EmbeddingModelError, TextEmbedder
from edge.observation import OBS_DIM, OBS_SLICES, FusionPipeline
from edge.onnx_embed import MODEL_FILE, OnnxTextEmbedder, make_embedder, models_dir, resolve_backend
from training.onnx_export import MIN_PARITY_COSINE, parity_texts
from edge.scorer import CheckpointError
from edge.scorer.export import OnnxScorer, load_onnx_checkpoint

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "data" / "captures" / "site_a.pcap"
DOCKERFILE = REPO / "deploy" / "docker" / "edge.Dockerfile"


def site_windows():
    from edge.windows import extract_windows

    return extract_windows([CAPTURE], window_s=5.0, site_id="site_a", devices="local",
                           idle_timeout_s=120, active_timeout_s=1800)


@pytest.fixture(scope="module")
def windows():
    return site_windows()


@pytest.fixture(scope="module")
def edge_models(tmp_path_factory, windows):
    """A small scorer trained on site A, a fusion pipeline using it, and ``marlids edge export-onnx``."""
    from edge.scorer import save_checkpoint
    from training.scorer.train import TrainConfig, train_from_frame
    from marlids.cli import app

    d = tmp_path_factory.mktemp("edge_onnx")
    scorer, threshold, summary = train_from_frame(windows, TrainConfig(seq_len=6, epochs=2, hidden_size=16,
                                                                       n_heads=2, q=0.01, seed=0))
    save_checkpoint(d / "ckpt", scorer, threshold, extra=summary)  # no scorer.onnx: the export writes it
    FusionPipeline(str(d / "ckpt")).fit(windows).save(d / "policy")
    res = CliRunner().invoke(app, ["edge", "export-onnx", "--out", str(d / "models"), "--fusion", str(d / "policy")])
    assert res.exit_code == 0, res.output
    assert "cosine to fp32" in res.output
    return d


def test_export_writes_a_self_contained_folder(edge_models):
    m = json.loads((edge_models / "models" / "manifest.json").read_text())
    assert set(m["files"]) == {MODEL_FILE, "tokenizer.json", "fusion.json", "scorer/config.json",
                               "scorer/scorer.onnx"}
    for name, f in m["files"].items():
        data = (edge_models / "models" / name).read_bytes()
        assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"], name
    assert json.loads((edge_models / "models" / "fusion.json").read_text())["scorer_dir"] == "scorer"
    par = m["minilm"]["parity_int8_vs_fp32_torch"]
    assert par["n_texts"] == len(parity_texts()) >= 100
    assert MIN_PARITY_COSINE <= par["min_cosine"] <= par["mean_cosine"] <= 1.0 + 1e-6
    assert m["minilm"]["parity_fp32_onnx_vs_fp32_torch"]["min_cosine"] > 0.9999
    # int8 weights: a quarter of the 90 MB fp32 graph
    assert m["files"][MODEL_FILE]["bytes"] < 30e6


def test_int8_embeddings_match_fp32_sentence_transformers(edge_models):
    texts = parity_texts()
    assert all(t.strip() and t.endswith(".") for t in texts)  # real protocol sentences (edge.proto_text)
    ref = TextEmbedder(cache_size=0).embed(texts)
    got = OnnxTextEmbedder(edge_models / "models").embed(texts)
    assert got.shape == (len(texts), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
    cos = (ref * got).sum(axis=1)
    assert cos.min() >= 0.98, f"min cosine {cos.min():.4f} on {texts[int(cos.argmin())]!r}"
    # distinct texts stay distinct: the nearest fp32 neighbour of each int8 row is its own text
    assert (np.argmax(got @ ref.T, axis=1) == np.arange(len(texts))).mean() > 0.95


def test_onnx_embedder_keeps_the_cache_interface(edge_models):
    emb = OnnxTextEmbedder(edge_models / "models", cache_size=2, batch_size=2)
    texts = ["DNS out: 1 packet to 1 peer.", "NTP out: a few packets to 1 peer.", "DNS out: 1 packet to 1 peer."]
    out = emb.embed(texts)
    np.testing.assert_array_equal(out[0], out[2])
    assert emb.cache_info() == {"hits": 1, "misses": 2, "size": 2, "max_size": 2}
    np.testing.assert_allclose(emb.embed_one(texts[1]), out[1], atol=1e-6)
    assert emb.hits == 2


def test_onnx_fusion_pipeline_matches_torch(edge_models, windows):
    from edge.online import fuse_frame

    torch_pipe = FusionPipeline.load(edge_models / "policy", backend="torch")
    onnx_pipe = FusionPipeline.load(edge_models / "models", backend="onnx")
    assert isinstance(onnx_pipe.scorer_, OnnxScorer) and onnx_pipe.seq_len_ == torch_pipe.seq_len_ == 6
    emb = np.random.default_rng(0).normal(size=(len(windows), 384)).astype(np.float32)
    fa = fuse_frame(torch_pipe, windows, emb, learn_from="none")
    fb = fuse_frame(onnx_pipe, windows, emb, learn_from="none")
    a, b = fa.vectors, fb.vectors
    avail = a[:, OBS_SLICES["score_available"].start]
    assert avail[~fa.learning].all()  # every window after the grace period is scored
    np.testing.assert_array_equal(avail, b[:, OBS_SLICES["score_available"].start])
    np.testing.assert_array_equal(a[:, OBS_SLICES["stats_z"]], b[:, OBS_SLICES["stats_z"]])
    np.testing.assert_allclose(a[:, OBS_SLICES["attention"]], b[:, OBS_SLICES["attention"]], atol=1e-3)
    # raw scores agree to float32 rounding; the calibrated value is an empirical CDF over the benign
    # validation scores below the tail, so a rounding difference may move it by a step
    z = np.clip(fa.z[~fa.learning][:, None, :].repeat(6, axis=1), -10, 10)
    raw_t, att_t = torch_pipe.score_sequences(z)
    raw_o, att_o = onnx_pipe.score_sequences(z)
    np.testing.assert_allclose(raw_o, raw_t, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(att_o, att_t, atol=1e-5)
    step = 1.0 / onnx_pipe.threshold_.sorted_scores_.size
    assert np.abs(a[:, OBS_SLICES["score"]] - b[:, OBS_SLICES["score"]]).max() <= 2 * step + 1e-6


@pytest.mark.parametrize(("arg", "env", "folder", "expected"), [
    ("onnx", None, False, "onnx"), ("torch", None, True, "torch"), (None, "ONNX", False, "onnx"),
    (None, None, False, "torch"),   # auto without an ONNX model folder: torch (installed here)
    (None, None, True, "onnx"),     # auto with one: ONNX, although torch is installed
    ("auto", "onnx", False, "torch"),  # an explicit argument wins over the environment
    (None, "torch", True, "torch"),
])
def test_backend_resolution(monkeypatch, tmp_path, edge_models, arg, env, folder, expected):
    import edge.onnx_embed as oe

    monkeypatch.delenv("MARLIDS_EDGE_MODELS", raising=False)
    monkeypatch.setattr(oe, "DEFAULT_MODELS_DIR", edge_models / "models" if folder else tmp_path / "none")
    if env is None:
        monkeypatch.delenv("MARLIDS_EDGE_BACKEND", raising=False)
    else:
        monkeypatch.setenv("MARLIDS_EDGE_BACKEND", env)
    assert resolve_backend(arg) == expected
    # $MARLIDS_EDGE_MODELS names the folder as well
    monkeypatch.setattr(oe, "DEFAULT_MODELS_DIR", tmp_path / "none")
    monkeypatch.setenv("MARLIDS_EDGE_MODELS", str(edge_models / "models" if folder else tmp_path / "none"))
    assert resolve_backend(arg) == expected


def test_auto_scorer_without_onnx_file_runs_on_torch(monkeypatch, tmp_path, edge_models):
    """A scorer checkpoint exported without scorer.onnx still loads when auto picks ONNX."""
    import edge.onnx_embed as oe
    from edge.scorer.model import TemporalScorer

    monkeypatch.delenv("MARLIDS_EDGE_BACKEND", raising=False)
    monkeypatch.setattr(oe, "DEFAULT_MODELS_DIR", edge_models / "models")
    pipe = FusionPipeline.load(edge_models / "policy")          # ckpt/ has no scorer.onnx
    assert isinstance(pipe.scorer_, TemporalScorer)
    assert isinstance(FusionPipeline.load(edge_models / "models").scorer_, OnnxScorer)
    with pytest.raises(CheckpointError):
        FusionPipeline.load(edge_models / "policy", backend="onnx")  # asked for explicitly: an error


def test_default_edge_path_imports_no_torch(edge_models, tmp_path):
    """With the ONNX folder present and nothing configured, `marlids edge extract` and the daemon's fusion
    path never import torch, transformers, sentence-transformers or scikit-learn (torch is installed here), and
    the extract does not build the cloud's command group (its settings model)."""
    env = {**os.environ, "MARLIDS_EDGE_MODELS": str(edge_models / "models"), "HF_HUB_OFFLINE": "1"}
    env.pop("MARLIDS_EDGE_BACKEND", None)
    script = f"""
import sys
from typer.testing import CliRunner
from marlids.cli import app
r = CliRunner().invoke(app, ["edge", "extract", {str(CAPTURE)!r}, "--out", {str(tmp_path / "w.parquet")!r}])
assert r.exit_code == 0, r.output
assert "cloud.cli" not in sys.modules and "pydantic_settings" not in sys.modules, "the cloud group was built"
import edge.daemon, edge.live
from edge.io import read_windows
from edge.observation import FusionPipeline
from edge.online import fuse_frame
from edge.onnx_embed import make_embedder
df, _ = read_windows({str(tmp_path / "w.parquet")!r})
pipe = FusionPipeline.load({str(edge_models / "models")!r})
fuse_frame(pipe, df, make_embedder(num_threads=1).embed(df["proto_text"].tolist()), learn_from="none")
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "transformers", "sentence_transformers", "sklearn"}}))
"""
    r = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_bad_backend_names_the_setting(monkeypatch):
    with pytest.raises(ValueError, match=r"backend='tensorrt' is invalid: expected one of auto, onnx, torch"):
        resolve_backend("tensorrt")
    monkeypatch.setenv("MARLIDS_EDGE_BACKEND", "gpu")
    with pytest.raises(ValueError, match=r"\$MARLIDS_EDGE_BACKEND='gpu'"):
        resolve_backend()


def test_make_embedder_picks_the_backend(monkeypatch, edge_models):
    monkeypatch.setenv("MARLIDS_EDGE_MODELS", str(edge_models / "models"))
    assert type(make_embedder("onnx", num_threads=1)) is OnnxTextEmbedder
    assert type(make_embedder("torch", threads=1)) is TextEmbedder
    monkeypatch.setenv("MARLIDS_EDGE_BACKEND", "onnx")
    assert make_embedder().embed(["ARP out: 1 packet to 1 peer."]).shape == (1, 384)


def test_missing_model_folder_is_a_clear_error(monkeypatch, tmp_path):
    import edge.onnx_embed as oe

    monkeypatch.delenv("MARLIDS_EDGE_MODELS", raising=False)
    monkeypatch.setattr(oe, "DEFAULT_MODELS_DIR", tmp_path / "none")
    with pytest.raises(EmbeddingModelError, match="set MARLIDS_EDGE_MODELS"):
        models_dir()
    with pytest.raises(EmbeddingModelError, match=f"has no {MODEL_FILE}.*export-onnx --out"):
        OnnxTextEmbedder(tmp_path).embed(["x"])
    with pytest.raises(ValueError, match="threads must be an integer ≥ 1"):
        OnnxTextEmbedder(tmp_path, threads=0)


def test_onnx_checkpoint_errors(edge_models, tmp_path):
    src = edge_models / "models" / "scorer"
    scorer, threshold, cfg = load_onnx_checkpoint(src)
    assert (scorer.seq_len_, scorer.n_features_in_) == (cfg["seq_len"], cfg["n_features"])
    assert threshold is not None
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_onnx_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no scorer.onnx"):
        load_onnx_checkpoint(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    c = json.loads((bad / "config.json").read_text())
    c["seq_len"] = 9
    (bad / "config.json").write_text(json.dumps(c))
    with pytest.raises(CheckpointError, match=r"says \(batch, 9,"):
        load_onnx_checkpoint(bad)
    (bad / "scorer.onnx").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="is corrupt"):
        load_onnx_checkpoint(bad)


# -- the edge image's install steps, outside Docker ----------------------------------------------------
def runtime_install_steps(dockerfile: Path = DOCKERFILE) -> tuple[list[tuple[list[str], str]], list[str]]:
    """COPY sources → destinations and ``pip install`` commands of the Dockerfile's last (runtime) stage."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(dockerfile))
    stages: list[list[dict]] = []
    for ins in parser.structure:
        if ins["instruction"] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(ins)
    copies, pips = [], []
    for ins in stages[-1]:
        if ins["instruction"] == "COPY" and not ins["value"].startswith("--from"):
            *srcs, dst = ins["value"].split()
            copies.append((srcs, dst))
        elif ins["instruction"] == "RUN":
            for part in ins["value"].split("&&"):
                part = part.strip()
                if part.startswith(("pip install", "python -m pip install")):
                    pips.append(part)
    return copies, pips


def models_stage_export(dockerfile: Path = DOCKERFILE) -> list[str]:
    """Arguments of the ``marlids edge export-onnx`` command the first (models) stage runs."""
    from dockerfile_parse import DockerfileParser

    runs = [ins["value"] for ins in DockerfileParser(path=str(dockerfile)).structure if ins["instruction"] == "RUN"]
    cmds = [part.strip() for run in runs for part in run.split("&&") if "edge export-onnx" in part]
    assert len(cmds) == 1, cmds
    return shlex.split(cmds[0])


@pytest.mark.slow
def test_edge_extra_installs_and_runs_without_torch(windows, tmp_path):
    copies, pips = runtime_install_steps()
    assert pips and any("[edge]" in p for p in pips), pips
    assert not any("torch" in p or "ray" in p.split() for p in pips)
    src = tmp_path / "src"  # the image's WORKDIR, filled by the runtime stage's COPY lines
    src.mkdir()
    for sources, dst in copies:
        for s in sources:
            target = src / dst / Path(s).name if dst.endswith("/") or len(sources) > 1 else src / dst
            (shutil.copytree if (REPO / s).is_dir() else shutil.copyfile)(REPO / s, target)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    for cmd in pips:  # the Dockerfile's commands, minus --no-cache-dir so the wheel cache is reused
        cmd = cmd.replace("python -m pip", "pip").replace("--no-cache-dir", "")
        r = subprocess.run(["bash", "-c", cmd], check=False, cwd=src, env=env, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    py = str(venv / "bin" / "python")
    # the models stage's export, as the image runs it (with the bundled policy), into a local folder
    export = models_stage_export()
    assert export[:3] == ["marlids", "edge", "export-onnx"]
    models = tmp_path / "models"
    export[export.index("--out") + 1] = str(models)
    policy = REPO / export[export.index("--fusion") + 1]
    r = subprocess.run([str(Path(sys.executable).parent / "marlids"), *export[1:]], check=False, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    run_env = {**env, "MARLIDS_EDGE_MODELS": str(models), "HF_HUB_OFFLINE": "1"}
    run_env.pop("MARLIDS_EDGE_BACKEND", None)
    script = f"""
import importlib.util, json, sys
import numpy as np
for mod in ("torch", "ray", "sentence_transformers", "transformers", "fastapi"):
    assert importlib.util.find_spec(mod) is None, mod + " is installed in the edge environment"
from edge.onnx_embed import OnnxTextEmbedder, make_embedder, resolve_backend
from edge.observation import FusionPipeline
from edge.scorer.export import OnnxScorer
from edge.windows import extract_windows
assert resolve_backend() == "onnx"
df = extract_windows([{str(CAPTURE)!r}], window_s=5.0, site_id="site_a", devices="local",
                     idle_timeout_s=120, active_timeout_s=1800)
emb = make_embedder()
assert isinstance(emb, OnnxTextEmbedder)
e = emb.embed(df["proto_text"].tolist())
from edge.online import fuse_frame
pipe = FusionPipeline.load({str(models)!r})
assert isinstance(pipe.scorer_, OnnxScorer)
obs = fuse_frame(pipe, df, e, learn_from="none").vectors
np.save({str(tmp_path / "obs.npy")!r}, obs)
np.save({str(tmp_path / "emb.npy")!r}, e)
assert "torch" not in sys.modules
print(json.dumps({{"windows": len(df), "obs": list(obs.shape)}}))
"""
    r = subprocess.run([py, "-c", script], check=False, cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"windows": len(windows), "obs": [len(windows), OBS_DIM]}
    # the console script, torch-free: windows with ONNX embeddings into Parquet
    r = subprocess.run([str(venv / "bin" / "marlids"), "edge", "extract", str(CAPTURE), "--out",
                        str(tmp_path / "w.parquet")], check=False, cwd=tmp_path, env=run_env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    # the daemon of the image's ENTRYPOINT, torch-free: replay into its on-disk buffer (no fog listening)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([str(venv / "bin" / "marlids"), "edge", "run", "--pcap", str(CAPTURE), "--site", "site_a",
                        "--fog", f"127.0.0.1:{port}", "--insecure", "--fusion", str(models), "--fast",
                        "--drain-timeout", "1", "--buffer", str(tmp_path / "buffer.sqlite"),
                        "--baseline", str(tmp_path / "baseline.json")], check=False,
                       cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    assert (tmp_path / "buffer.sqlite").stat().st_size > 0
    # same Observations as the torch path, up to int8 MiniLM and float32 ONNX rounding
    ref_emb = TextEmbedder(cache_size=0).embed(windows["proto_text"].tolist())
    from edge.online import fuse_frame

    ref = fuse_frame(FusionPipeline.load(policy, backend="torch"), windows, ref_emb, learn_from="none").vectors
    obs, e = np.load(tmp_path / "obs.npy"), np.load(tmp_path / "emb.npy")
    assert (ref_emb * e).sum(axis=1).min() >= 0.98
    np.testing.assert_array_equal(ref[:, OBS_SLICES["stats_z"]], obs[:, OBS_SLICES["stats_z"]])
    step = 1.0 / FusionPipeline.load(models, backend="onnx").threshold_.sorted_scores_.size
    assert np.abs(ref[:, OBS_SLICES["score"]] - obs[:, OBS_SLICES["score"]]).max() <= 2 * step + 1e-6
