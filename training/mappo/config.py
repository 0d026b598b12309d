"""Every MAPPO hyper-parameter in one documented dataclass, and the one function that builds RLlib's config."""

from __future__ import annotations

from dataclasses import dataclass, field

from training.mappo.ids import ATTACKER, ATTACKER_LEAGUE, ATTACKER_RANDOM, DEFENDER, DEFENDER_LEAGUE

__all__ = ["ATTACKER", "ATTACKER_LEAGUE", "ATTACKER_RANDOM", "DEFENDER", "DEFENDER_LEAGUE", "MappoArgs", "build_config"]


@dataclass
class MappoArgs:
    """MAPPO run configuration (CLI flags of ``marlids train mappo`` map 1:1 onto these fields)."""

    exp_name: str = "mappo"
    """experiment name; runs are named ``{exp_name}__{seed}__{unix time}``"""
    seed: int = 0
    """seed of the env, the league sampling and the networks"""
    data: list[str] = field(default_factory=list)
    """labeled Parquet files or captures with ``<name>.groundtruth.csv`` beside them (default: bundled)"""
    benign: list[str] = field(default_factory=list)
    """benign-only sites (``training.data.benign_sites``): a capture, a folder of captures (one site) or a
    folder of such folders (one site each), e.g. public IoT captures; every window labeled benign"""
    scorer: str | None = None
    """temporal-scorer checkpoint feeding the score part of the Observation (none: score unavailable)"""
    scorer_epochs: int = 0
    """train the temporal scorer first, on the benign windows of the training data, for this many epochs
    (0: use ``scorer`` as given); it is written to ``<run>/scorer`` and bundled with the policy"""
    scorer_seq_len: int = 10
    """T of the scorer trained with ``scorer_epochs``: windows per sequence"""
    grace_s: float = 60.0
    """grace period of each capture's site baseline, seconds (``edge.baseline``), as in deployment"""
    train_fraction: float = 0.7
    """share of each capture's attack episodes (in time order) used for training; the rest is held out
    (1.0: all of it trains)"""
    n_defenders: int = 4
    """defender agents (edge sites) per environment"""
    max_steps: int = 200
    """ticks (windows) per episode"""
    attack_budget: int = 3
    """attacks the attacker may launch per episode"""
    class_bonus: float = 0.5
    """defender reward for naming the right attack class on a detected window (``fog.env.RewardConfig``)"""
    iterations: int = 30
    """training iterations (one rollout + learner update each)"""
    train_batch_size: int = 4000
    """env steps per iteration and learner"""
    minibatch_size: int = 1000
    """SGD minibatch (agent steps)"""
    num_epochs: int = 4
    """SGD passes over each train batch"""
    lr: float = 3e-4
    """Adam learning rate"""
    gamma: float = 0.95
    """discount factor"""
    lambda_: float = 0.95
    """GAE λ"""
    clip_param: float = 0.2
    """PPO ratio clip"""
    entropy_coeff: float = 0.01
    """entropy bonus"""
    vf_loss_coeff: float = 0.5
    """value-loss weight"""
    centralized_critic: bool = True
    """MAPPO (critic on all defenders' Observations); False gives IPPO"""
    actor_hidden: tuple[int, ...] = (128, 64)
    """hidden sizes of the shared defender actor"""
    critic_hidden: tuple[int, ...] = (256, 128)
    """hidden sizes of the critic"""
    self_play: bool = True
    """train the attacker with PPO against a league of frozen defender snapshots and vice versa"""
    random_attacker_share: float = 0.0
    """share of the defender-training episodes played against a never-trained (random) attacker, on top
    of the league; 0 keeps the plain league (see ``training.mappo.callbacks.LeagueMapping``)"""
    attacker_only: bool = False
    """freeze the defenders at ``train(initial_state=…)`` and train only the attacker (an adaptive
    attacker's best response, used by ``marlids experiment selfplay``); implies no league snapshots"""
    snapshot_every: int = 5
    """iterations between league snapshots"""
    league_size: int = 5
    """snapshots kept per side (oldest dropped)"""
    num_env_runners: int = 0
    """remote env runners (0 = sample in the driver)"""
    num_envs_per_env_runner: int = 4
    """vectorised environments per env runner"""
    num_learners: int = 0
    """remote learners (0 = learn in the driver)"""
    num_gpus_per_learner: float = 0.0
    """GPUs per learner (e.g. 1 on a GPU node)"""
    address: str | None = None
    """Ray cluster address (``ray://host:10001`` or ``auto``); local Ray when unset"""
    checkpoint_every: int = 10
    """iterations between checkpoints (and one at the end)"""
    out_dir: str = "runs"
    """runs folder: TensorBoard events, checkpoints and the exported defender actor"""
    resume: str | None = None
    """checkpoint folder to resume from"""


def defender_model_config(args: MappoArgs) -> dict:
    """``model_config`` of :class:`training.mappo.module.MappoDefenderModule`."""
    return {"actor_hidden": tuple(args.actor_hidden), "critic_hidden": tuple(args.critic_hidden),
            "centralized_critic": args.centralized_critic}


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
        .learners(num_learners=args.num_learners, num_gpus_per_learner=args.num_gpus_per_learner)
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
