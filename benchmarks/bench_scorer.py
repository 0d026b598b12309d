"""Latency and memory of the temporal scorer on one CPU core: torch eager vs onnxruntime.

Not a test. Scores one sequence at a time (batch 1, T = 20 by default) and reports p50 / p99 latency per
sequence and peak RSS; the onnxruntime figures come from a fresh child process that imports only numpy and
onnxruntime, as the edge daemon would. Target: p99 <= 2 ms on one core.

Usage::

    python benchmarks/bench_scorer.py                       # synthetic 62-feature model, hidden 32
    python benchmarks/bench_scorer.py --ckpt ckpt/scorer    # a trained checkpoint
    python benchmarks/bench_scorer.py --iters 5000 --out benchmarks/results/bench_scorer.json

Writes JSON (default ``benchmarks/results/bench_scorer.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("bench_scorer")

_ORT_CHILD = r"""
import json, sys, time
import numpy as np
import onnxruntime as ort
path, T, F, iters, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
xs = np.abs(rng.normal(size=(64, 1, T, F))).astype(np.float32) * 10
for i in range(warmup):
    sess.run(None, {"x": xs[i % 64]})
lat = np.empty(iters)
for i in range(iters):
    t0 = time.perf_counter()
    sess.run(None, {"x": xs[i % 64]})
    lat[i] = time.perf_counter() - t0
# VmHWM: this process image's peak RSS (ru_maxrss would carry the parent's peak across fork/exec)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"lat_s": lat.tolist(), "peak_rss_mib": hwm / 1024}))
"""


def _peak_rss_mib() -> float:
    """Peak resident set size of this process in MiB (VmHWM, falling back to ru_maxrss)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stats(lat_s: np.ndarray) -> dict[str, float]:
    ms = np.asarray(lat_s) * 1000.0
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", type=Path, help="checkpoint directory (default: a synthetic model)")
    ap.add_argument("--seq-len", type=int, default=20, help="T for the synthetic model")
    ap.add_argument("--features", type=int, default=0, help="F for the synthetic model (default: FEATURE_NAMES)")
    ap.add_argument("--hidden", type=int, default=32, help="hidden size of the synthetic model")
    ap.add_argument("--iters", type=int, default=3000, help="timed sequences per engine")
    ap.add_argument("--warmup", type=int, default=200, help="untimed sequences first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_scorer.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    import onnxruntime as ort

    from edge.scorer import TemporalScorer, export_onnx, load_checkpoint

    if args.ckpt is not None:
        scorer, _, _ = load_checkpoint(args.ckpt)
        source = str(args.ckpt)
    else:
        from edge.features import N_FEATURES

        F = args.features or N_FEATURES
        X = np.abs(np.random.default_rng(args.seed).normal(size=(256, args.seq_len, F))).astype(np.float32) * 10
        scorer = TemporalScorer(hidden_size=args.hidden, epochs=1, seed=args.seed).fit(X)
        source = f"synthetic (F={F}, hidden={args.hidden}, 1 epoch: latency does not depend on the weights)"
    T, F = scorer.seq_len_, scorer.n_features_in_
    n_params = sum(p.numel() for p in scorer.net_.parameters())
    rng = np.random.default_rng(args.seed)
    xs = torch.from_numpy(np.abs(rng.normal(size=(64, 1, T, F))).astype(np.float32) * 10)

    module = scorer.scoring_module()
    lat = np.empty(args.iters)
    with torch.inference_mode():
        for i in range(args.warmup):
            module(xs[i % 64])
        for i in range(args.iters):
            t0 = time.perf_counter()
            module(xs[i % 64])
            lat[i] = time.perf_counter() - t0
    torch_stats = _stats(lat)
    torch_rss = _peak_rss_mib()

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_onnx(scorer, Path(tmp) / "scorer.onnx")
        onnx_kib = onnx_path.stat().st_size / 1024
        child = subprocess.run([sys.executable, "-c", _ORT_CHILD, str(onnx_path), str(T), str(F), str(args.iters),
                                str(args.warmup)], capture_output=True, text=True, check=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    res = json.loads(child.stdout)
    ort_stats = _stats(np.asarray(res["lat_s"]))
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    report = {
        "benchmark": "edge.scorer latency, batch 1, one core",
        "model": source, "seq_len": T, "n_features": F, "hidden_size": scorer.hidden_size,
        "n_heads": scorer.n_heads, "parameters": int(n_params), "onnx_kib": round(onnx_kib, 1),
        "iters": args.iters, "warmup": args.warmup,
        "torch": {**torch_stats, "peak_rss_mib_incl_training_and_export": round(torch_rss, 1), "threads": torch.get_num_threads(),
                  "version": torch.__version__},
        "onnxruntime": {**ort_stats, "peak_rss_mib": round(res["peak_rss_mib"], 1), "intra_op_num_threads": 1,
                        "version": ort.__version__},
        "target_p99_ms": 2.0,
        "meets_target": {"torch": torch_stats["p99_ms"] <= 2.0, "onnxruntime": ort_stats["p99_ms"] <= 2.0},
        "machine": {"cpu": cpu, "cores_online": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    log.info("torch p50 %.3f ms p99 %.3f ms (RSS %.0f MiB) | onnxruntime p50 %.3f ms p99 %.3f ms (RSS %.0f MiB) → %s",
             torch_stats["p50_ms"], torch_stats["p99_ms"], torch_rss, ort_stats["p50_ms"], ort_stats["p99_ms"],
             res["peak_rss_mib"], args.out)
    return report


if __name__ == "__main__":
    main()
