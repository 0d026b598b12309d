"""Throughput of the edge → fog transport: Observations per second streamed over gRPC, decided and acked.

An edge buffer is pre-filled with N synthetic Observations of the real layout (519-d vector, 64 raw and
63 standardised statistics, a protocol sentence, 20-step attention), 20 devices per 5 s slot with a
Watermark after each slot; an :class:`edge.daemon.EdgeDaemon` then streams the buffer to an in-process
:class:`fog.server.FogServer` (one site, plaintext or mTLS) which closes every tick, runs the defender
actor, commits to its outbox and acks. The time from start to "everything acked" gives the rate. The actor
never alerts (level 0), so the cloud is not involved. Embedding and flow metering are not included (see
``bench_edge.py``); the buffer fill rate is reported separately.

    python benchmarks/bench_transport.py --n 20000 [--tls] [--out benchmarks/results/transport.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]


def _policy(directory: Path) -> Path:
    from edge.observation import FusionPipeline
    from edge.windows import extract_windows
    from fog.policy import ActorConfig, DefenderActor

    FusionPipeline().fit(extract_windows([REPO / "data" / "captures" / "site_a.pcap"], site_id="bench")).save(directory)
    actor = DefenderActor(ActorConfig())
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
        actor.net[-1].bias[0] = 1.0  # always level 0: no alert, the cloud stays out of the measurement
    actor.save(directory, meta={"run": "bench"})
    return directory


def _fill(buffer_path: Path, n: int, per_slot: int, seed: int = 0) -> tuple[int, float]:
    from edge.features import N_FEATURES
    from edge.observation import OBS_DIM
    from edge.online import ObservationBatch
    from edge.transport.buffer import DiskBuffer
    from edge.transport.wire import observation_messages, watermark_message

    rng = np.random.default_rng(seed)
    buf = DiskBuffer(buffer_path, capacity=2 * n + 10)
    t0, msgs = time.perf_counter(), 0
    for k in range(n // per_slot):
        t = 1_800_000_000.0 + 5 * k
        keys = pd.DataFrame({"site_id": "bench", "device_id": [f"10.0.{i // 250}.{i % 250}" for i in range(per_slot)],
                             "t_start": t, "t_end": t + 5,
                             "proto_text": "MQTT out: dozens of packets to 1 peer on port 1883; DNS out: a few packets."})
        batch = ObservationBatch(keys=keys, x=rng.uniform(0, 1e4, (per_slot, N_FEATURES)).astype(np.float32),
                                 z=rng.normal(size=(per_slot, N_FEATURES)).astype(np.float32),
                                 vectors=rng.normal(size=(per_slot, OBS_DIM)).astype(np.float32),
                                 scores=rng.uniform(size=per_slot),
                                 attention=rng.dirichlet(np.ones(20), per_slot).astype(np.float32),
                                 attention_t=np.tile(t - 5 * np.arange(19, -1, -1.0), (per_slot, 1)))
        m = observation_messages(batch) + [watermark_message("bench", t + 5, per_slot)]
        buf.put(m)
        msgs += len(m)
    fill_s = time.perf_counter() - t0
    buf.close()
    return msgs, fill_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="Observations streamed.")
    parser.add_argument("--per-slot", type=int, default=20, help="Devices (Observations) per window slot.")
    parser.add_argument("--tls", action="store_true", help="mTLS with freshly generated certificates.")
    parser.add_argument("--out", type=Path, help="Append the result to this JSON file.")
    args = parser.parse_args()

    from edge.daemon import EdgeConfig, EdgeDaemon
    from edge.embed import TextEmbedder
    from edge.transport.tls import TlsFiles
    from fog.server import FogConfig, FogServer

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        policy = _policy(tmp / "policy")
        msgs, fill_s = _fill(tmp / "edge.sqlite", args.n, args.per_slot)
        server_tls = client_tls = None
        if args.tls:
            from tests.test_transport_tls import _cert, _key, _write

            ca_key = _key()
            ca = _cert("bench CA", ca_key, None, None, ca=True)
            ca_path = _write(tmp, "ca", ca, ca_key)[0]
            k = _key()
            server_tls = TlsFiles(*_write(tmp, "fog", _cert("fog", k, ca, ca_key, server=True), k), ca_path)
            k = _key()
            client_tls = TlsFiles(*_write(tmp, "edge", _cert("edge", k, ca, ca_key), k), ca_path)
        fog = FogServer(FogConfig(listen="127.0.0.1:0", policy_dir=policy, cloud_url="http://127.0.0.1:9",
                                  ingest_key="unused-key", sites=1, outbox_path=tmp / "outbox.sqlite",
                                  tls=server_tls, drain_s=0)).start()
        try:
            edge = EdgeDaemon(EdgeConfig(site_id="bench", fog=f"localhost:{fog.port}", fusion_dir=policy,
                                         buffer_path=tmp / "edge.sqlite", tls=client_tls,
                                         buffer_capacity=2 * args.n + 10),
                              embedder=TextEmbedder(), source=iter(()))
            t0 = time.perf_counter()
            edge.start()
            assert edge.wait(timeout=600), edge.stats()
            elapsed = time.perf_counter() - t0
            edge.stop()
            stats = fog.stats()
        finally:
            fog.stop()
    n_obs = stats["decisions"]
    result = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "cpu_count": os.cpu_count(), "load_1m": os.getloadavg()[0]},
              "transport": "mTLS" if args.tls else "plaintext", "observations": n_obs, "messages": msgs,
              "per_slot": args.per_slot, "seconds": round(elapsed, 3),
              "observations_per_s": round(n_obs / elapsed, 1), "messages_per_s": round(msgs / elapsed, 1),
              "buffer_fill_observations_per_s": round(args.n / fill_s, 1), "ticks": stats["ticks_closed"]}
    print(json.dumps(result, indent=1))
    if args.out:
        old = json.loads(args.out.read_text()) if args.out.is_file() else []
        args.out.write_text(json.dumps([*old, result], indent=1) + "\n")


if __name__ == "__main__":
    main()
