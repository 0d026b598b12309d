"""The fog runs without the training stack (issue 17): nothing the fog runtime imports — server, coordinator,
alerts, policy, outbox, metrics, the ``fog`` CLI — pulls gymnasium, pettingzoo, ray or training.*; a fog started
with those imports blocked decides a window streamed over gRPC. (Slow: the same in a fresh virtual
environment built with only the fog image's install steps, ``pip install torch`` + ``".[fog]"``.)"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fog_client import current_policy, decide_one_window

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "docker" / "fog.Dockerfile"
TRAINING_STACK = ("gymnasium", "pettingzoo", "ray", "training")
RUNTIME = ("fog.server", "fog.coordinator", "fog.alerts", "fog.policy", "fog.outbox", "fog.metrics", "fog.cli")

BLOCKER = """
import importlib.abc, sys
class _Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} imported by the fog runtime")
sys.meta_path.insert(0, _Blocked())
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_fog_runtime_imports_nothing_of_the_training_stack():
    code = BLOCKER.format(blocked=TRAINING_STACK) + f"""
import importlib
for m in {RUNTIME!r}:
    importlib.import_module(m)
print(sorted(m for m in sys.modules if m.split(".")[0] in {TRAINING_STACK!r}))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]"


def test_a_fog_with_the_training_stack_blocked_decides_a_window(tmp_path):
    """``FogServer`` (the code ``marlids fog serve`` runs) in a process where importing gymnasium, pettingzoo,
    ray or training.* fails: it loads the bundled policy and decides a streamed window."""
    port_file = tmp_path / "port"
    policy = current_policy(tmp_path / "policy")
    code = BLOCKER.format(blocked=TRAINING_STACK) + f"""
import pathlib, time
from fog.server import FogConfig, FogServer
cfg = FogConfig(listen="127.0.0.1:0", policy_dir=pathlib.Path({str(policy)!r}),
                cloud_url="http://127.0.0.1:9", ingest_key="k" * 24, sites=("site_a",),
                outbox_path=pathlib.Path({str(tmp_path / "outbox.sqlite")!r}), tick_timeout_s=1.0,
                decisions_path=pathlib.Path({str(tmp_path / "decisions.jsonl")!r}), drain_s=0.0)
with FogServer(cfg) as fog:
    tmp = pathlib.Path({str(port_file)!r} + ".tmp")
    tmp.write_text(str(fog.port))
    tmp.rename({str(port_file)!r})  # atomic: the test never reads a half-written file
    while not pathlib.Path({str(tmp_path / "stop")!r}).exists():
        time.sleep(0.1)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while not port_file.is_file():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the fog did not start"
            time.sleep(0.1)
        assert decide_one_window(int(port_file.read_text())) == 2
        (tmp_path / "stop").touch()
        assert proc.wait(60) == 0, proc.stdout.read()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    (row,) = [json.loads(line) for line in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert (row["site_id"], row["device_id"]) == ("site_a", "10.0.0.7") and 0 <= row["level"] <= 4


def fog_install_steps() -> tuple[list[tuple[list[str], str]], list[str]]:
    """COPY sources → destinations and ``pip install`` commands of the fog image (one stage)."""
    from dockerfile_parse import DockerfileParser

    copies, pips = [], []
    for ins in DockerfileParser(path=str(DOCKERFILE)).structure:
        if ins["instruction"] == "COPY":
            *srcs, dst = ins["value"].split()
            copies.append((srcs, dst))
        elif ins["instruction"] == "RUN":
            pips += [p.strip() for p in ins["value"].split("&&") if p.strip().startswith("pip install")]
    return copies, pips


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_fog_extra_in_a_fresh_venv_serves_and_decides_a_window(tmp_path):
    """The fog image's install steps (torch, then ``".[fog]"``) in a fresh virtual environment, pip's wheel
    cache reused: no training stack is installed, ``marlids fog serve`` starts, decides a streamed window
    and posts nowhere it should not; SIGTERM stops it cleanly."""
    copies, pips = fog_install_steps()
    assert any('"./[fog]"' in p for p in pips), pips
    src = tmp_path / "src"  # the image's WORKDIR, filled by its COPY lines
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
        r = subprocess.run(["bash", "-c", cmd], check=False, cwd=src, env=env, capture_output=True, text=True,
                           timeout=1500)
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    py = str(venv / "bin" / "python")
    probe = ("import importlib.util, json; print(json.dumps({m: importlib.util.find_spec(m) is not None for m in "
             "('gymnasium', 'pettingzoo', 'ray', 'fastapi', 'torch', 'prometheus_client')}))")
    found = json.loads(subprocess.run([py, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                                      check=True).stdout)
    assert found == {"gymnasium": False, "pettingzoo": False, "ray": False, "fastapi": False, "torch": True,
                     "prometheus_client": True}, found
    port, metrics_port = _free_port(), _free_port()
    policy = current_policy(tmp_path / "policy")  # the image's models/defender, of the current layout
    log = (tmp_path / "fog.log").open("w")
    fog = subprocess.Popen([str(venv / "bin" / "marlids"), "fog", "serve", "--listen", f"127.0.0.1:{port}",
                            "--policy", str(policy), "--cloud", "http://127.0.0.1:9",
                            "--sites", "site_a", "--insecure", "--tick-timeout", "1",
                            "--outbox", str(tmp_path / "outbox.sqlite"), "--decisions", str(tmp_path / "d.jsonl"),
                            "--metrics-listen", f"127.0.0.1:{metrics_port}"],
                           cwd=tmp_path, env={**env, "MARLIDS_INGEST_KEY": "k" * 24}, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while "listening on port" not in (tmp_path / "fog.log").read_text():
            assert fog.poll() is None, (tmp_path / "fog.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "marlids fog serve did not start"
            time.sleep(0.2)
        assert decide_one_window(port) == 2
        import httpx

        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert 'marlids_fog_observations_total{kind="decided"} 1.0' in metrics
        fog.send_signal(signal.SIGTERM)
        assert fog.wait(60) == 0, (tmp_path / "fog.log").read_text()[-3000:]
    finally:
        if fog.poll() is None:
            fog.kill()
    (row,) = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert row["device_id"] == "10.0.0.7"
    assert "fog stopped: 1 ticks, 1 decisions" in (tmp_path / "fog.log").read_text()
