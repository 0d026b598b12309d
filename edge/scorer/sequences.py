"""Per-device window sequences ``(batch, T, F)`` from a window table, and a time-ordered split.

A *sequence* is the ``T`` consecutive windows of one device ending at a given window, in ``t_start``
order ("consecutive" means consecutive rows of that device: windows in which the device was silent are
not emitted by :func:`edge.windows.extract_windows`, so they are not padded in either). One sequence
ends at every window (stride 1), so every window is scored exactly once, as the last element of its
sequence. A device's first ``T - 1`` windows have fewer than ``T`` predecessors:

* ``pad="edge"`` (default): the missing leading windows repeat the device's first window, so a device
  seen for only one window still gets a score;
* ``pad="skip"``: those windows get no sequence (and no score).

The label of a sequence is the label of its last window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas loads where a window table is read: the live edge daemon never does
    import pandas as pd

KEY_COLUMNS: tuple[str, ...] = ("site_id", "device_id")
PAD_MODES: tuple[str, ...] = ("edge", "skip")


@dataclass
class SequenceSet:
    """Sequences built from a window table.

    Attributes
    ----------
    X : ndarray of shape (batch, T, F), float32
        Raw (unscaled) window statistics.
    keys : list of tuple
        ``(site_id, device_id, t_start)`` of each sequence's last window.
    rows : ndarray of shape (batch,), int
        Positional index, in the input frame, of each sequence's last window.
    y : ndarray of shape (batch,) or None
        ``label`` of the last window (0 benign, 1 attack) when the frame has a ``label`` column.
    feature_names : list of str
        The ``F`` feature columns in order.
    """

    X: np.ndarray
    keys: list[tuple]
    rows: np.ndarray
    y: np.ndarray | None
    feature_names: list[str]


def default_feature_names(frame: pd.DataFrame) -> list[str]:
    """The :data:`edge.features.FEATURE_NAMES` present in ``frame`` (all of them are expected)."""
    from edge.features import FEATURE_NAMES

    missing = [c for c in FEATURE_NAMES if c not in frame.columns]
    if missing:
        raise ValueError(f"window table lacks {len(missing)} feature columns, e.g. {missing[:3]}: "
                         "expected the columns of edge.features.FEATURE_NAMES")
    return list(FEATURE_NAMES)


def build_sequences(frame: pd.DataFrame, seq_len: int = 20, *, feature_names: Sequence[str] | None = None,
                    pad: str = "edge") -> SequenceSet:
    """Cut a window table into per-device sequences of ``seq_len`` consecutive windows.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per (device, window) with ``device_id``, ``t_start`` and the feature columns
        (``site_id`` optional; ``label`` optional).
    seq_len : int, default 20
        ``T``, windows per sequence (20 windows of 5 s = the last 100 s of a device).
    feature_names : sequence of str, optional
        Feature columns in order; default :data:`edge.features.FEATURE_NAMES`.
    pad : {"edge", "skip"}, default "edge"
        What to do with a device's first ``T - 1`` windows (see the module docstring).

    Returns
    -------
    SequenceSet

    Raises
    ------
    ValueError
        On a bad ``seq_len`` or ``pad``, or missing columns.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len={seq_len!r} is invalid: expected an integer >= 1")
    if pad not in PAD_MODES:
        raise ValueError(f"pad={pad!r} is invalid: expected one of {PAD_MODES}")
    for col in ("device_id", "t_start"):
        if col not in frame.columns:
            raise ValueError(f"window table lacks column {col!r}: expected device_id and t_start")
    names = list(feature_names) if feature_names is not None else default_feature_names(frame)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"window table lacks feature columns {missing[:5]}")
    import pandas as pd

    T = int(seq_len)
    df = frame.reset_index(drop=True)
    site = df["site_id"] if "site_id" in df.columns else pd.Series(["site"] * len(df))
    values = df[names].to_numpy(dtype=np.float32)
    labels = df["label"].to_numpy() if "label" in df.columns else None
    group_keys = [site.astype(str), df["device_id"].astype(str)]
    xs: list[np.ndarray] = []
    keys: list[tuple] = []
    rows: list[int] = []
    tmp = pd.DataFrame({"s": group_keys[0], "d": group_keys[1], "t": df["t_start"].astype(float)})
    for (s, d), idx in tmp.groupby(["s", "d"], sort=True).groups.items():
        order = np.asarray(idx)[np.argsort(tmp.loc[idx, "t"].to_numpy(), kind="stable")]
        v = values[order]
        n = len(order)
        if n < T and pad == "skip":
            continue
        padded = np.concatenate([np.repeat(v[:1], T - 1, axis=0), v]) if pad == "edge" else v
        offset = T - 1 if pad == "edge" else 0
        # sliding window view: sequence ending at device window i
        win = np.lib.stride_tricks.sliding_window_view(padded, T, axis=0)  # (n', F, T)
        seqs = np.transpose(win, (0, 2, 1))
        last = np.arange(len(seqs)) + (T - 1) - offset
        xs.append(np.ascontiguousarray(seqs))
        rows.extend(order[last].tolist())
        keys.extend((s, d, float(tmp.at[int(order[i]), "t"])) for i in last)
    if xs:
        X = np.concatenate(xs).astype(np.float32)
    else:
        X = np.zeros((0, T, len(names)), dtype=np.float32)
    rows_arr = np.asarray(rows, dtype=np.int64)
    y = labels[rows_arr].astype(np.int64) if labels is not None else None
    return SequenceSet(X=X, keys=keys, rows=rows_arr, y=y, feature_names=names)


def time_split(frame: pd.DataFrame, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> list[pd.DataFrame]:
    """Split each device's windows by time into consecutive parts (e.g. train / validation / test).

    Parameters
    ----------
    frame : pandas.DataFrame
        Window table with ``device_id`` and ``t_start`` (``site_id`` optional).
    fractions : sequence of float, default (0.6, 0.2, 0.2)
        Share of each device's windows, in time order, going to each part; must sum to 1.

    Returns
    -------
    list of pandas.DataFrame
        One frame per fraction; each keeps the original index.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.ndim != 1 or len(fr) < 2 or (fr <= 0).any() or abs(fr.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions={tuple(fractions)!r} is invalid: expected >= 2 positive shares summing to 1")
    by = [c for c in KEY_COLUMNS if c in frame.columns]
    rank = frame.groupby(by, sort=False)["t_start"].rank(method="first") - 1
    size = frame.groupby(by, sort=False)["t_start"].transform("size")
    pos = (rank / size).to_numpy()
    edges = np.concatenate([[0.0], np.cumsum(fr)])
    edges[-1] = 1.0 + 1e-9
    return [frame[(pos >= lo) & (pos < hi)] for lo, hi in pairwise(edges)]
