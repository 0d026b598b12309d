"""Named, cached sources of labeled windows for the experiments (real captures only).

A *source* is real captures turned into labeled windows (``training.range.label``) plus their MiniLM
embeddings ``(n, 384)``. Each window's ``site`` is the network it was recorded on, its ``capture`` the file;
every ``(site_id, capture)`` learns its own baseline in a grace period, as a deployment would.

======================  ==============================================================================
name                    what
======================  ==============================================================================
``site_a``, ``site_b``  the bundled demo recordings of the two original range sites (``data/captures``)
``site_a_train``, …     their training-day recordings (``data/captures/train``)
``range/<network>``     every recording of one range network: ``site_a`` and ``site_b`` (demo + training
                        day) and each network of ``data/captures/sites`` (one recording each)
``mix_blink_synflood``  ``stopddos`` spoofed TCP SYN flood (T1498.001) merged into the O'Connor Blink camera
                        capture (``marlids range mix``, seed 0); the hour around the attack
``mix_lockly_bacnet``   ``stopddos`` BACnet UDP amplification (T1498.002) into the Lockly hub capture
``mix_schlage_dns``     ``stopddos`` DNS RRSIG amplification (T1498.002) into the Schlage lock capture
``sentinel``            IoT Sentinel device setups (benign; the first ``Setup-*`` of each of 23 types)
``sentinel/<Type>``     every setup capture of one IoT Sentinel device type, as one benign site
``oconnor_benign``      the three O'Connor captures as they are (benign)
``oconnor/<name>``      one O'Connor capture (a week of one device's traffic), as one benign site
``kitsune/mirai2000``   the benign start of the Kitsune Mirai capture (an IoT camera network)
======================  ==============================================================================

Device ids are prefixed with the network or source name (``site_a/10.77.1.21``) so sources never share a
device. Windows and embeddings are cached by content (:func:`training.data.cached_windows`, shared with
``marlids train``): exact, it only saves time.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edge.config import DEFAULT_WINDOW_S
from edge.paths import BUNDLED_CAPTURES, SHARED_PCAPS
from training.data import cached_windows

log = logging.getLogger(__name__)

#: The recordings of the range networks beyond the two original sites (``marlids range record``).
SITE_CAPTURES = BUNDLED_CAPTURES / "sites"
#: Window length of every source, seconds.
WINDOW_S = DEFAULT_WINDOW_S

#: Benign time kept before and after a mixed-in attack, seconds.
MIX_MARGIN_S = 1800.0
#: Public attack capture → (benign capture, source name) of the mixes.
MIXES: dict[str, tuple[str, str]] = {
    "mix_blink_synflood": ("stopddos/pkt.TCP.synflood.spoofed.pcap", "oconnor-iot/blink-cam-01.pcap"),
    "mix_lockly_bacnet": ("stopddos/amp.UDP.bacnet.IOT.37810.pcapng", "oconnor-iot/lockly-hub-01.pcap"),
    "mix_schlage_dns": ("stopddos/amp.dns.RRSIG.fragmented.pcap", "oconnor-iot/schlage-lock-01.pcap"),
}
SOURCE_NAMES: tuple[str, ...] = ("site_a", "site_b", *MIXES, "sentinel", "oconnor_benign")


@dataclass
class Source:
    """Labeled windows of one source.

    Attributes
    ----------
    name : str
    frame : DataFrame
        Labeled windows (``label``, ``attack``, ``technique_id``, ``site``, ``capture``, ``device_id``,
        ``t_start``, the 63 features, ``proto_text``), ordered by ``t_start``.
    embeddings : ndarray, shape (len(frame), 384)
    citation : str
        Where the packets come from (for tables and ``docs/results.md``).
    """

    name: str
    frame: pd.DataFrame
    embeddings: np.ndarray
    citation: str


RANGE_CITATION = "marlids range recording (data/captures, this project)"
CITATIONS = {
    "mix": "StopDDoS packet-captures (Haaijer 2022) into O'Connor et al. IoT-Dataset (CSET 2021)",
    "sentinel": "IoT Sentinel (Miettinen et al., ICDCS 2017), MIT licence",
    "oconnor": "O'Connor et al. IoT-Dataset (Campos, O'Connor et al., CSET 2021)",
    "kitsune": "Kitsune (Mirsky et al., NDSS 2018), Mirai capture, MIT licence",
}


def range_networks() -> dict[str, list[Path]]:
    """Range network → its recordings (each with ``<stem>.groundtruth.csv``): ``site_a`` and ``site_b``
    (training day first, then the demo capture), then every capture of ``data/captures/sites``."""
    nets = {s: [p for p in (BUNDLED_CAPTURES / "train" / f"{s}_train.pcap", BUNDLED_CAPTURES / f"{s}.pcap")
                if p.is_file()] for s in ("site_a", "site_b")}
    for p in sorted(SITE_CAPTURES.glob("*.pcap")):
        if p.with_name(p.stem + ".groundtruth.csv").is_file():
            nets[p.stem] = [p]
    return {k: v for k, v in nets.items() if v}


def sentinel_types() -> list[str]:
    """The IoT Sentinel device types present in ``../shared/data/pcaps/iot-sentinel``."""
    root = SHARED_PCAPS / "iot-sentinel"
    if not root.is_dir():
        return []
    return [d.name for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("Setup-*.pcap"))]


def public_benign_sites() -> list[str]:
    """Source names of every benign-only public site: each IoT Sentinel device type, each O'Connor capture
    and the Kitsune capture (those present)."""
    out = [f"sentinel/{t}" for t in sentinel_types()]
    out += [f"oconnor/{p.stem}" for p in sorted((SHARED_PCAPS / "oconnor-iot").glob("*.pcap"))]
    if (SHARED_PCAPS / "kitsune" / "mirai2000.pcap").is_file():
        out.append("kitsune/mirai2000")
    return out


def _inputs(name: str) -> list[Path]:
    if name in ("site_a", "site_b"):
        return [BUNDLED_CAPTURES / f"{name}.pcap"]
    if name in ("site_a_train", "site_b_train"):
        return [BUNDLED_CAPTURES / "train" / f"{name}.pcap"]
    if name.startswith("range/"):
        nets = range_networks()
        if name[6:] not in nets:
            raise ValueError(f"unknown range network {name[6:]!r}: expected one of {sorted(nets)}")
        return nets[name[6:]]
    if name in MIXES:
        return [SHARED_PCAPS / p for p in MIXES[name]]
    if name == "sentinel":
        root = SHARED_PCAPS / "iot-sentinel"
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: IoT Sentinel captures not found (expected ../shared beside the repository)")
        return [sorted((root / t).glob("Setup-*.pcap"))[0] for t in sentinel_types()]
    if name.startswith("sentinel/"):
        files = sorted((SHARED_PCAPS / "iot-sentinel" / name[9:]).glob("Setup-*.pcap"))
        if not files:
            raise ValueError(f"unknown IoT Sentinel device type {name[9:]!r}: expected one of {sentinel_types()}")
        return files
    if name == "oconnor_benign":
        return sorted((SHARED_PCAPS / "oconnor-iot").glob("*.pcap"))
    if name.startswith("oconnor/"):
        return [SHARED_PCAPS / "oconnor-iot" / f"{name[8:]}.pcap"]
    if name == "kitsune/mirai2000":
        return [SHARED_PCAPS / "kitsune" / "mirai2000.pcap"]
    raise ValueError(f"unknown source {name!r}: expected one of {SOURCE_NAMES}, range/<network>, "
                     "sentinel/<type>, oconnor/<capture> or kitsune/mirai2000")


def _citation(name: str) -> str:
    if name in MIXES:
        return CITATIONS["mix"]
    for k in ("sentinel", "oconnor", "kitsune"):
        if name.startswith(k):
            return CITATIONS[k]
    return RANGE_CITATION


def _benign_windows(pcaps: Sequence[Path], site: str, one_capture: str | None) -> pd.DataFrame:
    """Windows of benign-only captures (an empty ground truth), each its own capture (``sentinel``,
    ``oconnor_benign``); ``one_capture`` names them all as one capture instead."""
    from training.range.groundtruth import write_ground_truth
    from training.range.label import label_capture

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "benign.groundtruth.csv"
        write_ground_truth([], empty)
        frames = []
        for p in pcaps:
            df = label_capture(p, empty, window_s=WINDOW_S, site=site)
            df["device_type"] = p.parent.name
            if one_capture:
                df["capture"] = one_capture
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _mix(name: str) -> pd.DataFrame:
    from training.range.label import label_capture
    from training.range.mix import mix_captures

    attack, benign = (SHARED_PCAPS / p for p in MIXES[name])
    with tempfile.TemporaryDirectory() as tmp:
        res = mix_captures(attack, benign, Path(tmp), seed=0, name=name, max_packets=None)
        df = label_capture(res.pcap, res.ground_truth, window_s=WINDOW_S, site=name)
    # The benign captures span a week; keep the hour around the attack (every attack window and the benign
    # traffic of the same devices before and after it).
    t0, t1 = min(r.start_ts for r in res.rows), max(r.end_ts for r in res.rows)
    return df[(df["t_end"] > t0 - MIX_MARGIN_S) & (df["t_start"] < t1 + MIX_MARGIN_S)]


def load_source(name: str) -> Source:
    """Labeled windows and embeddings of source ``name`` (computed once, then read from the cache).

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        When its captures are missing (the public ones live in ``../shared/data/pcaps``).
    """
    from training.data import labeled_capture

    inputs = _inputs(name)
    for p in inputs:
        if not p.is_file():
            raise FileNotFoundError(f"source {name}: {p} not found")
    if name in ("site_a", "site_b", "site_a_train", "site_b_train") or name.startswith("range/"):
        site = name[6:] if name.startswith("range/") else name.removesuffix("_train")
        parts = [labeled_capture(p, window_s=WINDOW_S, site=site) for p in inputs]
        frame = pd.concat([f for f, _ in parts], ignore_index=True)
        emb = np.concatenate([e for _, e in parts])
        prefix = site
    elif name.startswith(("sentinel/", "oconnor/", "kitsune/")):  # the same cache entries as `train mappo --benign`
        from training.data import benign_capture

        target = inputs[0].parent if name.startswith("sentinel/") else inputs[0]
        frame, emb = benign_capture(target, window_s=WINDOW_S)
        frame = frame.assign(device_id=frame["device_id"].str.split("/", n=1).str[1], device_type=target.stem
                             if target.is_file() else target.name)
        prefix = name
    else:
        gt_free = name not in MIXES
        site = name.replace("/", "_")
        frame, emb = cached_windows(name.replace("/", "_"), inputs,
                                    (lambda: _benign_windows(inputs, site, None)) if gt_free else (lambda: _mix(name)),
                                    extra=f"experiments|{WINDOW_S}|{name}")
        prefix = name
    frame = frame.assign(_row=np.arange(len(frame))).sort_values(["t_start", "device_id"], kind="stable")
    emb = emb[frame["_row"].to_numpy()]
    frame = frame.drop(columns=["_row"]).reset_index(drop=True)
    frame["device_id"] = prefix + "/" + frame["device_id"].astype(str)
    frame["source"] = name
    if "device_type" not in frame.columns:
        frame["device_type"] = frame["device_id"]
    frame = frame.drop(columns=[c for c in ("peers", "top_peers", "embedding") if c in frame.columns])
    return Source(name, frame, emb.astype(np.float32), _citation(name))


def concat(sources: Sequence[Source]) -> Source:
    """One source of several (windows stacked in the given order)."""
    return Source("+".join(s.name for s in sources), pd.concat([s.frame for s in sources], ignore_index=True),
                  np.concatenate([s.embeddings for s in sources]), "; ".join(dict.fromkeys(s.citation for s in sources)))


def subset(src: Source, mask: np.ndarray, name: str | None = None) -> Source:
    """Rows ``mask`` (boolean or integer index) of ``src``."""
    idx = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask)
    return Source(name or src.name, src.frame.iloc[idx].reset_index(drop=True), src.embeddings[idx], src.citation)


def time_split(src: Source, train_fraction: float = 0.7) -> tuple[Source, Source]:
    """Earlier / later part of ``src`` cut between attack episodes (:func:`training.data.split_by_time`)."""
    from training.data import split_by_time

    f = src.frame.assign(_row=np.arange(len(src.frame)))
    a, b = split_by_time(f, train_fraction)
    return (subset(src, a["_row"].to_numpy(), f"{src.name}[:{train_fraction:g}]"),
            subset(src, b["_row"].to_numpy(), f"{src.name}[{train_fraction:g}:]"))
