"""The defender actor: Observation → alert level × attack class. Plain torch, no Ray.

Trained inside RLlib (``training/mappo``) as the actor of the parameter-shared MAPPO defender, and
exported as a state dict + JSON config that the fog coordinator loads without Ray.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.observation import OBS_DIM, OBS_SLICES, FusionPipeline
from fog.attacks import ATTACK_CLASSES

N_LEVELS = 5


class PolicyFileError(ValueError):
    """An exported defender policy is missing, corrupt or of another layout."""


@dataclass(frozen=True)
class ActorConfig:
    """Shape of the defender actor.

    Parameters
    ----------
    obs_dim : int
        Observation length (:data:`edge.observation.OBS_DIM`).
    hidden : tuple of int
        Hidden layer widths (tanh).
    n_levels, n_classes : int
        Sizes of the two categorical heads (alert level 0–4, attack class).
    """

    obs_dim: int = OBS_DIM
    hidden: tuple[int, ...] = (128, 64)
    n_levels: int = N_LEVELS
    n_classes: int = len(ATTACK_CLASSES)


def mlp(sizes: list[int], out: int) -> nn.Sequential:
    """``Linear/tanh`` stack ``sizes[0] → … → sizes[-1] → out`` (no activation after the last layer)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    layers.append(nn.Linear(sizes[-1], out))
    return nn.Sequential(*layers)


class DefenderActor(nn.Module):
    """MLP actor: ``(batch, obs_dim)`` → logits ``(batch, n_levels + n_classes)``.

    The logits are the inputs of a MultiCategorical distribution (level, class), the action
    distribution RLlib uses for ``MultiDiscrete([5, C])``.
    """

    def __init__(self, config: ActorConfig | None = None) -> None:
        super().__init__()
        self.config = config or ActorConfig()
        c = self.config
        self.net = mlp([c.obs_dim, *c.hidden], c.n_levels + c.n_classes)
        #: The temporal scorer's alert quantile (calibrated score, ``1 − q``,
        #: :meth:`edge.observation.FusionPipeline.alert_quantile`): an alert above level 2 needs the scorer to
        #: reach it (:func:`fog.alerts.decide`, "Corroboration"). :meth:`load` reads it from the policy
        #: folder's fusion pipeline; None (no scorer known): levels follow the confidence alone.
        self.anomaly_threshold: float | None = None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.net(obs)

    @torch.no_grad()
    def decide(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Decisions for Observations ``(batch, obs_dim)`` by the rule of :func:`fog.alerts.decide`.

        Returns
        -------
        (level, attack_class, confidence)
            int64 arrays ``(batch,)`` and float32 ``(batch,)``; an alert is ``level >= 2`` and then has a
            non-benign class.

        Raises
        ------
        ValueError
            If ``obs`` does not have ``obs_dim`` columns.
        """
        level, cls, conf, _ = self.decide_all(obs)
        return level, cls, conf

    @torch.no_grad()
    def decide_all(self, obs: np.ndarray, *, evidence_gate: bool = True, scorer_alerts: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decide` plus the boolean ``alert`` array ``(batch,)``.

        With ``evidence_gate`` (the deployment rule) a flagged window alerts only when its largest |z|
        (the Observation's ``stats_z`` part, :data:`edge.observation.OBS_SLICES`) reaches
        :data:`fog.alerts.ALERT_EVIDENCE_Z`. With an :attr:`anomaly_threshold`, the Observation's calibrated
        ``score`` (NaN where not ``score_available``) decides whether an alert may be above level 2
        (corroboration) and, with ``scorer_alerts``, also flags (no deployment path does: on networks never
        trained on it lowered F1, ``marlids experiment generalization``, "MAPPO ∨ scorer"). Without the
        gate the actor's flag alone decides (an ablation). Actors of another Observation layout
        (``obs_dim`` ≠ :data:`OBS_DIM`) use neither gate nor score.
        """
        from fog.alerts import decide

        x = np.asarray(obs, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[1] != self.config.obs_dim:
            raise ValueError(f"obs must have {self.config.obs_dim} columns, got shape {x.shape}")
        if len(x) == 0:
            e = np.zeros(0, np.int64)
            return e, e.copy(), np.zeros(0, np.float32), np.zeros(0, bool)
        logits = self.forward(torch.from_numpy(x))
        lv = torch.softmax(logits[:, : self.config.n_levels], dim=-1).numpy()
        layout = self.config.obs_dim == OBS_DIM
        max_abs_z = np.abs(x[:, OBS_SLICES["stats_z"]]).max(axis=1) if evidence_gate and layout else None
        score, threshold = None, 1.0
        if layout and self.anomaly_threshold is not None:
            score = np.where(x[:, OBS_SLICES["score_available"].start] > 0, x[:, OBS_SLICES["score"].start], np.nan)
            threshold = self.anomaly_threshold
        return decide(lv, logits[:, self.config.n_levels:].numpy(), max_abs_z, score, threshold,
                      scorer_alerts=scorer_alerts)

    def save(self, directory: str | Path, *, meta: dict | None = None) -> Path:
        """Write ``actor.pt`` (state dict) and ``actor.json`` (config + ``meta``) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), d / "actor.pt")
        cfg = {**asdict(self.config), "hidden": list(self.config.hidden), "classes": list(ATTACK_CLASSES),
               "meta": meta or {}}
        (d / "actor.json").write_text(json.dumps(cfg, indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path) -> DefenderActor:
        """Load an exported actor.

        Raises
        ------
        PolicyFileError
            If the files are missing or corrupt, or the observation layout differs from this version.

        The actor's :attr:`anomaly_threshold` is the alert quantile of the scorer saved beside it
        (:meth:`edge.observation.FusionPipeline.saved_alert_quantile`; None without one).
        """
        d = Path(directory)
        try:
            cfg = json.loads((d / "actor.json").read_text())
            state = torch.load(d / "actor.pt", map_location="cpu", weights_only=True)
        except FileNotFoundError as exc:
            raise PolicyFileError(f"{d}: no exported defender policy (actor.json/actor.pt missing)") from exc
        except (json.JSONDecodeError, RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
            raise PolicyFileError(f"{d}: corrupt defender policy ({exc})") from exc
        if cfg.get("obs_dim") != OBS_DIM or cfg.get("classes") != list(ATTACK_CLASSES):
            raise PolicyFileError(f"{d}: policy made for another observation layout or class list")
        actor = cls(ActorConfig(obs_dim=cfg["obs_dim"], hidden=tuple(cfg["hidden"]), n_levels=cfg["n_levels"],
                                n_classes=cfg["n_classes"]))
        try:
            actor.load_state_dict(state)
        except RuntimeError as exc:
            raise PolicyFileError(f"{d}: weights do not match actor.json ({exc})") from exc
        actor.anomaly_threshold = FusionPipeline.saved_alert_quantile(d)
        actor.eval()
        return actor


def policy_dir(path: str | Path) -> Path:
    """Accept a run folder (``…/mappo__0__t``) or its ``policy`` folder; return the folder with ``actor.json``.

    Raises
    ------
    PolicyFileError
        If neither holds an exported policy.
    """
    p = Path(path)
    for cand in (p, p / "policy"):
        if (cand / "actor.json").is_file():
            return cand
    raise PolicyFileError(f"{p}: no exported defender policy (expected actor.json here or in {p / 'policy'})")
