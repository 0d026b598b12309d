"""``marlids edge``: the per-site pipeline from packets to windows."""

import typer

app = typer.Typer(help="Edge pipeline: meter flows, build per-device windows, protocol text and MiniLM embeddings.",
                  no_args_is_help=True)
