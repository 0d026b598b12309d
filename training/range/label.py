"""Capture + ground truth -> labeled windows (the training data of the fog environment).

Labeling rule
-------------
Windows come from :func:`edge.windows.extract_windows` (one row per device and window
``[t_start, t_end)``). A window is **malicious** (``label = 1``) when it holds attacker traffic inside an
attack interval, i.e. for some ground-truth row ``g``:

1. the window overlaps the attack: ``t_start <= g.end_ts`` and ``t_end > g.start_ts``
   (``[t_start, t_end)`` against the closed ``[start_ts, end_ts]``), **and**
2. the window is the attacker's own or talks to the attacker: ``device_id == g.attacker_ip`` or
   ``g.attacker_ip in peers``.

So the attacker's windows during the attack and every victim window that exchanged packets with the
attacker during the attack are malicious; a victim's windows carrying only benign traffic, and the
attacker's windows outside any interval (its benign DNS lookups), stay benign. ``victim_ip`` is not
used for labeling (a sweep's CIDR would otherwise mark silent hosts). ARP frames are attributed by
the edge to the device that owns the sender MAC, so a spoofer's windows hold its forged replies; a
forged binding (an IP already bound to another MAC) also makes the spoofer a peer of the victims' windows
— the host whose address it claimed and the host it addressed (``arp_victim_conflicts``) — so they
are malicious for as long as they are being poisoned, not only while they exchange other packets with it.
When several rows match, the one overlapping the window longest wins (ties: earliest ``start_ts``).

Output columns: the window columns, then ``label`` (int 0/1), ``attack`` (technique name or
``"benign"``), ``technique_id`` (ATT&CK ID, ``""`` for benign), ``site``; ``capture`` is kept from the
window (or added from the file name).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from edge.config import DEFAULT_WINDOW_S

log = logging.getLogger(__name__)

LABEL_COLUMNS = ("label", "attack", "technique_id", "site")


def capture_stem(capture: str | Path) -> str:
    """File name without its capture suffix (``.pcap``, ``.pcapng``, ``.cap``, optionally ``.gz``)."""
    return re.sub(r"\.(pcap|pcapng|cap)(\.gz)?$", "", Path(capture).name, flags=re.IGNORECASE)


def default_ground_truth(capture: str | Path) -> Path:
    """``<dir>/<stem>.groundtruth.csv`` for ``<dir>/<stem>.pcap`` (or ``.pcapng``)."""
    capture = Path(capture)
    return capture.with_name(capture_stem(capture) + ".groundtruth.csv")


def label_windows(windows, ground_truth, *, site: str | None = None):
    """Label windows from a ground-truth table (see the module docstring for the rule).

    Parameters
    ----------
    windows : pandas.DataFrame
        Needs ``device_id`` (str), ``t_start``, ``t_end`` (float epoch s) and ``peers``
        (list of str); other columns are kept unchanged.
    ground_truth : pandas.DataFrame
        As returned by :func:`training.range.groundtruth.read_ground_truth`.
    site : str, optional
        Value of the ``site`` column (default: the window's ``site_id`` column, else ``"site"``).

    Returns
    -------
    pandas.DataFrame
        ``windows`` plus ``label`` (int8 0/1), ``attack`` (str), ``technique_id`` (str), ``site`` (str).

    Raises
    ------
    ValueError
        When a required column is missing.
    """
    import pandas as pd

    need = {"device_id", "t_start", "t_end", "peers"}
    missing = need - set(windows.columns)
    if missing:
        raise ValueError(f"windows lack column(s) {sorted(missing)}; need {sorted(need)}")
    out = windows.copy()
    n = len(out)
    best_overlap = np.full(n, -np.inf)
    best_start = np.full(n, np.inf)
    attack = np.full(n, "benign", dtype=object)
    tech = np.full(n, "", dtype=object)
    t0 = out["t_start"].to_numpy(dtype=float)
    t1 = out["t_end"].to_numpy(dtype=float)
    dev = out["device_id"].astype(str).to_numpy()
    peers = [frozenset(p) if p is not None else frozenset() for p in out["peers"]]
    for g in ground_truth.itertuples(index=False):
        s, e, a = float(g.start_ts), float(g.end_ts), str(g.attacker_ip)
        in_time = (t0 <= e) & (t1 > s)
        if not in_time.any():
            continue
        idx = np.flatnonzero(in_time)
        hit = np.array([dev[i] == a or a in peers[i] for i in idx], dtype=bool)
        idx = idx[hit]
        overlap = np.minimum(t1[idx], e) - np.maximum(t0[idx], s)
        better = (overlap > best_overlap[idx]) | ((overlap == best_overlap[idx]) & (s < best_start[idx]))
        sel = idx[better]
        best_overlap[sel] = overlap[better]
        best_start[sel] = s
        attack[sel] = str(g.attack)
        tech[sel] = str(g.mitre_technique)
    out["label"] = (attack != "benign").astype(np.int8)
    out["attack"] = attack.astype(str)
    out["technique_id"] = tech.astype(str)
    if site is None:
        site = str(out["site_id"].iloc[0]) if "site_id" in out.columns and n else "site"
    out["site"] = site
    return pd.DataFrame(out)


def label_capture(capture: str | Path, ground_truth: str | Path | None = None, *, window_s: float = DEFAULT_WINDOW_S,
                  site: str | None = None):
    """Extract windows from ``capture`` with the edge and label them from ``ground_truth``.

    Parameters
    ----------
    capture : str or Path
        pcap/pcapng file.
    ground_truth : str or Path, optional
        Ground-truth CSV (default :func:`default_ground_truth`).
    window_s : float
        Window length, seconds (> 0).
    site : str, optional
        Site id (default: the capture's file stem, e.g. ``site_a``).

    Returns
    -------
    pandas.DataFrame
        Labeled windows (see :func:`label_windows`).

    Raises
    ------
    FileNotFoundError
        When the capture or ground truth is missing.
    ValueError
        When ``window_s <= 0`` or the ground truth is malformed.
    """
    from edge.windows import extract_windows
    from training.range.groundtruth import read_ground_truth

    capture = Path(capture)
    if not capture.is_file():
        raise FileNotFoundError(f"capture {str(capture)!r} does not exist")
    if window_s <= 0:
        raise ValueError(f"window_s={window_s!r}; expected > 0")
    gt = read_ground_truth(ground_truth or default_ground_truth(capture))
    site = site or capture_stem(capture)
    windows = extract_windows([capture], window_s=window_s, site_id=site)
    if "capture" not in windows.columns:
        windows["capture"] = capture.name
    labeled = label_windows(windows, gt, site=site)
    log.info("%s: %d windows, %d malicious", capture.name, len(labeled), int(labeled["label"].sum()))
    return labeled
