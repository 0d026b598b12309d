"""RLlib adapter of ``marlids_ids_v1``: defenders see ``[own Observation | all defenders' Observations]``.

This is MAPPO's *agent-specific global state* (Yu et al., "The Surprising Effectiveness of PPO in
Cooperative Multi-Agent Games", NeurIPS 2022): the parameter-shared actor reads only the first
``OBS_DIM`` entries (its own site), the centralized critic reads the defenders' part. Keeping one 1-D
Box per agent lets RLlib's stock PPO learner and GAE connector work unchanged.

Labels enter it only with ``supervised_target`` (``MappoArgs.aux_coeff`` > 0): then each defender's vector
ends with one more entry, the *target slot* — the attack-class index of the window it observes (0 = benign,
from the environment's infos) — read by the supervised auxiliary loss of :mod:`training.mappo.learner` and by
nothing else: the actor reads the first ``OBS_DIM`` entries, the critic the ``(N + 1)·OBS_DIM`` before the
slot (:class:`training.mappo.module.MappoDefenderModule`).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from edge.observation import OBS_DIM, Z_CLIP
from fog.env import MarlIdsEnv


class RllibIdsEnv(MultiAgentEnv):
    """``MultiAgentEnv`` around :class:`fog.env.MarlIdsEnv`.

    Parameters
    ----------
    config : dict
        ``{"env": MarlIdsEnv}`` (already built), or ``{"make_env": callable}`` returning one; with
        ``"supervised_target": True`` each defender's vector ends with the target slot (module docstring).
    """

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        config = config or {}
        self.env: MarlIdsEnv = config["env"] if "env" in config else config["make_env"]()
        e = self.env
        self.agents = self.possible_agents = list(e.possible_agents)
        n = e.n_defenders
        self.supervised_target = bool(config.get("supervised_target", False))
        dobs = spaces.Box(-Z_CLIP, Z_CLIP, ((n + 1) * OBS_DIM + int(self.supervised_target),), np.float32)
        self.observation_spaces = {a: (dobs if a != "attacker_0" else e.observation_space(a))
                                   for a in self.possible_agents}
        self.action_spaces = {a: e.action_space(a) for a in self.possible_agents}

    def _augment(self, obs: dict, infos: dict) -> dict:
        d = self.env.defenders
        glob = np.concatenate([obs[a] for a in d])
        if self.supervised_target:  # the attack class of the observed window (0 = benign): the loss's target
            out = {a: np.concatenate([obs[a], glob, np.float32([infos[a]["attack_class"] if infos[a]["label"]
                                                                else 0])]) for a in d}
        else:
            out = {a: np.concatenate([obs[a], glob]) for a in d}
        out["attacker_0"] = obs["attacker_0"]
        return out

    def reset(self, *, seed=None, options=None):  # noqa: D102
        obs, infos = self.env.reset(seed=seed, options=options)
        self.agents = list(self.env.agents)
        return self._augment(obs, infos), infos

    def step(self, action_dict):  # noqa: D102
        obs, rew, term, trunc, infos = self.env.step(action_dict)
        term["__all__"] = all(term.values())
        trunc["__all__"] = all(trunc.values())
        self.agents = list(self.env.agents)
        return self._augment(obs, infos), rew, term, trunc, infos
