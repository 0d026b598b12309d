"""Every MAPPO hyper-parameter in one documented dataclass, and the one function that builds RLlib's config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.settings import setting
from training.mappo.ids import ATTACKER, ATTACKER_LEAGUE, ATTACKER_RANDOM, DEFENDER, DEFENDER_LEAGUE

__all__ = ["ATTACKER", "ATTACKER_LEAGUE", "ATTACKER_RANDOM", "DEFENDER", "DEFENDER_LEAGUE", "MappoArgs", "build_config"]


@dataclass
class MappoArgs:
    """MAPPO run configuration: the options of ``marlids train mappo`` are generated from these fields
    (:func:`edge.settings.settings_command`); each field's ``help`` is its documentation."""

    exp_name: str = setting("mappo", help="Run name prefix: runs are named {exp}__{seed}__{unix time}.")
    seed: int = setting(0, help="Seed of the env, the league sampling and the networks.")
    data: list[str] = setting(default_factory=list, cli_type=list[Path], convert=lambda v: [str(p) for p in v],
                              help="Labeled Parquet, capture with <name>.groundtruth.csv, or a folder of such "
                                   "captures; repeatable (default: the bundled range captures).")
    benign: list[str] = setting(default_factory=list, cli_type=list[Path], convert=lambda v: [str(p) for p in v],
                                help="Benign-only site (training.data.benign_sites): a capture, a folder of captures "
                                     "(one site) or a folder of such folders (one site each, e.g. iot-sentinel/); "
                                     "every window labeled benign; repeatable.")
    scorer: str | None = setting(None, cli_type=Path | None, convert=str,
                                 help="Temporal-scorer checkpoint for the score part of the Observation "
                                      "(none: score unavailable).")
    scorer_epochs: int = setting(0, min=0, help="Train the temporal scorer first on the training data's benign windows "
                                                "(this many epochs; written to <run>/scorer and bundled with the "
                                                "policy) instead of --scorer.")
    scorer_seq_len: int = setting(10, min=2, help="Windows per scorer sequence (T) of a scorer trained with "
                                                  "--scorer-epochs.")
    grace_s: float = setting(60.0, flag="--grace", min=0.0,
                             help="Grace period of each capture's site baseline, seconds (edge.baseline), as in "
                                  "deployment.")
    train_fraction: float = setting(0.7, min=0.01, max=1.0,
                                    help="Share of each capture's attack episodes (in time order) to train on; the "
                                         "rest is held out (1.0 trains on everything).")
    n_defenders: int = setting(4, min=1, help="Defender agents (edge sites) per environment.")
    max_steps: int = setting(200, min=1, help="Ticks (windows) per episode.")
    attack_budget: int = setting(3, min=0, help="Attacks the attacker may launch per episode.")
    class_bonus: float = setting(0.5, min=0.0, help="Defender reward for naming the right attack class on a detected "
                                                    "window (fog.env.RewardConfig).")
    iterations: int = setting(30, min=1, help="Training iterations (one rollout + learner update each).")
    train_batch_size: int = setting(4000, min=100, help="Env steps per iteration and learner.")
    minibatch_size: int = setting(1000, min=10, help="SGD minibatch (agent steps).")
    num_epochs: int = setting(4, min=1, help="SGD passes over each train batch.")
    lr: float = setting(3e-4, help="Adam learning rate.")
    gamma: float = setting(0.95, min=0.0, max=1.0,
                           help="Discount factor of the returns (GAE) of every trained module.")
    lambda_: float = 0.95
    """GAE λ"""
    clip_param: float = 0.2
    """PPO ratio clip"""
    entropy_coeff: float = setting(0.01, min=0.0, help="Entropy bonus of the PPO loss (weight of the exploration term).")
    vf_loss_coeff: float = 0.5
    """value-loss weight"""
    aux_coeff: float = setting(0.5, min=0.0,
                               help="Weight of the supervised auxiliary loss on the defender actor (cross-entropy "
                                    "of P(alert) against each window's label and of its class logits against "
                                    "the attack class; training.mappo.learner); 0: PPO's loss alone. The bundled "
                                    "defender's 0.5 (models/README.md).")
    centralized_critic: bool = setting(True, help="MAPPO (critic on all defenders' Observations, the default) or IPPO "
                                                  "(critic on the own Observation).")
    actor_hidden: tuple[int, ...] = (128, 64)
    """hidden sizes of the shared defender actor"""
    critic_hidden: tuple[int, ...] = (256, 128)
    """hidden sizes of the critic"""
    self_play: bool = setting(True, help="League self-play: train the attacker with PPO against a league of frozen "
                                         "defender snapshots and vice versa (default), or a fixed random attacker.")
    random_attacker_share: float = setting(0.0, min=0.0, max=1.0,
                                           help="Share of the defender-training episodes played against a "
                                                "never-trained (random) attacker, on top of the league "
                                                "(training.mappo.callbacks.LeagueMapping).")
    attacker_only: bool = False
    """freeze the defenders at ``train(initial_state=…)`` and train only the attacker (an adaptive
    attacker's best response, used by ``marlids experiment selfplay``); implies no league snapshots"""
    snapshot_every: int = setting(5, min=1, help="Iterations between league snapshots.")
    league_size: int = 5
    """snapshots kept per side (oldest dropped)"""
    num_env_runners: int = setting(0, min=0, help="Remote env runners (0: sample in the driver).")
    num_envs_per_env_runner: int = setting(4, min=1, help="Vectorised environments per env runner.")
    num_learners: int = setting(0, min=0, help="Remote learners (0: learn in the driver).")
    num_gpus_per_learner: float = setting(0.0, min=0.0, help="GPUs per learner (e.g. 1 on a GPU node).")
    address: str | None = setting(None, help="Ray cluster address (ray://host:10001 or auto); local Ray when unset.")
    checkpoint_every: int = setting(10, min=1, help="Iterations between checkpoints (and one at the end).")
    out_dir: str = setting("runs", cli_type=Path, convert=str,
                           help="Runs folder: TensorBoard events, checkpoints and the exported defender actor.")
    resume: str | None = setting(None, cli_type=Path | None, convert=str, help="Checkpoint folder to resume from.")


