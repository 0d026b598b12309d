"""MAPPO on a real (local) Ray cluster: ``ray start --head`` plus a worker node on other ports, two training
iterations through ``--address`` with the KubeRay RayJob's command line, then the cluster is stopped.

The cluster's processes are told apart from any other Ray on the machine by an environment marker that every
process ``ray start`` spawns inherits; only those are stopped (never ``ray stop``, which would end every Ray
instance of the user). Ray is asked for 127.0.0.1 (``--node-ip-address``); this Ray version still binds its
GCS and raylets to all interfaces and advertises the host's address, so the test must run on a machine without
exposed ports (CI's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from marlids.demo import free_port

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
RAYJOB = REPO / "deploy" / "k8s" / "training-rayjob.yaml"
MARKER = "MARLIDS_TEST_RAY_CLUSTER"


def _ours(marker: str) -> list[psutil.Process]:
    """The processes carrying ``marker`` and their descendants (Ray's agents rename themselves, which
    overwrites their environment block, so they are found as children of the raylets)."""
    found: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARKER) == marker:
                found[p.pid] = p
                found.update((c.pid, c) for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return list(found.values())


def _stop(marker: str) -> list[psutil.Process]:
    procs = _ours(marker)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)

    def running(p: psutil.Process) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False
    return [p for p in [*procs, *_ours(marker)] if running(p)]


def _rayjob_entrypoint() -> list[str]:
    (job,) = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d and d.get("kind") == "RayJob"]
    return job["spec"]["entrypoint"].split()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_iterations_on_a_two_node_local_cluster(tmp_path):
    entry = _rayjob_entrypoint()
    assert entry[:5] == ["marlids", "train", "mappo", "--address", "auto"]
    ray_bin = Path(sys.executable).with_name("ray")
    assert ray_bin.is_file() or shutil.which("ray"), "the ray command line is not installed"
    marker = uuid.uuid4().hex
    head = free_port()
    env = {**os.environ, MARKER: marker, "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}  # a throw-away test cluster; token auth is for shared ones
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="mr", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    try:
        r = subprocess.run([str(ray_bin), "start", "--head", "--port", str(head), "--include-dashboard", "false",
                            "--ray-client-server-port", str(free_port()), "--temp-dir", temp,
                            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                            *common], env=env, capture_output=True, text=True, timeout=180, check=False)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        r = subprocess.run([str(ray_bin), "start", "--address", f"127.0.0.1:{head}",
                            "--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
                            *common], env=env, capture_output=True, text=True, timeout=180, check=False)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        deadline = time.monotonic() + 120  # the worker registers with the head a moment after `ray start` returns
        while True:
            r = subprocess.run([str(ray_bin), "status", "--address", f"127.0.0.1:{head}"], env=env,
                               capture_output=True, text=True, timeout=120, check=False)
            active = r.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
            if active.count("node_") == 2 or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert active.count("node_") == 2, r.stdout + r.stderr[-2000:]
        # the RayJob's command line (KubeRay sets RAY_ADDRESS for the job), with a tiny run
        cmd = [*entry[:5], "--iterations", "2", "--num-env-runners", "1", "--train-batch-size", "200",
               "--minibatch-size", "100", "--num-epochs", "1", "--scorer-epochs", "1", "--seed", "0",
               "--data", str(REPO / "data/captures/train/site_a_train.pcap"), "--out-dir", str(tmp_path / "runs"),
               "--exp-name", "cluster"]
        r = subprocess.run([sys.executable, "-m", "marlids", *cmd[1:]], cwd=REPO,
                           env={**env, "RAY_ADDRESS": f"127.0.0.1:{head}"}, capture_output=True, text=True, check=False,
                           timeout=800)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-4000:]
        assert "Connected to Ray cluster" in r.stdout + r.stderr, "trained on a local Ray, not the cluster"
        (run,) = (tmp_path / "runs").glob("cluster__0__*")
        assert (run / "checkpoints" / "iter_0002").is_dir() and (run / "policy" / "actor.json").is_file()
    finally:
        survivors = _stop(marker)
        shutil.rmtree(temp, ignore_errors=True)
    assert not survivors, [p.pid for p in survivors]
