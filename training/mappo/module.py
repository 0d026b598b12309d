"""RLModules: the MAPPO defender (shared actor + centralized critic) on RLlib's new API stack."""

from __future__ import annotations

from typing import Any

from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.torch.torch_distribution import TorchMultiCategorical
from ray.rllib.core.rl_module.apis.value_function_api import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override

from edge.observation import OBS_DIM
from fog.policy import ActorConfig, DefenderActor, mlp


class MappoDefenderModule(TorchRLModule, ValueFunctionAPI):
    """Parameter-shared defender: actor on the agent's own Observation, critic on all defenders'.

    Input ``obs`` is ``(batch, (N + 1)·OBS_DIM)`` from :class:`training.mappo.env.RllibIdsEnv`:
    ``[own | defender_0 … defender_{N-1}]``. The actor is a :class:`fog.policy.DefenderActor`
    (exported as is for the fog coordinator). ``model_config``:

    * ``actor_hidden`` (tuple, default (128, 64)), ``critic_hidden`` (tuple, default (256, 128)),
    * ``centralized_critic`` (bool, default True): False gives IPPO (critic on the own Observation),
    * ``supervised_target`` (bool, default False): ``obs`` ends with the target slot of the supervised
      auxiliary loss (:mod:`training.mappo.learner`), which neither the actor nor the critic reads.
    """

    @override(TorchRLModule)
    def setup(self) -> None:
        cfg = self.model_config or {}
        self.actor = DefenderActor(ActorConfig(hidden=tuple(cfg.get("actor_hidden", (128, 64)))))
        self.centralized = bool(cfg.get("centralized_critic", True))
        #: entries the critic reads: all but the target slot (centralized), or the own Observation
        self.critic_in = (self.observation_space.shape[0] - int(bool(cfg.get("supervised_target", False)))
                          if self.centralized else OBS_DIM)
        levels, classes = (int(n) for n in self.action_space.nvec)
        self.action_dist_cls = TorchMultiCategorical.get_partial_dist_cls(input_lens=[levels, classes])
        if not self.inference_only:
            self.critic = mlp([self.critic_in, *cfg.get("critic_hidden", (256, 128))], 1)

    @override(RLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.actor(batch[Columns.OBS][..., :OBS_DIM])}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None):
        obs = batch[Columns.OBS]
        return self.critic(obs[..., :self.critic_in]).squeeze(-1)
