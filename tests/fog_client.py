"""A minimal edge for fog tests: stream one decided window over gRPC and wait for its Ack (no torch, no
MiniLM: the Observation is synthetic, of the layout the fog expects)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from edge.features import N_FEATURES
from edge.observation import OBS_DIM


def current_policy(directory: Path) -> Path:
    """A defender policy folder (``actor.json``, ``actor.pt``) of this version's Observation layout — the
    tests' own, so they do not depend on the bundled model being retrained for the current layout."""
    from tests.transport_support import threshold_actor

    threshold_actor(2.0).save(directory, meta={"run": "fog-test"})
    return Path(directory)


def decide_one_window(port: int, *, site: str = "site_a", device: str = "10.0.0.7", t_start: float = 1764000000.0,
                      timeout: float = 60.0) -> int:
    """Send Hello, one Observation (seq 1) and a Watermark closing its tick (seq 2) to the fog on
    127.0.0.1:``port`` (plaintext); return the highest ``ack_seq`` received (2 once the window is decided
    and committed)."""
    import grpc

    from edge.transport import observation_pb2 as pb
    from edge.transport.wire import CHANNEL_OPTIONS, hello_message, raw_stream_callable

    o = pb.Observation(seq=1, site_id=site, device_id=device, t_start=t_start, t_end=t_start + 5.0,
                       proto_text="TCP out: hundreds of packets to hundreds of ports, SYN-only, unanswered.")
    o.features.extend(np.linspace(0.0, 50.0, N_FEATURES, dtype=np.float32).tolist())
    vec = np.zeros(OBS_DIM, np.float32)
    vec[:N_FEATURES] = np.linspace(-3.0, 9.0, N_FEATURES, dtype=np.float32)
    o.vector.extend(vec.tolist())
    o.features_z.extend(vec[:N_FEATURES].tolist())
    o.baseline.extend([1.0] * N_FEATURES)
    o.baseline_spread.extend([0.5] * N_FEATURES)
    o.baseline_scope = "device"
    w = pb.Watermark(seq=2, site_id=site, t_end=t_start + 5.0, n_observations=1)
    done = threading.Event()

    def messages():
        yield hello_message(site_id=site, edge_id="fog-test-edge", window_s=5.0, grace_s=0.0).SerializeToString()
        yield pb.EdgeMessage(observation=o).SerializeToString()
        yield pb.EdgeMessage(watermark=w).SerializeToString()
        done.wait(timeout)

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS)
    best = 0
    try:
        for ack in raw_stream_callable(channel)(messages(), timeout=timeout):
            best = max(best, ack.ack_seq)
            if best >= 2:
                break
    finally:
        done.set()
        channel.close()
    return best
