"""Edge model benchmark (not a test): the torch-free ONNX int8 path against the torch path → JSON.

Run: ``.venv/bin/python benchmarks/bench_edge_onnx.py [--out benchmarks/results/edge_onnx.json] [--core 0]``

What one window costs once flow metering has produced it (metering itself: ``bench_edge.py``), on
**one pinned core** (each path runs in its own process under ``taskset -c CORE``, intra-op threads 1):
MiniLM embedding of the window's protocol text + the site baseline + the temporal scorer over the device's
last ``T`` windows (batch 1) + calibration + fusion into the Observation — the runtime's
:meth:`edge.online.SiteFusion.transform_arrays`, one window at a time, windows in time order, timed after the
site's grace period (a slot's frame is turned into these arrays once for all its windows). Reported per path:

* ``load_s`` — importing the libraries and loading the models;
* ``latency_ms`` — per window, p50 / p95 / p99 / mean, with a **cold** text cache (every text encoded,
  the worst case) and a **warm** one (the LRU cache of repeated texts, the steady state on a site);
* ``rss_mib`` — resident memory after loading and the process's peak (``VmHWM``), windows read
  from Parquet (metering ran beforehand, in the parent);
* ``torch_imported`` — whether torch ended up in the process (must be false for ONNX).

The models: the bundled policy's fusion pipeline and temporal scorer (``models/defender``, or
``--policy``), exported with MiniLM by ``marlids edge export-onnx`` into a temporary folder first (needs
the ``ml`` extra in this environment) — exactly what the edge image ships. The figures are a *proxy* for an edge device: one core of this machine,
not a Raspberry Pi or a Jetson.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CAPTURE = REPO / "data" / "captures" / "site_a.pcap"


def site_windows():
    from edge.windows import extract_windows

    return extract_windows([CAPTURE], window_s=5.0, site_id="site_a", devices="local",
                           idle_timeout_s=120, active_timeout_s=1800)


def prepare(directory: Path, policy: Path) -> Path:
    """Write the windows of site A and ``marlids edge export-onnx --fusion POLICY`` into ``directory``."""
    from training.onnx_export import export_edge_models

    site_windows().to_parquet(directory / "windows.parquet")
    export_edge_models(directory / "models", fusion=policy)
    return directory


def percentiles(ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3), "n": int(a.size)}


def peak_rss_mib() -> float:
    """``VmHWM`` of this process (reset by exec, unlike ``ru_maxrss``, which a child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(backend: str, directory: Path, policy: Path) -> dict:
    """One path, in this (pinned) process: load, then time every window of site A, cold then warm."""
    t0 = time.perf_counter()
    import psutil

    from edge.observation import OBS_DIM, FusionPipeline
    from edge.onnx_embed import make_embedder

    # the ONNX run loads the fusion pipeline the export wrote beside MiniLM (the edge image's folder); a
    # folder with MiniLM alone (scripts/setup.sh's models/edge) borrows the policy's
    source = directory / "models" if backend == "onnx" and (directory / "models" / "fusion.json").is_file() else policy
    pipe = FusionPipeline.load(source, backend=backend)
    embedder = make_embedder(backend, directory / "models", cache_size=4096, num_threads=1)
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    embedder.embed(["warm-up: load the model"])
    embedder._cache.clear()
    load_s = time.perf_counter() - t0
    rss_loaded = psutil.Process().memory_info().rss / 2**20

    import pandas as pd

    from edge.online import SiteFusion

    df = pd.read_parquet(directory / "windows.parquet").sort_values(["t_end", "device_id"]).reset_index(drop=True)
    texts = df["proto_text"].tolist()
    # the columns as arrays, as a slot's frame gives them once for all its windows (SiteFusion.transform)
    from edge.features import FEATURE_NAMES

    site = df["site_id"].astype(str).tolist()
    dev = df["device_id"].astype(str).to_numpy(object)
    t0s, t1s = df["t_start"].to_numpy("float64"), df["t_end"].to_numpy("float64")
    x = df[list(FEATURE_NAMES)].to_numpy("float64")

    def one_pass() -> list[float]:
        """Every window through the runtime's SiteFusion (baseline, scorer sequence, calibration, fusion), one
        at a time as the daemon would with one device per slot; the latencies of the windows decided after the
        site's grace period (grace windows only learn the baseline)."""
        fusion = SiteFusion(pipe, embedder)
        out = []
        for i in range(len(df)):
            t = time.perf_counter()
            batch = fusion.transform_arrays(site[i], dev[i:i + 1], t0s[i:i + 1], t1s[i:i + 1], x[i:i + 1],
                                            texts[i:i + 1])
            dt = (time.perf_counter() - t) * 1e3
            assert batch.vectors.shape == (1, OBS_DIM)
            if not batch.learning[0]:
                out.append(dt)
        return out

    cache_size = embedder.cache_size
    embedder.cache_size = 0  # cold: every text goes through MiniLM
    cold = one_pass()
    embedder.cache_size = cache_size
    one_pass()  # fills the cache
    warm = one_pass()
    return {"backend": backend, "load_s": round(load_s, 3),
            "latency_ms": {"cold_cache": percentiles(cold), "warm_cache": percentiles(warm)},
            "rss_mib": {"after_load": round(rss_loaded, 1),
                        "peak": round(peak_rss_mib(), 1)},
            "torch_imported": "torch" in sys.modules, "seq_len": pipe.seq_len_, "windows": len(df),
            "distinct_texts": len(set(texts)),
            "affinity": sorted(os.sched_getaffinity(0))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge_onnx.json")
    ap.add_argument("--core", type=int, default=0, help="CPU core both paths are pinned to (taskset -c).")
    ap.add_argument("--policy", type=Path, default=REPO / "models" / "defender",
                    help="Exported policy folder (fusion.json + scorer); default: the bundled one.")
    ap.add_argument("--models", type=Path,
                    help="Use this exported ONNX model folder and run only the ONNX path (no torch needed: the "
                         "edge image, e.g. --models /opt/marlids/models on a Raspberry Pi; docs/deploy.md).")
    ap.add_argument("--child", choices=("onnx", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.policy)))
        return
    taskset = shutil.which("taskset")
    if taskset is None:
        raise SystemExit("bench_edge_onnx: taskset (util-linux) is needed to pin the runs to one core")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="marlids-bench-") as tmp:
        if args.models is not None:  # the given models; only the ONNX path
            d = Path(tmp)
            site_windows().to_parquet(d / "windows.parquet")
            (d / "models").symlink_to(args.models.resolve(), target_is_directory=True)
        else:
            d = prepare(Path(tmp), args.policy)
        manifest = json.loads((d / "models" / "manifest.json").read_text())
        results = {}
        for backend in ("onnx",) if args.models is not None else ("onnx", "torch"):
            env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                   "MARLIDS_EDGE_BACKEND": backend}
            r = subprocess.run([taskset, "-c", str(args.core), sys.executable, __file__, "--child", backend,
                                "--dir", str(d), "--policy", str(args.policy)], check=False, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"bench_edge_onnx: the {backend} run failed ({r.returncode}):\n{r.stderr[-3000:]}")
            results[backend] = json.loads(r.stdout.strip().splitlines()[-1])
    o, t = results["onnx"], results.get("torch")
    report = {
        "label": "proxy: one pinned core of the benchmark machine (not a Raspberry Pi / Jetson)",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "cores_visible": os.cpu_count(), "pinned_core": args.core,
                    # other work on the machine inflates the tails: compare runs with similar load
                    "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)]},
        "what": "per window after metering: MiniLM(text) + site baseline + temporal scorer (batch 1) + "
                "calibration + fusion (SiteFusion.transform_arrays)",
        "policy": str(args.policy), "scorer_seq_len": o["seq_len"],
        "models": {k: v["bytes"] for k, v in manifest["files"].items()},
        "parity_int8_vs_fp32": manifest["minilm"]["parity_int8_vs_fp32_torch"],
        "onnx_int8": o, "torch_fp32": t,
        "speedup_p50_cold": (round(t["latency_ms"]["cold_cache"]["p50"] / o["latency_ms"]["cold_cache"]["p50"], 2)
                             if t else None),
        "rss_peak_ratio": round(t["rss_mib"]["peak"] / o["rss_mib"]["peak"], 2) if t else None,
        "targets_ms": {"cold_p99": 10.0, "warm_p99": 1.0},
        "pass": {"cold_p99": o["latency_ms"]["cold_cache"]["p99"] <= 10.0,
                 "warm_p99": o["latency_ms"]["warm_cache"]["p99"] <= 1.0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
