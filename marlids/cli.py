"""The ``marlids`` command: one entry point, one sub-command group per component.

Each component owns its typer app in ``<component>/cli.py``; heavy libraries (torch, Ray,
FastAPI) are imported inside the commands, so ``marlids --help`` stays instant.
"""

from __future__ import annotations

import logging
import os
import sys

import click
import typer

from edge.cli import app as edge_app
from marlids import __version__

app = typer.Typer(
    name="marlids",
    help=(
        "marlids — multi-agent RL intrusion detection for IoT networks.\n\n"
        "Packets in (pcap files or a live interface), explained alerts out. Components:\n\n"
        "  edge   meter flows, build per-device windows, protocol text, MiniLM embeddings\n\n"
        "Run `marlids demo` for the end-to-end job on the bundled capture, and\n"
        "`marlids COMMAND --help` for what each group does."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(edge_app, name="edge")


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
        app(standalone_mode=False)
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
