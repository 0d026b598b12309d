"""Labeled training data: captures + ground truth (or labeled Parquet) → Observations → trace sets."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from edge.config import DEFAULT_WINDOW_S
from edge.observation import FusionPipeline
from fog.traces import TraceSet

log = logging.getLogger(__name__)

#: Bump when windowing, labeling or embedding changes, so stale cache entries are not reused
#: (6: arp_victim_conflicts; 5: top_peers; 4: ARP of dual-stack hosts under their IPv4 address; 3: the site-baseline release; 2: in_src_max_fanout).
CACHE_VERSION = "6"


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/marlids/windows`` (``~/.cache`` when unset; created)."""
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    d = base / "marlids" / "windows"
    d.mkdir(parents=True, exist_ok=True)
    return d


def content_key(paths: Sequence[Path], extra: str = "") -> str:
    """SHA-256 (20 hex digits) of :data:`CACHE_VERSION`, ``extra`` and each file's name and bytes."""
    import hashlib

    h = hashlib.sha256((CACHE_VERSION + "\x1f" + extra).encode())
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()[:20]


def cached_windows(name: str, inputs: Sequence[Path], compute, *, extra: str = "") -> tuple[pd.DataFrame, np.ndarray]:
    """Windows and their MiniLM embeddings ``(n, 384)``, computed once per content and then read back.

    The cache (:func:`cache_dir`) is keyed by :func:`content_key` of the input files: the same bytes give
    the same windows, so it is exact; it only saves the metering and embedding time. Entries are written
    through temporary files and renamed, so a concurrent reader never sees half an entry.

    Parameters
    ----------
    name : str
        Readable prefix of the entry's file names.
    inputs : sequence of Path
        Every file the windows depend on.
    compute : callable
        ``compute() -> DataFrame`` of windows (with ``proto_text``); called on a cache miss.
    extra : str
        Settings that change the result (window length, site id, …).
    """
    import os

    key = f"{name}__{content_key(inputs, extra)}"
    fp, ep = cache_dir() / f"{key}.parquet", cache_dir() / f"{key}.npy"
    if fp.is_file() and ep.is_file():
        return pd.read_parquet(fp), np.load(ep)
    frame = compute().reset_index(drop=True)
    emb = embed_texts(frame).astype(np.float32)
    tmp_f, tmp_e = (p.with_name(f"{p.name}.{os.getpid()}.tmp") for p in (fp, ep))  # distinct per file
    frame.to_parquet(tmp_f, index=False)
    with open(tmp_e, "wb") as fh:
        np.save(fh, emb)
    os.replace(tmp_e, ep)
    os.replace(tmp_f, fp)
    return frame, emb


