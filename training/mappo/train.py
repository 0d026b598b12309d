"""MAPPO training loop: data → env → RLlib → TensorBoard, checkpoints, exported defender actor.

Reading order (CleanRL style): :class:`~training.mappo.config.MappoArgs` holds every setting;
:func:`prepare_data` turns labeled captures into trace sets; :func:`train` runs the loop.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from edge.observation import FusionPipeline
from training.mappo.config import DEFENDER, DEFENDER_LEAGUE, MappoArgs

log = logging.getLogger(__name__)


def single_thread() -> None:
    """One intra-op thread per process: on small MLPs, torch's thread pool on 2 cores shared with Ray
    workers made every ``Linear`` call ~100× slower (measured: 2.9 ms vs 0.03 ms)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def prepare_data(args: MappoArgs, scorer_dir: Path | None = None):
    """Labeled windows → (fitted fusion pipeline, train trace set, held-out frame, held-out trace set).

    Every capture is standardised by its own site baseline as in deployment (:func:`training.data.observations`,
    grace period ``args.grace_s``); the scale floor is fitted on the benign windows of the training part only.
    With ``args.scorer_epochs`` the temporal scorer is trained first on the training part's benign windows
    and written to ``scorer_dir``.
    """
    from edge.paths import BUNDLED_CAPTURES
    from fog.traces import TraceSet
    from training.data import (
        benign_capture,
        benign_sites,
        load_labeled_embedded,
        observations,
        split_by_time,
    )

    sources = args.data or sorted(str(p) for p in BUNDLED_CAPTURES.glob("*.pcap"))
    if not sources:
        raise FileNotFoundError(f"no training data: pass --data or add captures to {BUNDLED_CAPTURES}")
    frame, emb = load_labeled_embedded(sources)  # cached by content: a rerun never meters or embeds again
    if args.benign:
        parts = [benign_capture(site) for p in args.benign for site in benign_sites(p)]
        frame = pd.concat([frame, *(f for f, _ in parts)], ignore_index=True)
        emb = np.concatenate([emb, *(e for _, e in parts)])
    frame = frame.assign(_row=np.arange(len(frame)))
    if args.train_fraction >= 1.0:  # everything trains; nothing is held out
        train_df, test_df = frame, frame.iloc[:0]
    else:
        train_df, test_df = split_by_time(frame, args.train_fraction)
    scorer = args.scorer
    if args.scorer_epochs > 0:
        from edge.scorer import export_onnx, save_checkpoint
        from training.scorer.train import TrainConfig, train_from_frame

        if scorer_dir is None:
            raise ValueError("scorer_epochs needs a folder for the scorer")
        log.info("training the temporal scorer (%d epochs) on %d benign windows", args.scorer_epochs,
                 int((train_df["label"] == 0).sum()))
        net, threshold, summary = train_from_frame(
            train_df.drop(columns=["_row"]), TrainConfig(seq_len=args.scorer_seq_len, epochs=args.scorer_epochs,
                                                         seed=args.seed, grace_s=args.grace_s))
        save_checkpoint(scorer_dir, net, threshold, extra=summary)
        export_onnx(net, Path(scorer_dir) / "scorer.onnx")
        scorer = str(scorer_dir)
    pipe = FusionPipeline(scorer, baseline={"grace_s": args.grace_s}).fit(train_df)
    obs = observations(frame, pipe, emb)
    train_ts = TraceSet.from_frame(train_df, obs[train_df["_row"].to_numpy()])
    test_ts = TraceSet.from_frame(test_df, obs[test_df["_row"].to_numpy()]) if (test_df["label"] == 1).any() else None
    log.info("training data: %d windows (%d malicious), %d episodes of %s; held out: %d windows",
             len(train_df), int(train_df["label"].sum()), len(train_ts.episodes), train_ts.techniques, len(test_df))
    return pipe, train_ts, test_df, test_ts


def export_policy(algo, pipe: FusionPipeline, directory: Path, meta: dict) -> Path:
    """Write the trained defender actor (``fog.policy.DefenderActor``) and the fusion pipeline, Ray-free.

    The temporal-scorer checkpoint, when there is one, is copied into ``directory/scorer`` and referenced
    relatively, so the exported folder is self-contained and can be moved (e.g. bundled under ``models/``).
    """
    import copy
    import shutil

    module = algo.get_module(DEFENDER)
    module.actor.save(directory, meta=meta)
    if pipe.scorer_dir:
        shutil.copytree(pipe.scorer_dir, Path(directory) / "scorer", dirs_exist_ok=True)
        pipe = copy.copy(pipe)
        pipe.scorer_dir = "scorer"
    pipe.save(directory)
    return directory


