"""Named, cached sources of labeled windows for the experiments (real captures only).

A *source* is one real capture turned into labeled windows (``training.range.label``) plus their
MiniLM embeddings ``(n, 384)``:

==========================  ==========================================================================
name                        capture
==========================  ==========================================================================
``site_a``, ``site_b``      the bundled range recordings (``data/captures``; ground truth beside them)
``mix_blink_synflood``      ``stopddos`` spoofed TCP SYN flood (T1498.001) merged into the O'Connor Blink
                            camera capture (``marlids range mix``, seed 0, all attack packets); the
                            windows of the hour around the attack (±:data:`MIX_MARGIN_S`) are kept
``mix_lockly_bacnet``       ``stopddos`` BACnet UDP amplification (T1498.002) into the Lockly hub capture
``mix_schlage_dns``         ``stopddos`` DNS RRSIG amplification (T1498.002) into the Schlage lock capture
``sentinel``                IoT Sentinel device setups (benign; 23 device types, first ``Setup-*`` of each)
``oconnor_benign``          the three O'Connor captures as they are (benign)
==========================  ==========================================================================

Device ids are prefixed with the source name (``site_a/10.77.1.21``) so sources never share a device.
Windows and embeddings are cached under ``$XDG_CACHE_HOME/marlids/experiments`` (default
``~/.cache/…``), keyed by the input files' SHA-256 and :data:`CACHE_VERSION`; the cache is exact
(same bytes as a fresh computation), it only saves time.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import BUNDLED_CAPTURES

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
#: The shared public captures (``../shared/data/pcaps`` beside the repository).
SHARED_PCAPS = REPO.parent / "shared" / "data" / "pcaps"
#: Bump when windowing, labeling or embedding changes, so stale cache entries are not reused
#: (2: the in_src_max_fanout feature).
CACHE_VERSION = "2"
#: Window length of every source, seconds.
WINDOW_S = 5.0

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
        Labeled windows (``label``, ``attack``, ``technique_id``, ``site``, ``device_id``, ``t_start``,
        the 63 features, ``proto_text``), ordered by ``t_start``.
    embeddings : ndarray, shape (len(frame), 384)
    citation : str
        Where the packets come from (for tables and ``docs/results.md``).
    """

    name: str
    frame: pd.DataFrame
    embeddings: np.ndarray
    citation: str


CITATIONS = {
    "site_a": "marlids range recording site_a (data/captures, this project)",
    "site_b": "marlids range recording site_b (data/captures, this project)",
    "mix_blink_synflood": "StopDDoS packet-captures (Haaijer 2022) into O'Connor et al. IoT-Dataset (CSET 2021)",
    "mix_lockly_bacnet": "StopDDoS packet-captures (Haaijer 2022) into O'Connor et al. IoT-Dataset (CSET 2021)",
    "mix_schlage_dns": "StopDDoS packet-captures (Haaijer 2022) into O'Connor et al. IoT-Dataset (CSET 2021)",
    "sentinel": "IoT Sentinel (Miettinen et al., ICDCS 2017), MIT licence",
    "oconnor_benign": "O'Connor et al. IoT-Dataset (Campos, O'Connor et al., CSET 2021)",
}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/marlids/experiments`` (created)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    d = base / "marlids" / "experiments"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _sha(paths: Sequence[Path]) -> str:
    h = hashlib.sha256(CACHE_VERSION.encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:20]


def _sentinel_pcaps() -> list[Path]:
    root = SHARED_PCAPS / "iot-sentinel"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: IoT Sentinel captures not found (expected ../shared beside the repository)")
    return [sorted(d.glob("Setup-*.pcap"))[0] for d in sorted(root.iterdir())
            if d.is_dir() and any(d.glob("Setup-*.pcap"))]


def _inputs(name: str) -> list[Path]:
    if name in ("site_a", "site_b"):
        return [BUNDLED_CAPTURES / f"{name}.pcap", BUNDLED_CAPTURES / f"{name}.groundtruth.csv"]
    if name in MIXES:
        return [SHARED_PCAPS / p for p in MIXES[name]]
    if name == "sentinel":
        return _sentinel_pcaps()
    if name == "oconnor_benign":
        return sorted((SHARED_PCAPS / "oconnor-iot").glob("*.pcap"))
    raise ValueError(f"unknown source {name!r}: expected one of {SOURCE_NAMES}")


def _benign_windows(pcaps: Sequence[Path], site: str, work: Path) -> pd.DataFrame:
    from training.range.groundtruth import write_ground_truth
    from training.range.label import label_capture

    empty = work / "benign.groundtruth.csv"
    write_ground_truth([], empty)
    frames = []
    for p in pcaps:
        df = label_capture(p, empty, window_s=WINDOW_S, site=site)
        df["device_type"] = p.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _compute(name: str, work: Path) -> pd.DataFrame:
    from training.range.label import label_capture
    from training.range.mix import mix_captures

    if name in ("site_a", "site_b"):
        return label_capture(BUNDLED_CAPTURES / f"{name}.pcap", window_s=WINDOW_S, site=name)
    if name in MIXES:
        attack, benign = (SHARED_PCAPS / p for p in MIXES[name])
        res = mix_captures(attack, benign, work, seed=0, name=name, max_packets=None)
        df = label_capture(res.pcap, res.ground_truth, window_s=WINDOW_S, site=name)
        # The benign captures span a week; keep the hour around the attack (every attack window and the
        # benign traffic of the same devices before and after it).
        t0, t1 = min(r.start_ts for r in res.rows), max(r.end_ts for r in res.rows)
        return df[(df["t_end"] > t0 - MIX_MARGIN_S) & (df["t_start"] < t1 + MIX_MARGIN_S)]
    return _benign_windows(_inputs(name), name, work)


def load_source(name: str) -> Source:
    """Labeled windows and embeddings of source ``name`` (computed once, then read from the cache).

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        When its captures are missing (the public ones live in ``../shared/data/pcaps``).
    """
    inputs = _inputs(name)
    for p in inputs:
        if not p.is_file():
            raise FileNotFoundError(f"source {name}: {p} not found")
    key = f"{name}__{_sha(inputs)}"
    fp, ep = cache_dir() / f"{key}.parquet", cache_dir() / f"{key}.npy"
    if fp.is_file() and ep.is_file():
        frame, emb = pd.read_parquet(fp), np.load(ep)
    else:
        import tempfile

        from training.data import embed_texts

        log.info("labeling source %s (%d input files; cached afterwards)", name, len(inputs))
        with tempfile.TemporaryDirectory() as tmp:
            frame = _compute(name, Path(tmp))
        frame = frame.sort_values(["t_start", "device_id"], kind="stable").reset_index(drop=True)
        frame["device_id"] = name + "/" + frame["device_id"].astype(str)
        frame["source"] = name
        if "device_type" not in frame.columns:
            frame["device_type"] = frame["device_id"]
        frame = frame.drop(columns=[c for c in ("peers", "embedding") if c in frame.columns])
        emb = embed_texts(frame).astype(np.float32)
        # atomic: a concurrent run never reads a half-written entry
        tmp_f, tmp_e = (p.with_name(f"{p.name}.{os.getpid()}.tmp") for p in (fp, ep))  # distinct per file
        frame.to_parquet(tmp_f, index=False)
        with open(tmp_e, "wb") as fh:
            np.save(fh, emb)
        os.replace(tmp_e, ep)
        os.replace(tmp_f, fp)
    return Source(name, frame, emb, CITATIONS[name])


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