def labeled_capture(capture: str | Path, *, window_s: float = DEFAULT_WINDOW_S, site: str | None = None
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """Labeled windows of a capture with ``<stem>.groundtruth.csv`` beside it, and their embeddings (cached).

    Raises
    ------
    FileNotFoundError
        If the capture or its ground truth is missing.
    """
    from training.range.label import default_ground_truth, label_capture

    p = Path(capture)
    gt = default_ground_truth(p)
    for f in (p, gt):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: no such file (a capture needs its ground truth <name>.groundtruth.csv)")
    return cached_windows(p.stem, [p, gt], lambda: label_capture(p, gt, window_s=window_s, site=site),
                          extra=f"labeled|{window_s}|{site}")


def benign_capture(path: str | Path, *, window_s: float = DEFAULT_WINDOW_S) -> tuple[pd.DataFrame, np.ndarray]:
    """Windows of a benign-only capture, or of every capture in a folder taken as one site (its setups in
    time order: one baseline), all labeled benign, with their embeddings (cached).

    The site id is the file stem (or the folder name); public benign captures (IoT Sentinel device types,
    O'Connor, Kitsune) are used this way as more benign sites.

    Raises
    ------
    FileNotFoundError
        If the path is missing or a folder holds no capture.
    """
    from training.range.groundtruth import write_ground_truth
    from training.range.label import capture_stem, label_capture

    p = Path(path)
    files = sorted(q for q in p.iterdir() if q.suffix.lower() in (".pcap", ".pcapng", ".cap")) if p.is_dir() \
        else ([p] if p.is_file() else [])
    if not files:
        raise FileNotFoundError(f"{p}: no capture (a benign capture file or a folder of captures)")
    site = p.name if p.is_dir() else capture_stem(p)

    def compute() -> pd.DataFrame:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            empty = Path(tmp) / "benign.groundtruth.csv"
            write_ground_truth([], empty)
            frames = [label_capture(f, empty, window_s=window_s, site=site) for f in files]
        frame = pd.concat(frames, ignore_index=True)
        frame["capture"] = site  # one site, one baseline
        frame["device_id"] = site + "/" + frame["device_id"].astype(str)
        return frame

    return cached_windows(site, files, compute, extra=f"benign|{window_s}")


def benign_sites(path: str | Path) -> list[Path]:
    """The benign sites a ``--benign`` path names: a capture file (one site), a folder of captures (one
    site: its captures in time order), or a folder of such folders (one site per sub-folder, e.g.
    ``iot-sentinel/`` with one folder per device type).

    Raises
    ------
    FileNotFoundError
        If nothing usable is there.
    """
    p = Path(path)
    if p.is_dir():
        subs = sorted(d for d in p.iterdir() if d.is_dir() and any(q.suffix.lower() in (".pcap", ".pcapng", ".cap")
                                                                  for q in d.iterdir()))
        if subs and not any(q.suffix.lower() in (".pcap", ".pcapng", ".cap") for q in p.iterdir()):
            return subs
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such benign capture or folder")
    return [p]


def labeled_sources(sources: Sequence[str | Path]) -> list[Path]:
    """Expand ``--data`` sources: a folder stands for every capture in it with a ground truth beside it."""
    out = []
    for src in sources:
        p = Path(src)
        if p.is_dir():
            caps = sorted(q for q in p.iterdir() if q.suffix.lower() in (".pcap", ".pcapng")
                          and q.with_name(q.stem + ".groundtruth.csv").is_file())
            if not caps:
                raise FileNotFoundError(f"{p}: no capture with a <name>.groundtruth.csv beside it")
            out += caps
        else:
            out.append(p)
    return out


def load_labeled_embedded(sources: Sequence[str | Path], *, window_s: float = DEFAULT_WINDOW_S
                          ) -> tuple[pd.DataFrame, np.ndarray]:
    """Labeled windows and their embeddings from labeled Parquet files and/or captures with a ground-truth
    CSV beside them, or folders of such captures (captures through the cache of :func:`labeled_capture`).

    Raises
    ------
    FileNotFoundError
        If a source or a capture's ground truth is missing.
    ValueError
        If a Parquet file has no ``label`` column, or no source is given.
    """
    frames, embs = [], []
    for p in labeled_sources(sources):
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
            if "label" not in df.columns:
                raise ValueError(f"{p}: not a labeled window file (no 'label' column); run `marlids range label`")
            if "embedding" in df.columns:
                e = np.stack(df["embedding"].to_numpy()).astype(np.float32)
                df = df.drop(columns=["embedding"])
            else:
                e = embed_texts(df)
        else:
            df, e = labeled_capture(p, window_s=window_s)
        frames.append(df)
        embs.append(e)
    if not frames:
        raise ValueError("no training data given")
    return pd.concat(frames, ignore_index=True), np.concatenate(embs)


def load_labeled(sources: Sequence[str | Path], *, window_s: float = DEFAULT_WINDOW_S) -> pd.DataFrame:
    """Labeled windows (no embeddings) of :func:`load_labeled_embedded`'s sources."""
    return load_labeled_embedded(sources, window_s=window_s)[0]


def embed_texts(frame: pd.DataFrame) -> np.ndarray:
    """MiniLM embeddings ``(n, 384)`` of the windows' ``proto_text`` (distinct texts encoded once)."""
    from edge.embed import TextEmbedder

    return TextEmbedder(cache_size=1 << 16).embed(frame["proto_text"].tolist())


def observations(frame: pd.DataFrame, pipeline: FusionPipeline, embeddings: np.ndarray | None = None, *,
                 grace_s: float | None = None) -> np.ndarray:
    """Training Observations ``(len(frame), OBS_DIM)`` of labeled windows, standardised as in deployment.

    Each ``(site, capture)`` learns its own baseline in a grace period (:func:`edge.online.fuse_frame`);
    the grace period's windows get the Observations of the baseline fitted at its end (they are training
    data too), and afterwards the baseline updates from the windows labeled benign — the windows a correct
    policy leaves unalerted. A capture shorter than the grace period is standardised by a baseline of its
    whole length.
    """
    from edge.online import fuse_frame

    frame = frame.reset_index(drop=True)
    emb = embed_texts(frame) if embeddings is None else embeddings
    return fuse_frame(pipeline, frame, emb, grace_s=grace_s, learn_from="labels", retrospective=True).vectors


def build_traces(frame: pd.DataFrame, pipeline: FusionPipeline, embeddings: np.ndarray | None = None, *,
                 grace_s: float | None = None, **kwargs) -> TraceSet:
    """:func:`observations` of ``frame`` as a :class:`fog.traces.TraceSet`."""
    frame = frame.reset_index(drop=True)
    return TraceSet.from_frame(frame, observations(frame, pipeline, embeddings, grace_s=grace_s), **kwargs)


def split_by_time(frame: pd.DataFrame, train_fraction: float = 0.7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each (site, capture) at the time that leaves ``train_fraction`` of its attacks before it.

    Attack episodes are kept whole: the cut falls between ground-truth intervals, so the held-out part
    holds later, unseen recordings of the techniques.

    Raises
    ------
    ValueError
        If ``train_fraction`` is not in (0, 1).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    train, test = [], []
    for _, g in frame.groupby(["site", "capture"], sort=True):
        g = g.sort_values("t_start", kind="stable")
        mal_t = np.sort(g.loc[g["label"] == 1, "t_start"].unique())
        if len(mal_t) >= 2:
            gaps = np.flatnonzero(np.diff(mal_t) > 15.0)
            starts = np.concatenate([[mal_t[0]], mal_t[gaps + 1]])
            k = int(round(train_fraction * len(starts)))
            cut = starts[min(max(k, 1), len(starts) - 1)] - 1e-6
        else:
            cut = g["t_start"].quantile(train_fraction)
        train.append(g[g["t_start"] < cut])
        test.append(g[g["t_start"] >= cut])
    return pd.concat(train, ignore_index=True), pd.concat(test, ignore_index=True)
