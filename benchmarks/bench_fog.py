"""Fog/MARL benchmark (not a test): raw env speed, RLlib MAPPO vs plain PPO throughput → JSON.

Run: ``.venv/bin/python benchmarks/bench_fog.py [--out benchmarks/results/fog.json] [--iterations 5]``

* **Raw env agent-steps/s** of ``marlids_ids_v1`` (4 defenders + attacker, random actions) on one
  pinned core. Target ≥ 50,000.
* **RLlib throughput** (env steps/s sampled + trained, one iteration = ``--batch`` env steps) of
  MAPPO (centralized critic) vs plain PPO on the same env (actor and critic on the own
  Observation only, no global state in the observation), both in the driver with 4 vectorised envs.
  Target: MAPPO ≥ 70 % of PPO.

Data: the bundled range captures (labeled with their ground truth), scorer-less Observations.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def raw_env_speed(traces, seconds: float = 5.0) -> dict:
    from fog.env import MarlIdsEnv

    env = MarlIdsEnv(traces, n_defenders=4, max_steps=200)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    n_agents = len(env.possible_agents)
    acts = [{a: env.action_space(a).sample() for a in env.possible_agents} for _ in range(64)]
    for a in env.possible_agents:
        env.action_space(a).seed(0)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _, _, _, trunc, _ = env.step(acts[int(rng.integers(64))])
        steps += 1
        if not env.agents:
            env.reset()
    dt = time.perf_counter() - t0
    return {"env_steps_per_s": round(steps / dt, 1), "agent_steps_per_s": round(steps * n_agents / dt, 1),
            "agents": n_agents}


def rllib_throughput(traces, centralized: bool, iterations: int, batch: int) -> dict:
    from ray.tune.registry import register_env

    from edge.observation import OBS_DIM
    from fog.env import MarlIdsEnv
    from training.mappo.callbacks import LeagueMapping
    from training.mappo.config import MappoArgs, build_config
    from training.mappo.env import RllibIdsEnv

    class OwnObs(RllibIdsEnv):
        def __init__(self, config=None):
            super().__init__(config)
            from gymnasium import spaces
            box = spaces.Box(-10, 10, (OBS_DIM,), np.float32)
            self.observation_spaces = {a: (box if a != "attacker_0" else s) for a, s in self.observation_spaces.items()}

        def _augment(self, obs):
            return obs

    cls = RllibIdsEnv if centralized else OwnObs

    def make_env(_cfg=None):
        return cls({"env": MarlIdsEnv(traces, n_defenders=4, max_steps=200)})

    name = f"bench_{'mappo' if centralized else 'ppo'}"
    register_env(name, make_env)
    args = MappoArgs(train_batch_size=batch, minibatch_size=min(1000, batch), num_epochs=4,
                     centralized_critic=centralized, self_play=True)
    probe = make_env()
    spaces_ = {"defender": (probe.observation_spaces["defender_0"], probe.action_spaces["defender_0"]),
               "attacker": (probe.observation_spaces["attacker_0"], probe.action_spaces["attacker_0"])}
    algo = build_config(args, name, LeagueMapping(True), spaces_).build_algo()
    try:
        algo.train()  # warm-up
        t0 = time.perf_counter()
        for _ in range(iterations):
            algo.train()
        dt = time.perf_counter() - t0
    finally:
        algo.stop()
    return {"iterations": iterations, "env_steps_per_iteration": batch, "seconds": round(dt, 2),
            "env_steps_per_s": round(iterations * batch / dt, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fog.json")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4000)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from edge.observation import FusionPipeline
    from edge.paths import BUNDLED_CAPTURES
    from training.data import build_traces, load_labeled
    from training.mappo.train import single_thread

    single_thread()
    frame = load_labeled(sorted(BUNDLED_CAPTURES.glob("*.pcap")))
    traces = build_traces(frame, FusionPipeline().fit(frame))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    raw = raw_env_speed(traces)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    mappo = rllib_throughput(traces, True, args.iterations, args.batch)
    ppo = rllib_throughput(traces, False, args.iterations, args.batch)
    ray.shutdown()
    result = {"targets": {"raw_agent_steps_per_s": 50000, "mappo_vs_ppo_ratio": 0.7},
              "raw_env": raw, "rllib_mappo": mappo, "rllib_ppo": ppo,
              "mappo_vs_ppo_ratio": round(mappo["env_steps_per_s"] / ppo["env_steps_per_s"], 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
