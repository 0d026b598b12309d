"""Fog coordinator benchmark (not a test): decision latency per tick with 10 and 100 sites → JSON.

Run: ``.venv/bin/python benchmarks/bench_fog_coordinator.py [--sites 10 100] [--ticks 40]
[--out benchmarks/results/fog_coordinator.json]``

What one tick costs the fog (``fog.coordinator.Coordinator``, in process, no gRPC): every site's edge
sends the Observations of one 5 s slot and a Watermark; the last Watermark closes the tick, and the fog
decides every window of it with the bundled defender actor (one batched forward pass), builds the alerts'
evidence and commits alerts and stream positions to its SQLite outbox. Reported per site count:

* ``decide_ms`` — p50 / p99 / max of that last Watermark call (decisions + evidence + outbox commit);
* ``tick_ms`` — p50 / p99 of the whole tick, the Observations' intake included;
* ``windows_per_tick`` and ``alerts`` — how much work a tick held.

Input: the windows of the bundled capture ``data/captures/site_a.pcap`` after its grace period, fused
through the edge's own path (:func:`edge.online.fuse_frame`) and serialised as the edge does
(:func:`edge.transport.wire.observation_messages`); every simulated site replays them under its own site
id, so each tick carries ≈ 3.5 windows per site (site A's devices active in a slot).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CAPTURE = REPO / "data" / "captures" / "site_a.pcap"


def site_batches():
    """Post-grace ObservationBatch per 5 s slot of site A: ``[(t_end, batch), ...]``."""
    from edge.features import FEATURE_NAMES
    from edge.observation import FusionPipeline
    from edge.online import ObservationBatch, fuse_frame
    from edge.onnx_embed import make_embedder
    from edge.windows import extract_windows
    from fog.policy import DefenderActor

    frame = extract_windows([CAPTURE], window_s=5.0, site_id="site_a").sort_values("t_start").reset_index(drop=True)
    emb = make_embedder().embed(frame["proto_text"].tolist())
    policy = REPO / "models" / "defender"
    fused = fuse_frame(FusionPipeline.load(policy), frame, emb, decide=DefenderActor.load(policy).decide_all)
    out = []
    for idx in frame.groupby("t_start").indices.values():
        idx = np.asarray(idx)
        idx = idx[~fused.learning[idx]]
        if not len(idx):
            continue
        out.append((float(frame["t_end"].iloc[idx[0]]), ObservationBatch(
            site_id="site_a", device_id=frame["device_id"].to_numpy()[idx], t_start=frame["t_start"].to_numpy()[idx],
            t_end=frame["t_end"].to_numpy()[idx], proto_text=frame["proto_text"].to_numpy()[idx].tolist(),
            x=frame[list(FEATURE_NAMES)].to_numpy(np.float32)[idx],
            learning=fused.learning[idx], z=fused.z[idx], vectors=fused.vectors[idx], scores=fused.scores[idx],
            raw_scores=fused.scores[idx],
            attention=None if fused.attention is None else fused.attention[idx],
            attention_t=None if fused.attention_t is None else fused.attention_t[idx],
            baseline=fused.baseline[idx], spread=fused.spread[idx], scope=[fused.scope[i] for i in idx],
            site_scores=fused.site_scores[idx])))
    return out


def pct(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3), "n": len(a)}


def run(n_sites: int, slots, ticks: int) -> dict:
    """Replay ``ticks`` slots from ``n_sites`` simulated edges through one Coordinator."""
    from edge.transport.wire import hello_message, observation_messages, watermark_message
    from fog.coordinator import Coordinator
    from fog.outbox import AlertOutbox
    from fog.policy import DefenderActor

    actor = DefenderActor.load(REPO / "models" / "defender")
    sites = [f"site_{k:03d}" for k in range(n_sites)]
    decide_ms, tick_ms, windows = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        outbox = AlertOutbox(Path(tmp) / "outbox.sqlite", capacity=10_000_000)
        coord = Coordinator(actor, outbox, sites, policy_version="bench", tick_timeout_s=3600.0)
        seq = {}
        for s in sites:
            coord.hello(hello_message(site_id=s, edge_id=f"edge-{s}", window_s=5.0).hello)
            seq[s] = 0
        # messages prepared outside the timed part: (site, [observation messages], watermark message)
        for t_end, batch in slots[:ticks]:
            plan = []
            for s in sites:
                batch.site_id = s
                msgs = [m.observation for m in observation_messages(batch)]
                for m in msgs:
                    seq[s] += 1
                    m.seq = seq[s]
                seq[s] += 1
                w = watermark_message(s, t_end, len(msgs)).watermark
                w.seq = seq[s]
                plan.append((f"edge-{s}", msgs, w))
            t0 = time.perf_counter()
            for edge_id, msgs, w in plan[:-1]:
                for m in msgs:
                    coord.observation(edge_id, m)
                coord.watermark(edge_id, w)
            edge_id, msgs, w = plan[-1]
            for m in msgs:
                coord.observation(edge_id, m)
            t1 = time.perf_counter()
            coord.watermark(edge_id, w)  # completes the tick: decisions, evidence, outbox commit
            t2 = time.perf_counter()
            decide_ms.append((t2 - t1) * 1e3)
            tick_ms.append((t2 - t0) * 1e3)
            windows.append(sum(len(m) for _, m, _ in plan))
        stats = dict(coord.counters)
        coord.close()
        outbox.close()
    assert stats["ticks_closed"] == len(decide_ms), stats
    return {"sites": n_sites, "ticks": len(decide_ms), "windows_per_tick": round(float(np.mean(windows)), 1),
            "decide_ms": pct(decide_ms), "tick_ms": pct(tick_ms), "decisions": stats["decisions"],
            "alerts": stats["alerts"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--ticks", type=int, default=40, help="Ticks replayed per site count (after one warm-up).")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fog_coordinator.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    slots = site_batches()
    run(1, slots, 1)  # warm-up: imports, first forward pass
    res = {"benchmark": "fog_coordinator", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                       "torch_threads": 1},
           "input": {"capture": CAPTURE.name, "slots_available": len(slots)},
           "results": [run(n, slots, args.ticks) for n in args.sites]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res["results"], indent=1))


if __name__ == "__main__":
    main()