def defender_model_config(args: MappoArgs) -> dict:
    """``model_config`` of :class:`training.mappo.module.MappoDefenderModule`."""
    return {"actor_hidden": tuple(args.actor_hidden), "critic_hidden": tuple(args.critic_hidden),
            "centralized_critic": args.centralized_critic, "supervised_target": args.aux_coeff > 0}


def build_config(args: MappoArgs, env_name: str, mapping_fn, spaces: dict):
    """The RLlib PPO config chain for MAPPO with league self-play (one place, one fluent chain).

    Parameters
    ----------
    args : MappoArgs
    env_name : str
        Registered name of the :class:`training.mappo.env.RllibIdsEnv` creator.
    mapping_fn : callable
        ``(agent_id, episode) -> module_id`` (see :class:`training.mappo.callbacks.LeagueSelfPlay`).
    spaces : dict
        ``{"defender": (obs_space, act_space), "attacker": (obs_space, act_space)}`` of the env; given
        explicitly because the mapping depends on the episode.
    """
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from training.mappo.callbacks import DetectionMetrics
    from training.mappo.learner import AUX_COEFF_KEY, MappoLearner
    from training.mappo.module import MappoDefenderModule

    dspec = RLModuleSpec(module_class=MappoDefenderModule, model_config=defender_model_config(args),
                         observation_space=spaces["defender"][0], action_space=spaces["defender"][1])
    aspec = RLModuleSpec(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"},
                         observation_space=spaces["attacker"][0], action_space=spaces["attacker"][1])
    trained = [ATTACKER] if args.attacker_only else [DEFENDER, ATTACKER] if args.self_play else [DEFENDER]
    modules = {DEFENDER: dspec, DEFENDER_LEAGUE: dspec, ATTACKER: aspec, ATTACKER_LEAGUE: aspec}
    if args.random_attacker_share > 0:  # only then, so runs without it keep their exact module set
        modules[ATTACKER_RANDOM] = aspec
    return (
        PPOConfig()
        .environment(env_name)
        .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=args.num_envs_per_env_runner,
                     rollout_fragment_length="auto", num_cpus_per_env_runner=1)
        .learners(num_learners=args.num_learners, num_gpus_per_learner=args.num_gpus_per_learner,
                  learner_class=MappoLearner, learner_config_dict={AUX_COEFF_KEY: args.aux_coeff})
        .training(train_batch_size_per_learner=args.train_batch_size, minibatch_size=args.minibatch_size,
                  num_epochs=args.num_epochs, lr=args.lr, gamma=args.gamma, lambda_=args.lambda_,
                  clip_param=args.clip_param, entropy_coeff=args.entropy_coeff, vf_loss_coeff=args.vf_loss_coeff,
                  use_kl_loss=False)
        .multi_agent(policies=[DEFENDER, ATTACKER, DEFENDER_LEAGUE, ATTACKER_LEAGUE,  # a list: set order is per process
                               *([ATTACKER_RANDOM] if ATTACKER_RANDOM in modules else [])],
                     policy_mapping_fn=mapping_fn, policies_to_train=trained)
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=modules))
        .callbacks(DetectionMetrics)
        .debugging(seed=args.seed, log_level="WARN")
    )
