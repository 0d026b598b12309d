"""The MAPPO learner: RLlib's PPO loss, plus an optional supervised auxiliary loss on the defender actor.

PPO learns detection from rewards alone: one ±1 per window, a noisy signal for what is, at heart, a
classification. With ``MappoArgs.aux_coeff`` > 0 the shared defender actor also minimises, on the same
minibatches, the cross-entropy of its own outputs against each window's ground truth (a supervised
auxiliary task, as auxiliary tasks speed up and shape representation learning in Jaderberg et al.,
"Reinforcement Learning with Unsupervised Auxiliary Tasks", ICLR 2017):

* **alert**: binary cross-entropy of ``P(alert) = p(2) + p(3) + p(4)`` (the decision rule's quantity,
  :mod:`fog.alerts`) against the window's label (1 = malicious);
* **class**: cross-entropy of the class logits against the window's attack class, on malicious windows only
  (a benign window's class is not an alert's class: :func:`fog.alerts.decide` never names "benign").

``loss = PPO loss + aux_coeff · (alert BCE + class CE)``, each a mean over the minibatch's valid steps (the
loss mask RLlib adds for its bootstrap step). The ground truth comes from the environment's *target slot*:
the last entry of each defender's RLlib observation (:class:`training.mappo.env.RllibIdsEnv` with
``supervised_target``), the attack-class index of the window the defender observes (0 = benign). Neither the
actor nor the critic reads it (:class:`training.mappo.module.MappoDefenderModule`), and the exported actor
takes the Observation alone, so nothing of the label reaches a decision.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns

from fog.alerts import ALERT_LEVELS, ALERT_THRESHOLD
from training.mappo.ids import DEFENDER

#: ``learner_config_dict`` key of the auxiliary loss weight (``MappoArgs.aux_coeff``).
AUX_COEFF_KEY = "aux_coeff"


def auxiliary_loss(logits: torch.Tensor, target: torch.Tensor,
                   mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The supervised auxiliary loss terms (module docstring) of one minibatch.

    Parameters
    ----------
    logits : Tensor, shape (B, 5 + C)
        The actor's outputs: alert-level logits, then class logits.
    target : Tensor, shape (B,)
        Attack-class index of each step's window (0 = benign; float or int).
    mask : Tensor of bool, shape (B,), optional
        Steps that count (RLlib's loss mask); None: all.

    Returns
    -------
    (alert_bce, class_ce)
        Scalar tensors; ``class_ce`` is 0 without a malicious step.
    """
    if mask is not None:
        logits, target = logits[mask], target[mask]
    y = target.round().long()
    log_p = torch.log_softmax(logits[:, :ALERT_LEVELS], dim=-1)
    log_alert = torch.logsumexp(log_p[:, ALERT_THRESHOLD:], dim=-1)  # log P(alert)
    log_quiet = torch.logsumexp(log_p[:, :ALERT_THRESHOLD], dim=-1)  # log (1 − P(alert))
    malicious = y > 0
    alert_bce = -torch.where(malicious, log_alert, log_quiet).mean() if len(y) else logits.sum() * 0.0
    if malicious.any():
        class_ce = F.cross_entropy(logits[malicious, ALERT_LEVELS:], y[malicious])
    else:
        class_ce = logits.sum() * 0.0
    return alert_bce, class_ce


class MappoLearner(PPOTorchLearner):
    """PPO's torch learner with the supervised auxiliary loss on the trained defender module (module docstring);
    with ``aux_coeff`` 0 exactly PPO's loss (``MappoArgs`` default: 0.5)."""

    def compute_loss_for_module(self, *, module_id: str, config, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        coeff = float((config.learner_config_dict or {}).get(AUX_COEFF_KEY, 0.0))
        if coeff <= 0.0 or module_id != DEFENDER:
            return loss
        alert_bce, class_ce = auxiliary_loss(fwd_out[Columns.ACTION_DIST_INPUTS], batch[Columns.OBS][:, -1],
                                             batch.get(Columns.LOSS_MASK))
        self.metrics.log_dict({"aux_alert_bce": alert_bce, "aux_class_ce": class_ce}, key=module_id, window=1)
        return loss + coeff * (alert_bce + class_ce)
