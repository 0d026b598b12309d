"""Training throughput benchmark (not a test): raw env, MAPPO env steps/s per env-runner count and learner
device, and the wall time until held-out same-site F1 reaches a target → JSON.

Run: ``.venv/bin/python benchmarks/bench_training.py [--out benchmarks/results/training.json]``
(about 8 minutes on a 2-core machine; ``--quick`` for a 2-minute smoke run).

What it measures (issue "Training that scales"):

* **Raw env agent-steps/s** of ``marlids_ids_v1`` with random actions, pinned to one core
  (``bench_fog.raw_env_speed``). Target ≥ 50,000.
* **MAPPO env steps/s** as ``marlids train mappo`` prints it, with 0, 1, 2, … remote env runners (up to
  ``--max-runners``, default the cores minus one, at least 2), the learner in the driver on the CPU and, when
  torch sees a CUDA device, on the GPU (``num_gpus_per_learner=1``). Per setting: the median over the
  iterations after the first (warm-up) of env steps/s, of the iteration's wall seconds and of RLlib's
  ``learner_update_timer`` and ``env_runner_sampling_timer`` (seconds, smoothed by RLlib), and the scaling
  of each runner count relative to the best of 0 and 1 runners ("× linear": speed-up / runners).
* **Time to held-out F1**: MAPPO trains on the training-day recordings (``data/captures/train``) and after
  every ``--eval-every`` iterations the current shared defender actor is evaluated on the held-out recordings
  of the same sites (``data/captures/site_{a,b}.pcap``) on the deployment path (site baseline, 60 s grace
  period, the fog's decision rule; pooled per-window F1 after the grace period). Reported: the training
  seconds (RLlib iterations only; data preparation reported separately, evaluation excluded) until F1 ≥
  ``--f1-target`` (default 0.95), or null with the best F1 reached when it never does.

Settings are the issue's (``--n-defenders 2 --num-epochs 10 --minibatch-size 250 --random-attacker-share 0.5
--class-bonus 1.5``, train batch 4,000) with ``--num-envs-per-env-runner`` vectorised envs (default 32).
The data are prepared once (labeled windows and embeddings from the content-hash cache, a temporal scorer of
``--scorer-epochs`` epochs) and shared by every run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median(values: list[float]) -> float | None:
    v = [float(x) for x in values if not math.isnan(x)]
    return round(statistics.median(v), 4) if v else None


def mappo_run(args, prepared, *, label: str, on_actor=None, eval_every: int = 1) -> dict:
    """Train ``args.iterations`` iterations on ``prepared``; per-iteration figures and their medians.

    Returns
    -------
    dict
        ``setting``, ``iterations`` (list of per-iteration dicts), medians over iterations ≥ 2:
        ``env_steps_per_s``, ``iteration_s``, ``learner_update_s``, ``sampling_s``; ``train_seconds``.
    """
    from training.mappo.train import train

    rows: list[dict] = []

    def on_iteration(it: int, m: dict) -> None:
        row = {"iteration": it, "env_steps_per_s": round(m["charts/env_steps_per_s"], 1),
               "iteration_s": round(m["charts/iteration_s"], 3),
               "learner_update_s": round(m["timers/learner_update_s"], 3),
               "sampling_s": round(m["timers/sampling_s"], 3)}
        if "heldout/f1" in m:
            row |= {k.split("/", 1)[1]: round(float(v), 4) for k, v in m.items() if k.startswith("heldout/")}
        rows.append(row)
        print(f"[{dt.datetime.now().isoformat(timespec='seconds')}] {label} iteration {it}: "
              f"{row['env_steps_per_s']:.0f} env steps/s, learner {row['learner_update_s']:.2f} s"
              + (f", held-out F1 {row['f1']:.3f}" if "f1" in row else ""), file=sys.stderr, flush=True)

    hook = None
    if on_actor is not None:
        def hook(it: int, actor) -> dict:
            return on_actor(actor) if it % eval_every == 0 or it == args.iterations else {}

    final = train(args, on_iteration, prepared=prepared, on_actor=hook)
    warm = rows[1:] or rows
    return {"setting": label, "num_env_runners": args.num_env_runners,
            "num_envs_per_env_runner": args.num_envs_per_env_runner,
            "learner": "gpu" if args.num_gpus_per_learner else "cpu",
            "env_steps_per_s": _median([r["env_steps_per_s"] for r in warm]),
            "iteration_s": _median([r["iteration_s"] for r in warm]),
            "learner_update_s": _median([r["learner_update_s"] for r in warm]),
            "sampling_s": _median([r["sampling_s"] for r in warm]),
            "train_seconds": round(final["train_seconds"], 2), "iterations": rows}


def heldout_evaluator(pipe, frame, embeddings):
    """``actor -> {"heldout/f1", …}``: pooled per-window metrics of the actor on the held-out windows, after
    each site's grace period, on the deployment path (:func:`edge.online.fuse_frame`)."""
    import numpy as np

    from edge.online import fuse_frame
    from training.evaluate import window_metrics

    y = frame["label"].to_numpy().astype(bool)

    def evaluate(actor) -> dict:
        import torch

        with torch.no_grad():
            fused = fuse_frame(pipe, frame, embeddings, decide=actor.decide_all)
        scored = ~fused.learning
        m = window_metrics(y[scored], np.asarray(fused.decisions["alert"])[scored])
        return {f"heldout/{k}": m[k] for k in ("precision", "recall", "f1", "fpr")}

    return evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Writes the JSON to --out and prints it; progress goes to stderr.")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "training.json")
    ap.add_argument("--iterations", type=int, default=4, help="iterations per throughput setting (first = warm-up)")
    ap.add_argument("--max-runners", type=int, default=None,
                    help="most remote env runners measured (default: cores − 1, at least 2)")
    ap.add_argument("--num-envs-per-env-runner", type=int, default=32)
    ap.add_argument("--minibatch-size", type=int, default=250, help="SGD minibatch, agent steps (issue: 250)")
    ap.add_argument("--num-epochs", type=int, default=10, help="SGD passes per train batch (issue: 10)")
    ap.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate (MappoArgs default)")
    ap.add_argument("--f1-target", type=float, default=0.95)
    ap.add_argument("--f1-iterations", type=int, default=30, help="most iterations of the time-to-F1 run")
    ap.add_argument("--eval-every", type=int, default=2, help="iterations between held-out evaluations")
    ap.add_argument("--scorer-epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 iterations, runners 0–1, 4 F1 iterations")
    ap.add_argument("--skip-f1", action="store_true", help="throughput only")
    a = ap.parse_args()
    if a.quick:
        a.iterations, a.max_runners, a.f1_iterations, a.scorer_epochs = 2, 1, 4, 1
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    import torch
    from bench_fog import raw_env_speed

    from edge.paths import BUNDLED_CAPTURES
    from training.data import load_labeled_embedded
    from training.mappo.config import MappoArgs
    from training.mappo.train import prepare_data, single_thread

    single_thread()
    cores = os.cpu_count() or 1
    max_runners = a.max_runners if a.max_runners is not None else max(2, cores - 1)
    with tempfile.TemporaryDirectory(prefix="marlids-bench-training-") as tmp:
        base = MappoArgs(data=[str(p) for p in sorted((BUNDLED_CAPTURES / "train").glob("*.pcap"))],
                         train_fraction=1.0, scorer_epochs=a.scorer_epochs, seed=a.seed, n_defenders=2,
                         num_epochs=a.num_epochs, minibatch_size=a.minibatch_size, lr=a.lr,
                         random_attacker_share=0.5, class_bonus=1.5,
                         train_batch_size=4000, num_envs_per_env_runner=a.num_envs_per_env_runner,
                         iterations=a.iterations, checkpoint_every=10**6, out_dir=tmp, exp_name="bench")
        t0 = time.perf_counter()
        pipe, train_ts = prepare_data(base, Path(tmp) / "scorer")[:2]
        prep_s = time.perf_counter() - t0
        held_frame, held_emb = load_labeled_embedded([BUNDLED_CAPTURES / "site_a.pcap", BUNDLED_CAPTURES / "site_b.pcap"])
        prepared = (pipe, train_ts)

        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {0})
        raw = raw_env_speed(train_ts)
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(range(cores)))

        gpu = torch.cuda.is_available()
        ray.init(num_cpus=max(cores, max_runners + 1), num_gpus=1 if gpu else 0, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
        runs = []
        for r in range(max_runners + 1):
            runs.append(mappo_run(replace(base, num_env_runners=r), prepared, label=f"{r} env runners, CPU learner"))
        if gpu:
            for r in sorted({0, max_runners}):
                runs.append(mappo_run(replace(base, num_env_runners=r, num_gpus_per_learner=1.0), prepared,
                                      label=f"{r} env runners, GPU learner"))
        cpu = {x["num_env_runners"]: x for x in runs if x["learner"] == "cpu"}
        one = max((cpu[r]["env_steps_per_s"] or 0) for r in (0, 1) if r in cpu) or None
        scaling = {str(r): {"speedup": round(x["env_steps_per_s"] / one, 3),
                            "x_linear": round(x["env_steps_per_s"] / one / r, 3)}
                   for r, x in cpu.items() if r >= 1 and one and x["env_steps_per_s"]}
        gpu_ratio = None
        if gpu:
            g = {x["num_env_runners"]: x for x in runs if x["learner"] == "gpu"}
            gpu_ratio = {str(r): {"env_steps_per_s": round(g[r]["env_steps_per_s"] / cpu[r]["env_steps_per_s"], 3),
                                  "learner_update_s": round(cpu[r]["learner_update_s"] / g[r]["learner_update_s"], 3)}
                         for r in g if cpu.get(r) and cpu[r]["env_steps_per_s"] and g[r]["learner_update_s"]}

        time_to_f1 = None
        if not a.skip_f1:
            best_r = max(cpu, key=lambda r: cpu[r]["env_steps_per_s"] or 0)
            f1_args = replace(base, num_env_runners=best_r, iterations=a.f1_iterations)
            run = mappo_run(f1_args, prepared, label=f"time to F1 ({best_r} env runners)",
                            on_actor=heldout_evaluator(pipe, held_frame, held_emb), eval_every=a.eval_every)
            elapsed, reached, best = 0.0, None, {"f1": -1.0}
            for row in run["iterations"]:
                elapsed += row["iteration_s"]
                if "f1" in row:
                    if row["f1"] > best["f1"]:
                        best = {"f1": row["f1"], "iteration": row["iteration"], "train_seconds": round(elapsed, 2)}
                    if reached is None and row["f1"] >= a.f1_target:
                        reached = {"iteration": row["iteration"], "train_seconds": round(elapsed, 2)}
            time_to_f1 = {"target_f1": a.f1_target, "num_env_runners": best_r, "iterations_run": a.f1_iterations,
                          "reached": reached, "best": best, "heldout": "data/captures/site_a.pcap + site_b.pcap",
                          "heldout_windows": len(held_frame), "per_iteration": run["iterations"]}
        ray.shutdown()
    result = {
        "benchmark": "training", "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cores": cores, "platform": platform.platform(), "gpu": torch.cuda.get_device_name(0) if gpu else None},
        "settings": {"n_defenders": 2, "num_epochs": a.num_epochs, "minibatch_size": a.minibatch_size, "lr": a.lr,
                     "random_attacker_share": 0.5,
                     "class_bonus": 1.5, "train_batch_size": 4000,
                     "num_envs_per_env_runner": a.num_envs_per_env_runner, "iterations": a.iterations,
                     "scorer_epochs": a.scorer_epochs, "seed": a.seed, "quick": a.quick},
        "targets": {"raw_agent_steps_per_s": 50000, "mappo_env_steps_per_s_2core": 5 * 449,
                    "runner_scaling_x_linear": 0.7, "gpu_vs_cpu_learner": 2.0},
        "data_preparation_s": round(prep_s, 2),
        "raw_env": raw, "mappo": [{k: v for k, v in x.items() if k != "iterations"} for x in runs],
        "runner_scaling": scaling, "gpu_vs_cpu": gpu_ratio, "time_to_f1": time_to_f1,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
