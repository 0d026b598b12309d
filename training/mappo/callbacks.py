"""Detection metrics from rollouts, and the league self-play schedule."""

from __future__ import annotations

import logging

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from fog.env import STAT_KEYS
from training.mappo.ids import ATTACKER, ATTACKER_LEAGUE, ATTACKER_RANDOM, DEFENDER, DEFENDER_LEAGUE

log = logging.getLogger(__name__)


class DetectionMetrics(RLlibCallback):
    """Sum each episode's confusion counts (``infos["attacker_0"]["stats"]``) into the env-runner metrics.

    The episode's mode (``train_defender`` or ``train_attacker``, see :class:`LeagueSelfPlay`) prefixes
    the keys, so detection quality is read from episodes where the *trained* defender played.
    """

    def on_episode_end(self, *, episode, metrics_logger=None, **kwargs) -> None:  # noqa: D102
        infos = episode.get_infos(-1)
        stats = (infos.get("attacker_0") or {}).get("stats")
        if not stats or metrics_logger is None:
            return
        mode = "train_attacker" if episode.module_for("defender_0") == DEFENDER_LEAGUE else "train_defender"
        for k in STAT_KEYS:
            metrics_logger.log_value(f"{mode}/{k}", stats[k], reduce="sum")  # per-iteration sum


def detection_scores(counts: dict) -> dict[str, float]:
    """Per-window precision, recall, F1, FPR and attacker success from summed confusion counts."""
    tp, fp, fn, tn = (float(counts.get(k, 0)) for k in ("tp", "fp", "fn", "tn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "attacker_success_rate": fn / (tp + fn) if tp + fn else 0.0,
            "class_accuracy": float(counts.get("class_correct", 0)) / tp if tp else 0.0}


class LeagueMapping:
    """RLlib ``policy_mapping_fn``: alternate episodes between *train_defender* and *train_attacker*.

    Episodes are numbered in the order this env runner first sees them and odd ones train the attacker
    (when ``self_play``); with ``attacker_only`` every episode trains the attacker against the frozen
    ``defender_league`` (an adaptive attacker's best response to a fixed defender). With
    ``random_attacker_share`` > 0, that share of the *train_defender* episodes (spread evenly) meets
    ``attacker_random``, an attacker module kept at its random initial weights, so the defenders keep
    seeing every recorded technique (and learn its class) while the league attacker avoids the easily
    detected ones. RLlib's episode ids are random UUIDs, so a hash of the id made reruns with the same
    seed differ; per-runner counters keep them identical. Only the last 4,096 ids are remembered.
    """

    def __init__(self, self_play: bool, attacker_only: bool = False, random_attacker_share: float = 0.0) -> None:
        if not 0.0 <= random_attacker_share <= 1.0:
            raise ValueError(f"random_attacker_share must be in [0, 1], got {random_attacker_share!r}")
        self.self_play = self_play
        self.attacker_only = attacker_only
        self.share = random_attacker_share
        self.count = 0
        self.defender_count = 0
        self.modes: dict[str, str] = {}

    def _mode(self) -> str:
        if self.attacker_only or (self.self_play and self.count % 2 == 1):
            return "train_attacker"
        j = self.defender_count
        self.defender_count += 1
        return "vs_random" if int((j + 1) * self.share) > int(j * self.share) else "train_defender"

    def __call__(self, agent_id, episode, **kwargs) -> str:  # noqa: D102
        key = str(episode.id_)
        if key not in self.modes:
            self.modes[key] = self._mode()
            self.count += 1
            if len(self.modes) > 4096:
                self.modes.pop(next(iter(self.modes)))
        mode = self.modes[key]
        if str(agent_id).startswith("attacker"):
            return {"train_attacker": ATTACKER, "vs_random": ATTACKER_RANDOM}.get(mode, ATTACKER_LEAGUE)
        return DEFENDER_LEAGUE if mode == "train_attacker" else DEFENDER


class LeagueSelfPlay:
    """Self-play against a league of frozen snapshots.

    Each episode is either *train_defender* (defenders → trained ``defender``, attacker → frozen
    ``attacker_league``) or *train_attacker* (defenders → frozen ``defender_league``, attacker → trained
    ``attacker``), alternating in the order episodes start (:class:`LeagueMapping`). Every ``snapshot_every`` iterations the current weights of
    both trained modules join their league (at most ``league_size`` each, oldest dropped) and each frozen
    module is loaded with a snapshot drawn uniformly from its league; the attacker's pool also keeps the
    random initial attacker for good, so the defender keeps meeting techniques the trained attacker has
    learned to avoid (without it, easily detected floods vanish from training and their class is never
    learned). Without self-play every episode is
    *train_defender* and ``attacker_league`` stays at its random initial weights (a random attacker).

    Parameters
    ----------
    self_play : bool
    snapshot_every, league_size : int
    seed : int
        Seed of the league sampling.
    """

    def __init__(self, self_play: bool, snapshot_every: int, league_size: int, seed: int) -> None:
        if snapshot_every < 1 or league_size < 1:
            raise ValueError(f"snapshot_every and league_size must be ≥ 1, got {snapshot_every}, {league_size}")
        self.self_play = self_play
        self.snapshot_every = snapshot_every
        self.league_size = league_size
        self.rng = np.random.default_rng(seed)
        self.leagues: dict[str, list] = {DEFENDER: [], ATTACKER: []}
        self.random_attacker = None

    def after_iteration(self, algo, iteration: int) -> dict[str, int]:
        """Snapshot and refresh the frozen modules when the schedule says so; returns league sizes."""
        if self.self_play and iteration % self.snapshot_every == 0:
            if self.random_attacker is None:  # the frozen attacker still holds its random initial weights
                self.random_attacker = algo.get_module(ATTACKER_LEAGUE).get_state(inference_only=False)
            states = {}
            for trained, frozen in ((DEFENDER, DEFENDER_LEAGUE), (ATTACKER, ATTACKER_LEAGUE)):
                league = self.leagues[trained]
                league.append(algo.get_module(trained).get_state(inference_only=False))
                del league[:-self.league_size]
                pool = league + [self.random_attacker] if trained == ATTACKER else league
                states[frozen] = pool[int(self.rng.integers(len(pool)))]
            set_module_states(algo, states)
            log.info("league refreshed at iteration %d: %d defender / %d attacker snapshots", iteration,
                     len(self.leagues[DEFENDER]), len(self.leagues[ATTACKER]))
        return {f"{k}_league_size": len(v) for k, v in self.leagues.items()}


def set_module_states(algo, states: dict) -> None:
    """Load RLModule ``states`` (module ID → state) into the learner and sync them to the env runners."""
    algo.set_state({"learner_group": {"learner": {"rl_module": states}}})
    algo.env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group,
                                       policies=list(states), inference_only=True)
