"""``marlids edge``: the per-site pipeline from packets to windows."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import typer

from edge.config import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, DEFAULT_WINDOW_S, EdgeConfig
from edge.settings import settings_command

log = logging.getLogger(__name__)

app = typer.Typer(
    help=(
        "Edge pipeline: meter bidirectional flows (NFStream/nDPI), build per-device windows of named "
        "statistics, summarise each window's protocols as text and embed it with MiniLM (384-d, offline)."
    ),
    no_args_is_help=True,
)


def _progress():
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False)


BACKEND = typer.Option(None, "--backend",
                       help="How MiniLM (and the temporal scorer) run: 'onnx' (int8, torch-free), 'torch', or "
                            "'auto' = ONNX whenever the ONNX model folder is present ($MARLIDS_EDGE_MODELS, else "
                            "models/edge written by scripts/setup.sh or `marlids edge export-onnx`), torch otherwise. "
                            "Default: $MARLIDS_EDGE_BACKEND, else auto.")


def _backend(name: str | None) -> str | None:
    from edge.onnx_embed import BACKENDS

    if name is None:
        return None
    name = name.strip().lower()
    if name not in BACKENDS:
        raise typer.BadParameter(f"{name!r}: expected one of {', '.join(BACKENDS)}", param_hint="--backend")
    return name


def extract_with_progress(pcaps: list[Path], *, window_s: float, site_id: str, devices: str,
                          idle_timeout_s: int, active_timeout_s: int, embed: bool, backend: str | None = None):
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
            from edge.onnx_embed import make_embedder

            embedder = make_embedder(backend)  # ONNX whenever its model folder is present (resolve_backend)
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
    window: float = typer.Option(DEFAULT_WINDOW_S, "--window", help="Window length in seconds.", min=0.001),
    site: str = typer.Option("site", "--site", help="Site id written to every window."),
    devices: str = typer.Option("local", "--devices",
                                help="Which addresses are devices: 'local' (private, link-local, ULA) or 'all'."),
    idle_timeout: int = typer.Option(DEFAULT_IDLE_TIMEOUT_S, "--idle-timeout", help="Flow idle timeout (s).", min=1),
    active_timeout: int = typer.Option(DEFAULT_ACTIVE_TIMEOUT_S, "--active-timeout", help="Flow active timeout (s).", min=1),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed each window's protocol text with MiniLM."),
    backend: str | None = BACKEND,
) -> None:
    """Turn captures into per-device windows (features + protocol text [+ 384-d embedding]) in Parquet.

    Example: marlids edge extract data/captures/site_a.pcap --out windows.parquet --window 5
    """
    from rich.console import Console

    from edge.io import write_windows

    df, emb, figures = extract_with_progress(pcaps, window_s=window, site_id=site, devices=devices,
                                             idle_timeout_s=idle_timeout, active_timeout_s=active_timeout,
                                             embed=embed, backend=_backend(backend))
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
    window: float = typer.Option(DEFAULT_WINDOW_S, "--window", help="Window length (s) when FILE is a capture.", min=0.001),
    top: int = typer.Option(8, "--top", help="Rows per table.", min=1),
) -> None:
    """Print a summary: windows, devices, protocol texts and the most variable features."""
    from rich.console import Console

    from edge.capture import CaptureError, check_capture
    from edge.io import read_windows

    try:
        check_capture(file)
        is_capture, why_not_capture = True, ""
    except CaptureError as exc:
        is_capture, why_not_capture = False, str(exc)
    if is_capture:
        from edge.windows import extract_windows

        df = extract_windows([file], window_s=window)
    else:
        df, _ = read_windows(file, not_capture=why_not_capture)
    if df.empty:
        raise typer.BadParameter(f"{file} holds no windows", param_hint="FILE")
    console = Console()
    for t in summary_tables(df, top=top):
        console.print(t)


# --- temporal scorer: score-windows (training it, comparing it with baselines and exporting the edge models are
# offline work: training/edge_tools.py, registered as `marlids edge train-scorer / score-eval / export-onnx` by
# marlids/cli.py). Everything heavy is imported inside the command. User errors propagate to marlids.cli.main.


@app.command("score-windows")
def score_windows(
    windows: Path = typer.Argument(..., help="Window Parquet file to score."),
    ckpt: Path = typer.Option(..., "--ckpt", help="Checkpoint directory from train-scorer."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Parquet of keys, score, calibrated value, flag."),
    top: int = typer.Option(5, "--top", help="Flagged windows to print with their evidence.", min=0),
    grace: float | None = typer.Option(None, "--grace", min=0.0,
                                       help="Grace period of each site's baseline, seconds (default: the "
                                            "checkpoint's, 60); those windows are not scored."),
) -> None:
    """Score every window after its site's grace period (as the last of its device's sequence).

    Example: marlids edge score-windows windows.parquet --ckpt ckpt/scorer --out scores.parquet
    """
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from edge.embed import EMBED_DIM
    from edge.features import FEATURE_NAMES
    from edge.io import read_window_table
    from edge.observation import FusionPipeline
    from edge.online import fuse_frame

    df = read_window_table(windows).reset_index(drop=True)
    pipe = FusionPipeline(str(ckpt)).fit(df)  # CheckpointError: one line from marlids.cli.main
    fused = fuse_frame(pipe, df, np.zeros((len(df), EMBED_DIM), np.float32), grace_s=grace, learn_from="none")
    res = df[["site_id", "device_id", "t_start"]].copy()
    res["learning"] = fused.learning
    res["calibrated"] = fused.scores
    res["flag"] = np.nan_to_num(fused.scores, nan=0.0) >= pipe.alert_quantile()
    if out is not None:
        res.to_parquet(out)
    console = Console()
    n_flag = int(res["flag"].sum())
    console.print(f"scored {int((~res['learning']).sum())} windows of {res['device_id'].nunique()} devices after the "
                  f"grace period ({int(res['learning'].sum())} learned the baselines); {n_flag} flagged", highlight=False)
    if n_flag and top:
        order = np.argsort(-np.nan_to_num(fused.scores, nan=-1.0))[:top]
        table = Table(title="top flagged windows")
        for col in ("device", "t_start", "calibrated", "top deviations (value / site baseline, z)"):
            table.add_column(col, overflow="fold")
        for i in order:
            js = np.argsort(-np.abs(fused.z[i]))[:3]
            feats = "; ".join(f"{FEATURE_NAMES[j]}={df.at[i, FEATURE_NAMES[j]]:.3g} / {fused.baseline[i, j]:.3g} "
                              f"(z {fused.z[i, j]:+.1f})" for j in js)
            table.add_row(str(res.at[i, "device_id"]), f"{res.at[i, 't_start']:.0f}", f"{fused.scores[i]:.4f}", feats)
        console.print(table)


# --- runtime daemon (issue 7): stream Observations to the fog ---------------------------------------------


@app.command("run")
@settings_command(EdgeConfig, param="cfg")
def run(
    cfg: EdgeConfig,
    fast: bool = typer.Option(False, "--fast", help="Same as --replay-speed 0."),
    drain_timeout: float | None = typer.Option(None, "--drain-timeout",
                                               help="After a replay, stop waiting for the fog's acks after S "
                                                    "seconds (the rest stays buffered). Default: wait."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Client certificate (PEM) for mTLS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Its private key (PEM)."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="CA certificate that signed the fog's certificate."),
    insecure: bool = typer.Option(False, "--insecure", help="Plaintext gRPC (test benches only; logs a warning)."),
    backend: str | None = BACKEND,
) -> None:
    """Stream this site's Observations to the fog as its windows close; buffer on disk while the fog is away.

    The site's baseline is learned from its own traffic first (--grace seconds, no alerts meanwhile), then
    updated slowly from windows the fog did not alert; it is saved and resumed across restarts.

    Example: marlids edge run --pcap data/captures/site_a.pcap --replay-speed 10 --fog 127.0.0.1:50051
    --site site_a --insecure
    """
    from dataclasses import replace

    from edge.footprint import block_pyarrow, limit_malloc_arenas

    limit_malloc_arenas()  # a long-running process with several threads: edge.footprint
    if cfg.windows_out is None:  # only --windows-out writes Parquet
        block_pyarrow()

    from rich.console import Console

    from edge.daemon import run_edge
    from edge.transport.tls import resolve_security

    tls = resolve_security(role="client", cert=tls_cert, key=tls_key, ca=tls_ca, insecure=insecure)
    cfg = replace(cfg, tls=tls, backend=_backend(backend), replay_speed=0.0 if fast else cfg.replay_speed)
    site = cfg.site_id
    console = Console(stderr=True)
    with console.status(f"edge {site}: starting (loading models)") as status:
        def progress(st) -> None:
            b = st.baseline or {}
            state = (f"learning baseline {min(b['grace_elapsed_s'], b['grace_s']):.0f}/{b['grace_s']:.0f} s · "
                     if b.get("state") == "learning" else "detecting · " if b else "")
            status.update(f"edge {site}: {state}{st.slots} slots · {st.observations} observations · {st.sent} sent · "
                          f"acked to #{st.acked_seq} · {st.buffered} buffered"
                          + (f" · {st.dropped} dropped" if st.dropped else "")
                          + (f" · {st.shed_flows} flows shed (flood)" if st.shed_flows else "")
                          + ("" if st.connected else " · fog unreachable, retrying"))

        st = run_edge(cfg, drain_timeout_s=drain_timeout, on_progress=progress)
    Console().print(f"edge {site}: {st.slots} window slots, {st.observations} observations streamed; "
                    f"{st.buffered} left in the buffer, {st.dropped} dropped, {st.reconnects} reconnects",
                    highlight=False)
