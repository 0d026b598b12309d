"""Window Parquet files: the Window contract plus optional MiniLM embeddings, self-describing.

Columns: ``site_id, device_id, t_start, t_end, capture``, the float32 statistics of
:data:`edge.features.FEATURE_NAMES`, ``proto_text``, ``peers`` (list of str) and, when embedded,
``embedding`` (fixed-size list of 384 float32). Labeled files add ``label, attack, technique_id``
(see the range). The schema metadata key ``marlids`` holds JSON: window length, feature names,
embedding model and the marlids version, so a reader can refuse a file made with another layout.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edge.embed import EMBED_DIM
from edge.features import FEATURE_NAMES

EMBED_MODEL = "all-MiniLM-L6-v2"


def _version() -> str:
    try:
        return importlib.metadata.version("marlids")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class WindowFileError(ValueError):
    """A file is not a readable marlids window Parquet file."""


def write_windows(df: pd.DataFrame, path: str | Path, *, window_s: float,
                  embeddings: np.ndarray | None = None) -> Path:
    """Write windows (and optionally their embeddings, shape ``(len(df), 384)``) to Parquet.

    Raises
    ------
    ValueError
        If ``embeddings`` does not have one 384-d row per window.
    """
    table = pa.Table.from_pandas(df, preserve_index=False)
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.shape != (len(df), EMBED_DIM):
            raise ValueError(f"embeddings must have shape ({len(df)}, {EMBED_DIM}), got {emb.shape}")
        col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), type=pa.float32()), EMBED_DIM)
        table = table.append_column("embedding", col)
    meta = {
        "window_s": window_s,
        "features": list(FEATURE_NAMES),
        "embedding_model": EMBED_MODEL if embeddings is not None else None,
        "marlids_version": _version(),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"marlids": json.dumps(meta).encode()})
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    return out


def read_windows(path: str | Path, *, not_capture: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Read a window Parquet file.

    Parameters
    ----------
    path : str or Path
    not_capture : str, optional
        For commands that take a capture or a window file: why ``path`` is not a capture
        (:class:`edge.capture.CaptureError`'s message); a file that is not Parquet either is then reported with
        both reasons ("neither a capture nor a window file: …").

    Returns
    -------
    (DataFrame, dict)
        The windows (``embedding`` dropped from the frame; use :func:`read_embeddings`) and the
        ``marlids`` metadata.

    Raises
    ------
    WindowFileError
        If the file is missing, not Parquet, or its features differ from this version's list.
    """
    p = Path(path)
    if not p.is_file():
        raise WindowFileError(f"{p}: no such file")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as exc:
        why = f"not a Parquet file ({exc})"
        if not_capture:
            why = f"neither a capture nor a window file: {not_capture.removeprefix(f'{p}: ')}; {why}"
        raise WindowFileError(f"{p}: {why}") from exc
    raw = (table.schema.metadata or {}).get(b"marlids")
    if raw is None:
        raise WindowFileError(f"{p}: not a marlids window file (no 'marlids' metadata)")
    meta = json.loads(raw)
    if meta.get("features") != list(FEATURE_NAMES):
        raise WindowFileError(f"{p}: written with another feature list; re-extract with this version")
    if "embedding" in table.column_names:
        table = table.drop(["embedding"])
    return table.to_pandas(), meta


def read_embeddings(path: str | Path) -> np.ndarray:
    """The ``embedding`` column of a window file as float32, shape ``(n_windows, 384)``.

    Raises
    ------
    WindowFileError
        If the file has no embeddings (extracted with ``--no-embed``).
    """
    table = pq.read_table(Path(path), columns=None)
    if "embedding" not in table.column_names:
        raise WindowFileError(f"{path}: no embedding column (extracted with --no-embed)")
    col = table.column("embedding").combine_chunks()
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, EMBED_DIM)


def read_window_table(path: str | Path) -> pd.DataFrame:
    """Any window Parquet file as a DataFrame (labeled or not, with or without marlids metadata).

    Raises
    ------
    ValueError
        One line naming the file: missing, or not readable as Parquet.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file (expected a window Parquet file)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a non-Parquet file
        raise ValueError(f"{path}: cannot read as Parquet ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160]})") from None
