"""Edge pipeline benchmark (not a test): extraction throughput, per-window latency, peak RSS → JSON.

Run: ``.venv/bin/python benchmarks/bench_edge.py [--out benchmarks/results/edge.json] [PCAP ...]``

* **Extraction throughput** (packets/s) of :func:`edge.windows.extract_windows` (scan + NFStream
  metering + windows + text, no embedding) pinned to one core: the NFStream meter process inherits
  the affinity, so metering and windowing share that core. Target ≥ 50,000 packets/s.
* **Per-window latency** of statistics + protocol text + MiniLM embedding for one window, p50/p99 in
  ms, with a cold cache (every text encoded) and a warm cache (texts seen before). Target: p99 ≤ 10 ms
  warm. Flow metering is excluded: it is amortised over packets and measured above.
* **Peak RSS** of this process and of its children (the NFStream meter), MiB.

Default captures: the bundled range recordings plus, when ``../shared/data`` is beside the clone, a
benign IoT capture, a spoofed SYN flood and a pcapng amplification capture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "data" / "pcaps"


def default_captures() -> list[Path]:
    caps = sorted((REPO / "data" / "captures").glob("*.pcap"))
    for rel in ("oconnor-iot/lockly-hub-01.pcap", "oconnor-iot/blink-cam-01.pcap",
                "stopddos/pkt.TCP.synflood.spoofed.pcap", "stopddos/amp.UDP.bacnet.IOT.37810.pcapng"):
        if (SHARED / rel).is_file():
            caps.append(SHARED / rel)
    return caps


def throughput(path: Path, repeats: int) -> dict:
    from edge.capture import scan_capture
    from edge.windows import extract_windows

    packets = scan_capture(path).packets
    times = []
    n_windows = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        df = extract_windows([path])
        times.append(time.perf_counter() - t0)
        n_windows = len(df)
    best = min(times)
    return {"capture": path.name, "packets": packets, "windows": n_windows, "best_s": round(best, 4),
            "packets_per_s": round(packets / best, 1), "windows_per_s": round(n_windows / best, 1)}


def window_latency(path: Path, max_windows: int) -> dict:
    """Time statistics + text + embedding per window, cold and warm cache."""
    from edge import flows as F
    from edge.capture import scan_capture
    from edge.embed import TextEmbedder
    from edge.proto_text import window_text
    from edge.windows import WindowBuilder, _features

    scan = scan_capture(path)
    builder = WindowBuilder(5.0, "bench", path.name)
    for flow in F.meter_flows(path, F.MeterConfig()):
        builder.add_flow(flow)
    builder.add_scan(scan)
    accs = list(builder._acc.values())[:max_windows]
    cold = TextEmbedder(cache_size=0, num_threads=1)
    warm = TextEmbedder(cache_size=65536, num_threads=1)
    warm.embed([window_text(a.groups.values()) for a in accs])  # fill the cache
    cold.embed(["warm-up"])  # load the model outside the timing

    def run(embedder: TextEmbedder) -> list[float]:
        out = []
        for a in accs:
            t0 = time.perf_counter()
            _features(np.array([a.r]), [a], 5.0)
            embedder.embed_one(window_text(a.groups.values()))
            out.append((time.perf_counter() - t0) * 1000)
        return out

    res = {}
    for name, emb in (("cold_cache", cold), ("warm_cache", warm)):
        ms = np.array(run(emb))
        res[name] = {"windows": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 3),
                     "p99_ms": round(float(np.percentile(ms, 99)), 3), "mean_ms": round(float(ms.mean()), 3)}
    res["capture"] = path.name
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pcaps", nargs="*", type=Path, help="captures to measure (default: see module doc)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge.json")
    ap.add_argument("--repeats", type=int, default=3, help="runs per capture; the best is reported")
    ap.add_argument("--latency-windows", type=int, default=1000, help="windows timed for latency")
    ap.add_argument("--core", type=int, default=0, help="CPU core to pin to")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.core})
    import torch

    torch.set_num_threads(1)
    caps = args.pcaps or default_captures()
    if not caps:
        sys.exit("no captures to benchmark")
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count(), "pinned_core": args.core},
        "targets": {"extraction_packets_per_s": 50000, "warm_window_p99_ms": 10.0},
        "throughput": [throughput(p, args.repeats) for p in caps],
        "window_latency": window_latency(caps[0], args.latency_windows),
    }
    tot_p = sum(t["packets"] for t in result["throughput"])
    tot_s = sum(t["best_s"] for t in result["throughput"])
    result["throughput_overall_packets_per_s"] = round(tot_p / tot_s, 1)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result["peak_rss_mib"] = {"self": round(self_kb / 1024, 1), "largest_child": round(child_kb / 1024, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