def export_snapshot(run_dir: str | Path, iteration: int, out: str | Path) -> Path:
    """Export the defender actor of checkpoint ``iteration`` of a training run as a policy folder, Ray-free.

    The folder is the run's exported ``policy/`` (fusion pipeline, temporal scorer) with the actor of the
    defender module restored from ``checkpoints/iter_<iteration>`` by RLlib (``RLModule.from_checkpoint``);
    ``actor.json`` records the iteration in its ``meta``.

    Parameters
    ----------
    run_dir : str or Path
        Run folder of ``marlids train mappo`` (with ``policy/`` and ``checkpoints/iter_NNNN``).
    iteration : int
        Training iteration of the checkpoint (``--checkpoint-every`` decides which exist).
    out : str or Path
        Folder to write; files of the same name are overwritten.

    Raises
    ------
    FileNotFoundError
        If the run has no exported policy or no checkpoint of that iteration (the message lists those it has).
    """
    import shutil

    from ray.rllib.core.rl_module.rl_module import RLModule

    run, out = Path(run_dir), Path(out)
    if not (run / "policy" / "actor.json").is_file():
        raise FileNotFoundError(f"{run}: no exported policy/ (is it a `marlids train mappo` run folder?)")
    module_dir = run / "checkpoints" / f"iter_{iteration:04d}" / "learner_group" / "learner" / "rl_module" / DEFENDER
    if not module_dir.is_dir():
        have = sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("iter_*") if p.name[5:].isdigit())
        raise FileNotFoundError(f"{run}: no checkpoint of iteration {iteration} (checkpoints: {have or 'none'})")
    if out.resolve() != (run / "policy").resolve():
        shutil.copytree(run / "policy", out, dirs_exist_ok=True)
    meta = json.loads((run / "policy" / "actor.json").read_text()).get("meta", {})
    RLModule.from_checkpoint(str(module_dir.resolve())).actor.save(out, meta={**meta, "iteration": iteration})
    return out


