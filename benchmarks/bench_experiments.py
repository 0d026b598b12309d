"""Wall time of every experiment's quick mode (the CI mode) against its 5-minute budget → JSON.

Not a test: the suite checks that quick mode is deterministic and writes every file, with two runs side by
side on a 2-core machine, where wall time says more about the machine's load than about the code. This
benchmark runs each ``marlids experiment <name> --quick --seed 0`` alone, one after another, in a fresh
process, and reports its wall seconds (the process, from start to exit) next to the seconds the run wrote to
its own ``runtime.json`` (from the start of ``run()``, imports excluded).

The window cache (``~/.cache/marlids/windows``) is filled by a first, untimed pass unless ``--cold``: a
cold run adds the metering and embedding of every capture once (about a minute on 2 cores).

Usage::

    .venv/bin/python benchmarks/bench_experiments.py                      # all four, ~8 min on 2 cores
    .venv/bin/python benchmarks/bench_experiments.py --only generalization
    .venv/bin/python benchmarks/bench_experiments.py --out benchmarks/results/experiments.json

Writes JSON (default ``benchmarks/results/experiments.json``) and prints it; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = ("generalization", "drift", "selfplay", "ablation")
#: The quick-mode budget per experiment (seconds on a 2-core CPU machine; ``marlids experiment --help``).
BUDGET_S = 300.0


def _fill_cache() -> None:
    """Meter and embed every source the quick experiments read, so the timed runs find them cached."""
    sys.path.insert(0, str(REPO))
    from experiments.data import SOURCE_NAMES, load_source, public_benign_sites, range_networks

    for s in [*SOURCE_NAMES, *(f"range/{n}" for n in range_networks()), *public_benign_sites()]:
        if s != "oconnor_benign" and not s.startswith("oconnor/") or s == "oconnor/blink-cam-01":
            load_source(s)


def time_quick(name: str, out: Path) -> dict:
    """Run ``marlids experiment name --quick --seed 0`` in a fresh process.

    Returns
    -------
    dict
        ``wall_s`` (process start to exit, s), ``run_s`` (the run's own ``runtime.json``, s) and
        ``within_budget`` (``wall_s`` ≤ :data:`BUDGET_S`).

    Raises
    ------
    RuntimeError
        If the experiment exits non-zero (the tail of its output is in the message).
    """
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "marlids", "experiment", name, "--quick", "--seed", "0",
                        "--out", str(out)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       check=False)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"marlids experiment {name} --quick failed ({p.returncode}):\n{p.stdout[-3000:]}")
    run_s = json.loads((out / name / "runtime.json").read_text())["seconds"]
    return {"wall_s": round(wall, 1), "run_s": run_s, "within_budget": wall <= BUDGET_S}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Writes the JSON to --out and prints it; progress goes to stderr.")
    ap.add_argument("--only", choices=EXPERIMENTS, action="append", help="Time only this experiment (repeatable).")
    ap.add_argument("--cold", action="store_true", help="Do not fill the window cache first (cold-cache timing).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "experiments.json")
    a = ap.parse_args()
    if not a.cold:
        print("filling the window cache (untimed) …", file=sys.stderr, flush=True)
        _fill_cache()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_experiments_") as tmp:
        for name in a.only or EXPERIMENTS:
            print(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} timing {name} --quick …", file=sys.stderr, flush=True)
            results[name] = time_quick(name, Path(tmp))
            print(f"  {name}: {results[name]['wall_s']:.1f} s (budget {BUDGET_S:.0f} s)", file=sys.stderr)
    report = {"benchmark": "bench_experiments", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
              "cache": "cold" if a.cold else "warm", "budget_s": BUDGET_S, "experiments": results,
              "all_within_budget": all(r["within_budget"] for r in results.values())}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
