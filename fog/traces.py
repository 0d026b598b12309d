"""Trace sets: labeled windows with their Observations, cut into benign pools and attack episodes.

The environment is trace-driven (``DESIGN.md``): benign ticks replay real benign windows of a site,
and an attack replays a real recorded *episode* of the technique: every window of the same capture
during the attack (the attacker's and victims' windows and the benign background), in time order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from edge.observation import OBS_DIM
from fog.attacks import technique_class

#: Two malicious windows further apart than this (s) belong to different episodes.
EPISODE_GAP_S = 15.0


@dataclass
class Episode:
    """One recorded attack: window indices into the trace set in time order."""

    technique_id: str
    site: str
    capture: str
    indices: np.ndarray


@dataclass
class TraceSet:
    """Observations and labels of windows, indexed by row.

    Attributes
    ----------
    obs : ndarray of float32, shape (n, OBS_DIM)
    label : ndarray of int8, shape (n,)
        1 = malicious window (from the ground truth, never from the features).
    attack_class : ndarray of int8, shape (n,)
        Index in :data:`fog.attacks.ATTACK_CLASSES` (0 for benign windows).
    technique_id : ndarray of object, shape (n,)
    site : ndarray of object, shape (n,)
    benign : dict site → ndarray of row indices
        Benign windows of each site outside any attack episode.
    episodes : list of Episode
    """

    obs: np.ndarray
    label: np.ndarray
    attack_class: np.ndarray
    technique_id: np.ndarray
    site: np.ndarray
    benign: dict[str, np.ndarray] = field(default_factory=dict)
    episodes: list[Episode] = field(default_factory=list)

    @property
    def sites(self) -> list[str]:
        """Sites with benign windows, sorted."""
        return sorted(self.benign)

    @property
    def techniques(self) -> list[str]:
        """Technique IDs with at least one episode, sorted."""
        return sorted({e.technique_id for e in self.episodes})

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, obs: np.ndarray, *, max_episode_windows: int = 64) -> TraceSet:
        """Build from labeled windows (``site, capture, t_start, label, technique_id``) and their Observations.

        Parameters
        ----------
        frame : DataFrame
            Labeled windows (the range's ``marlids range label`` output); ``site`` falls back to ``site_id``.
        obs : ndarray, shape (len(frame), OBS_DIM)
        max_episode_windows : int
            Longer episodes are cut into pieces of at most this many windows.

        Raises
        ------
        ValueError
            On missing columns, mismatched lengths, or no benign window at all.
        """
        need = {"capture", "t_start", "label", "technique_id"}
        missing = need - set(frame.columns)
        if missing:
            raise ValueError(f"labeled windows lack columns {sorted(missing)}")
        obs = np.asarray(obs, dtype=np.float32)
        if obs.shape != (len(frame), OBS_DIM):
            raise ValueError(f"obs must have shape ({len(frame)}, {OBS_DIM}), got {obs.shape}")
        df = frame.reset_index(drop=True)
        site = (df["site"] if "site" in df.columns else df["site_id"]).astype(str).to_numpy(object)
        label = df["label"].to_numpy(np.int8)
        tech = df["technique_id"].fillna("").astype(str).to_numpy(object)
        ts = cls(obs=obs, label=label, attack_class=np.array([technique_class(t) if lab else 0
                                                              for t, lab in zip(tech, label)], np.int8),
                 technique_id=tech, site=site)
        in_episode = np.zeros(len(df), dtype=bool)
        for (s, cap), g in df.assign(_site=site).groupby(["_site", "capture"], sort=True):
            g = g.sort_values("t_start", kind="stable")
            mal = g[g["label"] == 1]
            if mal.empty:
                continue
            for tid, m in mal.groupby(mal["technique_id"].fillna("").astype(str), sort=True):
                t = m["t_start"].to_numpy()
                cuts = np.flatnonzero(np.diff(t) > EPISODE_GAP_S) + 1
                for part in np.split(np.arange(len(t)), cuts):
                    lo, hi = t[part[0]], t[part[-1]]
                    rows = g.index[(g["t_start"] >= lo) & (g["t_start"] <= hi)].to_numpy()
                    in_episode[rows] = True
                    for k in range(0, len(rows), max_episode_windows):
                        chunk = rows[k:k + max_episode_windows]
                        if label[chunk].any():
                            ts.episodes.append(Episode(tid, str(s), str(cap), chunk))
        for s in np.unique(site):
            idx = np.flatnonzero((site == s) & (label == 0) & ~in_episode)
            if len(idx):
                ts.benign[str(s)] = idx
        if not ts.benign:
            raise ValueError("no benign window outside attack episodes: the environment needs benign traffic")
        return ts