def train(args: MappoArgs, on_iteration: Callable[[int, dict], None] | None = None, *,
          prepared: tuple | None = None, initial_state: dict | None = None,
          on_actor: Callable[[int, object], dict] | None = None) -> dict:
    """Run MAPPO (with league self-play unless disabled); return the final metrics and output paths.

    Parameters
    ----------
    args : MappoArgs
    on_iteration : callable, optional
        ``(iteration, metrics)`` after every iteration (progress display).
    prepared : tuple, optional
        ``(FusionPipeline, TraceSet)`` to train on instead of loading ``args.data`` (experiments).
    initial_state : dict, optional
        RLModule state of the defender module (``final["defender_state"]`` of an earlier run) to start
        from: fine-tuning, e.g. online adaptation in ``marlids experiment drift``.
    on_actor : callable, optional
        ``on_actor(iteration, actor) -> dict`` after every iteration with the current shared defender actor
        (:class:`fog.policy.DefenderActor`, torch, in this process), before ``on_iteration``; its numbers are
        added to the iteration's metrics (e.g. held-out F1, ``benchmarks/bench_training.py``). Its time is not
        part of ``charts/iteration_s`` nor of ``train_seconds``.

    Returns
    -------
    dict
        Last iteration's metrics, ``run_dir``, ``checkpoint``, ``policy_dir``, ``train_seconds`` and
        ``defender_state`` (not written to ``final_metrics.json``).

    Raises
    ------
    FileNotFoundError
        Without training data.
    """
    if args.attacker_only and initial_state is None:
        raise ValueError("attacker_only needs initial_state: the defender the attacker trains against")
    single_thread()
    import ray
    from ray.tune.registry import register_env
    from torch.utils.tensorboard import SummaryWriter

    from fog.env import MarlIdsEnv, RewardConfig
    from training.mappo.callbacks import LeagueMapping, LeagueSelfPlay, detection_scores, set_module_states
    from training.mappo.config import build_config
    from training.mappo.env import RllibIdsEnv

    run_name = f"{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path(args.out_dir) / run_name
    n = 1
    while run_dir.exists():  # two runs started within the same second
        n += 1
        run_dir = Path(args.out_dir) / f"{run_name}_{n}"
    run_name = run_dir.name
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(args), indent=2, default=str))
    pipe, train_ts = prepared if prepared is not None else prepare_data(args, run_dir / "scorer")[:2]

    def make_env(_cfg=None):
        return RllibIdsEnv({"env": MarlIdsEnv(train_ts, n_defenders=args.n_defenders, max_steps=args.max_steps,
                                              attack_budget=args.attack_budget,
                                              rewards=RewardConfig(class_bonus=args.class_bonus)),
                            "supervised_target": args.aux_coeff > 0})

    if not ray.is_initialized():
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}},
                 **({} if args.address else {"num_cpus": max(2, args.num_env_runners + 1)}))
    env_name = f"marlids_ids_v1__{run_name}"
    register_env(env_name, make_env)
    league = LeagueSelfPlay(args.self_play and not args.attacker_only, args.snapshot_every, args.league_size,
                            args.seed)
    mapping_fn = LeagueMapping(args.self_play, attacker_only=args.attacker_only,
                               random_attacker_share=args.random_attacker_share)
    probe = make_env()
    spaces = {"defender": (probe.observation_spaces["defender_0"], probe.action_spaces["defender_0"]),
              "attacker": (probe.observation_spaces["attacker_0"], probe.action_spaces["attacker_0"])}
    algo = build_config(args, env_name, mapping_fn, spaces).build_algo()
    if args.resume:
        algo.restore_from_path(str(Path(args.resume).resolve()))
        log.info("resumed from %s at iteration %d", args.resume, algo.iteration)
    if initial_state is not None:
        set_module_states(algo, {DEFENDER_LEAGUE if args.attacker_only else DEFENDER: initial_state})
    writer = SummaryWriter(str(run_dir))
    final: dict = {}
    t_start = time.perf_counter()
    hook_s = 0.0  # time spent in on_actor, left out of train_seconds
    try:
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            result = algo.train()
            it = algo.iteration
            dt = time.perf_counter() - t0
            er = result.get("env_runners", {})
            lr = result.get("learners", {})
            timers = result.get("timers", {})
            det = detection_scores({k.split("/", 1)[1]: v for k, v in er.items()
                                    if str(k).startswith("train_attacker/" if args.attacker_only
                                                         else "train_defender/")})
            atk = detection_scores({k.split("/", 1)[1]: v for k, v in er.items()
                                    if str(k).startswith("train_attacker/")})
            steps = er.get("num_env_steps_sampled", 0) or 0
            scalars = {
                "charts/episode_return_mean": er.get("episode_return_mean", float("nan")),
                "charts/env_steps_per_s": steps / dt if dt else 0.0,
                "charts/iteration_s": dt,
                # RLlib's timers (seconds, smoothed over iterations): rollouts, and the learner's SGD epochs
                "timers/sampling_s": float(timers.get("env_runner_sampling_timer", float("nan"))),
                "timers/learner_update_s": float(timers.get("learner_update_timer", float("nan"))),
                "detection/f1": det["f1"], "detection/fpr": det["fpr"], "detection/precision": det["precision"],
                "detection/recall": det["recall"], "detection/class_accuracy": det["class_accuracy"],
                "detection/attacker_success_rate": atk["attacker_success_rate"]
                if args.self_play or args.attacker_only
                else det["attacker_success_rate"],
            }
            for mid in ("defender", "attacker"):
                m = lr.get(mid, {})
                for k_src, k_dst in (("entropy", "entropy"), ("policy_loss", "policy_loss"),
                                     ("vf_loss", "value_loss"), ("vf_explained_var", "explained_variance"),
                                     ("aux_alert_bce", "aux_alert_bce"), ("aux_class_ce", "aux_class_ce")):
                    if k_src in m:
                        scalars[f"losses/{mid}_{k_dst}"] = float(m[k_src])
            scalars.update({f"charts/{k}": v for k, v in league.after_iteration(algo, it).items()})
            if on_actor is not None:
                t_hook = time.perf_counter()
                scalars.update(on_actor(it, algo.get_module(DEFENDER).actor))
                hook_s += time.perf_counter() - t_hook
            for k, v in scalars.items():
                writer.add_scalar(k, float(v), it)
            final = {"iteration": it, **scalars}
            if on_iteration is not None:
                on_iteration(it, final)
            if it % args.checkpoint_every == 0:
                algo.save_to_path(str((run_dir / "checkpoints" / f"iter_{it:04d}").resolve()))
        ckpt = run_dir / "checkpoints" / f"iter_{algo.iteration:04d}"
        if not ckpt.exists():
            algo.save_to_path(str(ckpt.resolve()))
        if args.attacker_only:  # the defender was frozen: nothing new to export
            defender_state, policy_dir = initial_state, None
        else:
            defender_state = algo.get_module(DEFENDER).get_state(inference_only=False)
            policy_dir = export_policy(algo, pipe, run_dir / "policy",
                                       meta={"run": run_name, "iteration": algo.iteration, "seed": args.seed,
                                             "centralized_critic": args.centralized_critic,
                                             "self_play": args.self_play})
    finally:
        writer.close()
        algo.stop()
    final.update({"run_dir": str(run_dir), "checkpoint": str(ckpt), "policy_dir": str(policy_dir) if policy_dir else None,
                  "train_seconds": time.perf_counter() - t_start - hook_s})
    (run_dir / "final_metrics.json").write_text(json.dumps(final, indent=2, default=float))
    final["defender_state"] = defender_state
    return final


