"""``marlids_ids_v1`` — defenders raise alerts, an attacker picks ATT&CK techniques; trace-driven.

A PettingZoo ``ParallelEnv``. One tick = one window for every site.

Agents
------
``defender_0 … defender_{N-1}`` (one per edge site; default N = 4) and ``attacker_0``. At every reset
each defender is given a site of the trace set, drawn with ``self.np_random`` (distinct sites while there
are at least N), so training visits every recorded site — each standardised by its own baseline — and the
shared actor learns a policy for sites in general, not for a fixed few. Every agent acts on every step.

Spaces
------
================  =================================================  ==========================================
agent             observation                                        action
================  =================================================  ==========================================
defender_i        ``Box(-10, 10, (519,), float32)``: the fused       ``MultiDiscrete([5, C])``: alert level 0–4
                  Observation of :mod:`edge.observation` (the same   × attack class (:data:`ATTACK_CLASSES`,
                  function the edge runtime uses)                    C = 7)
attacker_0        ``Box(0, 1, (6,), float32)``: budget left,         ``Discrete(1 + K·N)``: 0 = wait, else
                  attack active, attack progress, episode progress,  technique k of the K recorded ones ×
                  last and mean alert level it provoked (÷ 4)        target defender
================  =================================================  ==========================================

Transitions
-----------
Benign ticks sample a benign window of the site (``self.np_random``). When the attacker launches
technique k on defender j (only when no attack runs and budget is left), defender j's next ticks
replay a recorded episode of k — preferably one recorded at j's site — window by window (malicious
windows and their benign background, in time order); the attack ends with the episode. Actions that
launch during an attack are waits. Episodes end by truncation after ``max_steps`` ticks.

Rewards (:class:`RewardConfig`, cost-sensitive)
-----------------------------------------------
An *alert* is level ≥ 2. Per defender and tick: malicious window alerted +1.0 (+0.5 for the right
class), missed −1.0; benign window alerted −2.0 (a false positive costs more than a detection earns,
so the policy learns a low FPR), quiet +0.05. Team term: each defender receives
``(1 − 0.5)·own + 0.5·mean(all defenders' own)``. Attacker, per malicious window it causes: +1.0
undetected, −1.0 detected, and −0.1 per tick of an active attack.

Infos carry the ground truth for metrics only (``label``, ``attack_class``, ``technique_id``, and the
episode's running confusion counts in ``infos["attacker_0"]["stats"]``); it is never part of an
observation or of the critic's state.

Version history: v1 — defenders draw their sites at each reset (v0 fixed defender *i* to site
``sites[i % len(sites)]``, so only the first N sites of a larger trace set were ever replayed); v0 — first
version.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv

from edge.observation import OBS_DIM, Z_CLIP
from fog.alerts import ALERT_LEVELS, ALERT_THRESHOLD
from fog.attacks import ATTACK_CLASSES
from fog.traces import TraceSet

__all__ = ["ALERT_LEVELS", "ALERT_THRESHOLD", "MarlIdsEnv", "RewardConfig"]
ATTACKER_OBS_DIM = 6
#: Running counts of an episode, in ``infos["attacker_0"]["stats"]``: defender decisions on windows
#: (alert = level ≥ 2) and attacks launched. Metrics only; never observed.
STAT_KEYS = ("tp", "fp", "fn", "tn", "class_correct", "launches")


@dataclass(frozen=True)
class RewardConfig:
    """Reward values (module docstring). ``fp_cost > tp_reward`` makes the policy cost-sensitive."""

    tp_reward: float = 1.0
    class_bonus: float = 0.5
    fn_cost: float = 1.0
    fp_cost: float = 2.0
    tn_reward: float = 0.05
    team_weight: float = 0.5
    attacker_undetected: float = 1.0
    attacker_detected: float = 1.0
    attacker_step_cost: float = 0.1


class MarlIdsEnv(ParallelEnv):
    """Multi-agent IDS environment (module docstring for spaces and rewards).

    Parameters
    ----------
    traces : TraceSet
        Labeled windows with Observations, benign pools and attack episodes.
    n_defenders : int, default 4
        Defender agents (edge sites).
    max_steps : int, default 200
        Ticks per episode.
    attack_budget : int, default 3
        Attacks the attacker may launch per episode.
    rewards : RewardConfig, optional

    Raises
    ------
    ValueError
        For ``n_defenders`` < 1, ``max_steps`` < 1, a negative ``attack_budget``, or traces without
        attack episodes.
    """

    metadata = {"name": "marlids_ids_v1", "render_modes": [], "is_parallelizable": True}

    def __init__(self, traces: TraceSet, n_defenders: int = 4, max_steps: int = 200, attack_budget: int = 3,
                 rewards: RewardConfig | None = None, render_mode: str | None = None) -> None:
        if n_defenders < 1:
            raise ValueError(f"n_defenders must be ≥ 1, got {n_defenders!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be ≥ 1, got {max_steps!r}")
        if attack_budget < 0:
            raise ValueError(f"attack_budget must be ≥ 0, got {attack_budget!r}")
        if not traces.episodes:
            raise ValueError("traces hold no attack episode: record or mix captures with ground truth first")
        self.traces = traces
        self.n_defenders = n_defenders
        self.max_steps = max_steps
        self.attack_budget = attack_budget
        self.rewards = rewards or RewardConfig()
        self.render_mode = render_mode
        self.defenders = [f"defender_{i}" for i in range(n_defenders)]
        self.possible_agents = [*self.defenders, "attacker_0"]
        self.techniques = traces.techniques
        sites = traces.sites
        self.sites = sites
        self.defender_site = [sites[i % len(sites)] for i in range(n_defenders)]  # drawn again at every reset
        self._episodes_by = {}
        for k, tid in enumerate(self.techniques):
            eps = [e for e in traces.episodes if e.technique_id == tid]
            for site in sites:
                local = [e for e in eps if e.site == site]
                self._episodes_by[(k, site)] = local or eps
        self.np_random, _ = seeding.np_random(None)
        self.agents: list[str] = []

    # -- spaces -----------------------------------------------------------------------------
    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent: str) -> spaces.Box:  # noqa: D102
        if agent == "attacker_0":
            return spaces.Box(0.0, 1.0, (ATTACKER_OBS_DIM,), np.float32)
        return spaces.Box(-Z_CLIP, Z_CLIP, (OBS_DIM,), np.float32)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent: str) -> spaces.Space:  # noqa: D102
        if agent == "attacker_0":
            return spaces.Discrete(1 + len(self.techniques) * self.n_defenders)
        return spaces.MultiDiscrete([ALERT_LEVELS, len(ATTACK_CLASSES)])

    # -- dynamics ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None):  # noqa: D102
        if seed is not None:
            self.np_random, _ = seeding.np_random(seed)
        self.agents = list(self.possible_agents)
        picks = self.np_random.choice(len(self.sites), self.n_defenders, replace=len(self.sites) < self.n_defenders)
        self.defender_site = [self.sites[int(i)] for i in picks]
        self._t = 0
        self._budget = self.attack_budget
        self._attack: dict | None = None  # {"target", "rows", "pos", "levels"}
        self._last_level = 0.0
        self._mean_level_last_attack = 0.0
        self._current = np.array([self._benign_row(j) for j in range(self.n_defenders)])
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        obs = self._observe()
        infos = self._infos()
        return obs, infos

    def _benign_row(self, j: int) -> int:
        pool = self.traces.benign[self.defender_site[j]]
        return int(pool[self.np_random.integers(len(pool))])

    def _observe(self) -> dict[str, np.ndarray]:
        obs = {d: self.traces.obs[self._current[j]] for j, d in enumerate(self.defenders)}
        a = self._attack
        obs["attacker_0"] = np.array([
            self._budget / max(self.attack_budget, 1),
            float(a is not None),
            (a["pos"] / len(a["rows"])) if a else 0.0,
            self._t / self.max_steps,
            self._last_level / (ALERT_LEVELS - 1),
            self._mean_level_last_attack / (ALERT_LEVELS - 1),
        ], dtype=np.float32)
        return obs

    def _infos(self) -> dict[str, dict]:
        tr = self.traces
        infos = {d: {"label": int(tr.label[r]), "attack_class": int(tr.attack_class[r]),
                     "technique_id": str(tr.technique_id[r])}
                 for d, r in zip(self.defenders, self._current)}
        infos["attacker_0"] = {"attack_active": self._attack is not None, "budget": self._budget,
                               "stats": dict(self.stats)}
        return infos

    def step(self, actions: dict):  # noqa: D102
        if not self.agents:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        rc = self.rewards
        tr = self.traces
        own = np.zeros(self.n_defenders)
        att_r = 0.0
        # 1. score the defenders' decisions on the windows they observed
        levels = np.zeros(self.n_defenders)
        for j, d in enumerate(self.defenders):
            level, cls = (int(x) for x in np.asarray(actions[d]).reshape(-1)[:2])
            levels[j] = level
            row = self._current[j]
            alert = level >= ALERT_THRESHOLD
            st = self.stats
            if tr.label[row]:
                own[j] = rc.tp_reward + (rc.class_bonus if cls == tr.attack_class[row] else 0.0) if alert \
                    else -rc.fn_cost
                att_r += -rc.attacker_detected if alert else rc.attacker_undetected
                st["tp" if alert else "fn"] += 1
                st["class_correct"] += int(alert and cls == tr.attack_class[row])
            else:
                own[j] = -rc.fp_cost if alert else rc.tn_reward
                st["fp" if alert else "tn"] += 1
        if self._attack is not None:
            a = self._attack
            att_r -= rc.attacker_step_cost
            self._last_level = float(levels[a["target"]])
            a["levels"].append(self._last_level)
        # 2. the attacker's move
        act = int(np.asarray(actions["attacker_0"]).reshape(-1)[0])
        if act > 0 and self._attack is None and self._budget > 0:
            k, target = divmod(act - 1, self.n_defenders)
            eps = self._episodes_by[(k, self.defender_site[target])]
            ep = eps[int(self.np_random.integers(len(eps)))]
            self._attack = {"target": target, "rows": ep.indices, "pos": 0, "levels": []}
            self._budget -= 1
            self.stats["launches"] += 1
        # 3. next windows
        self._t += 1
        nxt = [self._benign_row(j) for j in range(self.n_defenders)]
        if self._attack is not None:
            a = self._attack
            if a["pos"] < len(a["rows"]):
                nxt[a["target"]] = int(a["rows"][a["pos"]])
                a["pos"] += 1
            else:
                self._mean_level_last_attack = float(np.mean(a["levels"])) if a["levels"] else 0.0
                self._attack = None
        self._current = np.array(nxt)
        team = own.mean()
        rewards = {d: float((1 - rc.team_weight) * own[j] + rc.team_weight * team)
                   for j, d in enumerate(self.defenders)}
        rewards["attacker_0"] = float(att_r)
        done = self._t >= self.max_steps
        terminations = {a: False for a in self.agents}
        truncations = {a: done for a in self.agents}
        obs = self._observe()
        infos = self._infos()
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos

    def render(self) -> None:  # noqa: D102 - no rendering
        return None

    def close(self) -> None:  # noqa: D102
        return None
