"""``marlids edge``: the per-site pipeline from packets to windows."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

log = logging.getLogger(__name__)

app = typer.Typer(
    help=(
        "Edge pipeline: meter bidirectional flows (NFStream/nDPI), build per-device windows of named "
        "statistics, summarise each window's protocols as text and embed it with MiniLM (384-d, offline)."
    ),
    no_args_is_help=True,
)


def _progress():
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


def extract_with_progress(pcaps: list[Path], *, window_s: float, site_id: str, devices: str,
                          idle_timeout_s: int, active_timeout_s: int, embed: bool):
    """Run :func:`edge.windows.extract_windows` (and MiniLM) with rich progress bars.

    Returns
    -------
    (DataFrame, ndarray or None, dict)
        Windows, their embeddings ``(n, 384)`` (``None`` when ``embed`` is False) and run figures
        (packets, seconds, cache statistics).
    """
    from edge.windows import extract_windows

    t0 = time.perf_counter()
    scanned = {"packets": 0, "damaged": []}
    with _progress() as progress:
        task = progress.add_task("metering packets", total=0)

        def on_scan(scan) -> None:
            scanned["packets"] += scan.packets
            if scan.damaged:
                scanned["damaged"].append(f"{scan.path.name}: {scan.damage}")
            progress.update(task, total=scanned["packets"])

        df = extract_windows(pcaps, window_s=window_s, site_id=site_id, devices=devices,
                             idle_timeout_s=idle_timeout_s, active_timeout_s=active_timeout_s,
                             on_packets=lambda n: progress.advance(task, n), on_scan=on_scan)
        progress.update(task, completed=scanned["packets"])
        t_meter = time.perf_counter() - t0
        emb, cache = None, {}
        if embed and len(df):
            from edge.embed import TextEmbedder

            embedder = TextEmbedder()
            texts = df["proto_text"].tolist()
            uniq = list(dict.fromkeys(texts))
            etask = progress.add_task("embedding texts", total=len(uniq))
            step = 256
            for i in range(0, len(uniq), step):
                embedder.embed(uniq[i:i + step])
                progress.advance(etask, len(uniq[i:i + step]))
            emb = embedder.embed(texts)
            cache = embedder.cache_info()
    return df, emb, {"packets": scanned["packets"], "damaged": scanned["damaged"], "meter_s": t_meter,
                     "total_s": time.perf_counter() - t0, "cache": cache}


def summary_tables(df, top: int = 8):
    """Rich tables summarising windows: per-device counts and the most variable features."""
    import numpy as np
    from rich.table import Table

    from edge.features import FEATURES

    dev = Table(title=f"{len(df)} windows · {df['device_id'].nunique()} devices · "
                      f"{df['site_id'].nunique()} site(s)")
    for col in ("device", "windows", "packets", "bytes", "peers (max)", "most common protocol text"):
        dev.add_column(col, overflow="fold")
    for device, g in sorted(df.groupby("device_id"), key=lambda kv: -kv[1]["pkts"].sum())[:top]:
        text = g["proto_text"].value_counts().index[0]
        dev.add_row(str(device), str(len(g)), f"{g['pkts'].sum():,.0f}", f"{g['bytes'].sum():,.0f}",
                    f"{g['distinct_peers'].max():,.0f}", text[:110])
    if df["device_id"].nunique() > top:
        dev.caption = f"top {top} devices by packets"

    feats = Table(title="Features with the widest spread (coefficient of variation)")
    for col in ("feature", "unit", "mean", "p50", "p99", "max"):
        feats.add_column(col)
    stats = []
    for f in FEATURES:
        x = df[f.name].to_numpy(dtype=np.float64)
        mean = x.mean() if len(x) else 0.0
        cv = x.std() / abs(mean) if mean else 0.0
        stats.append((cv, f, mean, np.percentile(x, 50), np.percentile(x, 99), x.max()))
    for _, f, mean, p50, p99, mx in sorted(stats, key=lambda s: -s[0])[:top]:
        feats.add_row(f.name, f.unit, f"{mean:.3g}", f"{p50:.3g}", f"{p99:.3g}", f"{mx:.3g}")
    return dev, feats


@app.command()
def extract(
    pcaps: list[Path] = typer.Argument(..., help="pcap/pcapng files (one site; metered one by one)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet file of windows."),
    window: float = typer.Option(5.0, "--window", help="Window length in seconds.", min=0.001),
    site: str = typer.Option("site", "--site", help="Site id written to every window."),
    devices: str = typer.Option("local", "--devices",
                                help="Which addresses are devices: 'local' (private, link-local, ULA) or 'all'."),
    idle_timeout: int = typer.Option(120, "--idle-timeout", help="Flow idle timeout (s).", min=1),
    active_timeout: int = typer.Option(1800, "--active-timeout", help="Flow active timeout (s).", min=1),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed each window's protocol text with MiniLM."),
) -> None:
    """Turn captures into per-device windows (features + protocol text [+ 384-d embedding]) in Parquet.

    Example: marlids edge extract data/captures/site_a.pcap --out windows.parquet --window 5
    """
    from rich.console import Console

    from edge.io import write_windows

    df, emb, figures = extract_with_progress(pcaps, window_s=window, site_id=site, devices=devices,
                                             idle_timeout_s=idle_timeout, active_timeout_s=active_timeout,
                                             embed=embed)
    write_windows(df, out, window_s=window, embeddings=emb)
    console = Console()
    for dmg in figures["damaged"]:
        console.print(f"[yellow]warning:[/] damaged capture read up to the damage — {dmg}")
    rate = figures["packets"] / figures["meter_s"] if figures["meter_s"] else 0.0
    console.print(f"wrote {len(df)} windows of {df['device_id'].nunique()} devices to {out} "
                  f"({figures['packets']:,} packets, {rate:,.0f} packets/s metering, "
                  f"{figures['total_s']:.1f} s total)")


@app.command()
def inspect(
    file: Path = typer.Argument(..., help="A window Parquet file, or a pcap/pcapng capture to extract on the fly."),
    window: float = typer.Option(5.0, "--window", help="Window length (s) when FILE is a capture.", min=0.001),
    top: int = typer.Option(8, "--top", help="Rows per table.", min=1),
) -> None:
    """Print a summary: windows, devices, protocol texts and the most variable features."""
    from rich.console import Console

    from edge.capture import CaptureError, check_capture
    from edge.io import read_windows

    try:
        check_capture(file)
        is_capture = True
    except CaptureError:
        is_capture = False
    if is_capture:
        from edge.windows import extract_windows

        df = extract_windows([file], window_s=window)
    else:
        df, _ = read_windows(file)
    if df.empty:
        raise typer.BadParameter(f"{file} holds no windows", param_hint="FILE")
    console = Console()
    for t in summary_tables(df, top=top):
        console.print(t)
