"""The ``marlids`` command: one entry point, one sub-command group per component.

Each component owns its typer app in ``<component>/cli.py``; heavy libraries (torch, Ray,
FastAPI) are imported inside the commands, so ``marlids --help`` stays instant.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click
import typer

from cloud.cli import app as cloud_app
from edge.cli import app as edge_app
from fog.cli import app as fog_app
from training.cli import app as train_app
from training.range.cli import app as range_app
from marlids import __version__

app = typer.Typer(
    name="marlids",
    help=(
        "marlids — multi-agent RL intrusion detection for IoT networks.\n\n"
        "Packets in (pcap files or a live interface), explained alerts out. Components:\n\n"
        "  edge    meter flows, build per-device windows, protocol text, MiniLM embeddings, temporal scorer\n\n"
        "  range   record labeled IoT traffic with real attack tools in network namespaces; label, mix\n\n"
        "  train   MAPPO with a self-play attacker on Ray RLlib; evaluate policies; attack schedules\n\n"
        "  fog     run the trained shared defender policy over sites' windows and raise alerts\n\n"
        "  cloud   analyst API: store alerts, map to ATT&CK, explain them, dashboard, SIEM export\n\n"
        "Run `marlids demo` for the end-to-end job on the bundled captures, and\n"
        "`marlids COMMAND --help` for what each group does."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(edge_app, name="edge")
app.add_typer(range_app, name="range")
app.add_typer(fog_app, name="fog")
app.add_typer(train_app, name="train")
app.add_typer(cloud_app, name="cloud")


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    """Configure logging and offline model loading for every sub-command."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )


BUNDLED_CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"


@app.command()
def demo(
    captures: Path = typer.Option(BUNDLED_CAPTURES, "--captures",
                                  help="Folder of <site>.pcap captures (default: the bundled range recordings)."),
    out: Path = typer.Option(Path("out/demo"), "--out", help="Where the window Parquet files are written."),
    window: float = typer.Option(5.0, "--window", help="Window length in seconds.", min=0.001),
    embed: bool = typer.Option(True, "--embed/--no-embed", help="Embed protocol texts with MiniLM."),
) -> None:
    """The main job, on the bundled real captures: per site, meter flows, build windows, embed texts,
    write Parquet and print a readable summary (devices, protocol texts, widest-spread features).
    """
    from rich.console import Console
    from rich.rule import Rule

    from edge.cli import extract_with_progress, summary_tables
    from edge.io import write_windows

    pcaps = sorted(p for p in captures.glob("*.pcap*") if p.is_file())
    if not pcaps:
        raise FileNotFoundError(f"no .pcap/.pcapng captures in {captures}")
    console = Console()
    for pcap in pcaps:
        site = pcap.name.split(".")[0]
        console.print(Rule(f"site {site} — {pcap.name}"))
        df, emb, fig = extract_with_progress([pcap], window_s=window, site_id=site, devices="local",
                                             idle_timeout_s=120, active_timeout_s=1800, embed=embed)
        path = write_windows(df, out / f"windows_{site}.parquet", window_s=window, embeddings=emb)
        for table in summary_tables(df):
            console.print(table)
        cache = fig["cache"]
        console.print(f"{fig['packets']:,} packets → {len(df):,} windows in {fig['total_s']:.1f} s; "
                      f"{df['proto_text'].nunique():,} distinct protocol texts"
                      + (f" (MiniLM cache: {cache['misses']:,} encoded, {cache['hits']:,} hits)" if cache else "")
                      + f"; written to {path}")


@app.command()
def version() -> None:
    """Print the marlids version."""
    typer.echo(__version__)


#: Errors a user can cause (bad file, bad argument, missing model): one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError,
                                                 IsADirectoryError, RuntimeError)


def main() -> None:
    """Console-script entry point: user errors become one ``marlids: error: …`` line and exit code 2."""
    try:
        rc = app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except USER_ERRORS as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        typer.echo(f"marlids: error: {exc}", err=True)
        sys.exit(2)
    # Without standalone mode click returns (not raises) the code of a typer.Exit, e.g. 130 on Ctrl-C.
    sys.exit(rc if isinstance(rc, int) else 0)
