"""Whole-command edge benchmark (not a test): ``marlids edge extract`` against NFStream alone → JSON.

Run: ``.venv/bin/python benchmarks/bench_edge_command.py [--out benchmarks/results/edge_command.json] [--core 0]
[--repeats 5] [PCAP ...]``

What a user waits for and what the device must hold, per capture, on **one pinned core** (``taskset -c
CORE``; the NFStream meter process inherits the affinity):

* ``ours`` — the whole ``marlids edge extract CAPTURE --out F.parquet`` command as a user runs it (start-up,
  metering, windows, protocol text, MiniLM embedding with the default backend: the int8 ONNX model whenever
  ``models/edge`` is present, so torch is never imported);
* ``nfstream`` — NFStream alone on the same file in a fresh interpreter (the same flow timeouts, no
  statistics plugins): the floor every NFStream-based tool pays.

The two run in interleaved pairs (ours, NFStream, ours, …) so that machine noise hits both; each figure is
the median of ``--repeats`` runs (min and max kept). Peak memory is the largest sum of the proportional set
sizes (PSS) of the command's process tree (the command and its forked meter process, whose shared pages the
RSS would count twice), sampled every 20 ms.

Targets (issue "Edge speed"): on site_a the whole extract within 2× of NFStream alone and ≤ 300 MiB peak; on
floods ours ≥ 0.8× NFStream's packets/s. The figures are a proxy for an edge device — one core of this
machine; ``docs/deploy.md`` ("Resource figures") says how to run the same command on a Raspberry Pi (arm64 image).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.paths import BUNDLED_CAPTURES, SHARED_PCAPS  # noqa: E402

TARGET_RATIO_SITE = 2.0
TARGET_MEMORY_MIB = 300.0
TARGET_FLOOD_SHARE = 0.8

NFSTREAM_ALONE = """
import sys
from nfstream import NFStreamer
n = 0
for _ in NFStreamer(source=sys.argv[1], idle_timeout=120, active_timeout=1800, statistical_analysis=False,
                    n_dissections=20):
    n += 1
print(n)
"""


def default_captures() -> list[Path]:
    """site_a (the bundled recording) and, when ``../shared/data`` is beside the clone, a spoofed SYN flood
    and a BACnet amplification capture (one window)."""
    caps = [BUNDLED_CAPTURES / "site_a.pcap"]
    for rel in ("stopddos/pkt.TCP.synflood.spoofed.pcap", "stopddos/amp.UDP.bacnet.IOT.37810.pcapng"):
        if (SHARED_PCAPS / rel).is_file():
            caps.append(SHARED_PCAPS / rel)
    return caps


def packets_in(pcap: Path) -> int:
    """Packets of a capture (scapy's reader, the edge's own pre-scan)."""
    from edge.capture import scan_capture

    return scan_capture(pcap).packets


def _memory(p) -> int:
    """Proportional set size (bytes) of a process: pages it shares with its parent (a forked meter) count
    once across the tree, unlike the resident set size; the RSS where PSS is not readable."""
    try:
        return p.memory_full_info().pss
    except (AttributeError, OSError):
        return p.memory_info().rss


def timed(cmd: list[str], core: int, env: dict) -> tuple[float, float]:
    """Run ``cmd`` pinned to ``core``; (wall seconds, peak memory of the process tree in MiB: the largest
    sum of its processes' PSS, sampled every 20 ms)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(_memory(p) for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.02)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    return wall, peak / 2**20


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcaps", nargs="*", type=Path, help="captures (default: see module doc)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge_command.json")
    ap.add_argument("--core", type=int, default=0, help="CPU core both commands are pinned to")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved pairs per capture")
    args = ap.parse_args(argv)
    if shutil.which("taskset") is None:
        sys.exit("taskset not found (util-linux)")
    from edge.onnx_embed import find_models_dir, resolve_backend

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0")
    marlids = [sys.executable, "-c", "from marlids.cli import main; main()"]
    results = []
    with tempfile.TemporaryDirectory(prefix="marlids-bench-edge-cmd-") as tmp:
        script = Path(tmp) / "nfstream_alone.py"
        script.write_text(NFSTREAM_ALONE)
        for pcap in args.pcaps or default_captures():
            n = packets_in(pcap)
            ours, ours_mem, alone, alone_mem = [], [], [], []
            for i in range(args.repeats):
                w, r = timed([*marlids, "edge", "extract", str(pcap), "--out", str(Path(tmp) / f"w{i}.parquet")],
                             args.core, env)
                ours.append(w)
                ours_mem.append(r)
                w, r = timed([sys.executable, str(script), str(pcap)], args.core, env)
                alone.append(w)
                alone_mem.append(r)
            o, a = statistics.median(ours), statistics.median(alone)
            results.append({
                "capture": str(pcap.relative_to(REPO.parent)) if pcap.is_relative_to(REPO.parent) else str(pcap),
                "packets": n,
                "ours_extract": {"wall_s": summary(ours), "packets_per_s": round(n / o), "peak_pss_mib": summary(ours_mem)},
                "nfstream_alone": {"wall_s": summary(alone), "packets_per_s": round(n / a),
                                   "peak_pss_mib": summary(alone_mem)},
                "ratio_wall_ours_over_nfstream": round(o / a, 2),
                "share_of_nfstream_packets_per_s": round(a / o, 2),
            })
            print(json.dumps(results[-1]), flush=True)
    site = next((r for r in results if r["capture"].endswith("site_a.pcap")), None)
    floods = [r for r in results if "flood" in r["capture"] or "amp." in r["capture"]]
    doc = {
        "benchmark": "whole `marlids edge extract` vs NFStream alone, one pinned core, interleaved pairs",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "machine": platform.machine()},
        "core": args.core, "repeats": args.repeats,
        "backend": resolve_backend(None), "edge_models": str(find_models_dir() or ""),
        "results": results,
        "targets": {"site_a_ratio_max": TARGET_RATIO_SITE, "site_a_peak_pss_mib_max": TARGET_MEMORY_MIB,
                    "flood_share_min": TARGET_FLOOD_SHARE},
        "pass": {
            "site_a_ratio": None if site is None else site["ratio_wall_ours_over_nfstream"] <= TARGET_RATIO_SITE,
            "site_a_memory": None if site is None else site["ours_extract"]["peak_pss_mib"]["median"] <= TARGET_MEMORY_MIB,
            "floods": [r["share_of_nfstream_packets_per_s"] >= TARGET_FLOOD_SHARE for r in floods] or None,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("results", "machine")}, indent=1))
    return doc


if __name__ == "__main__":
    main()
