"""``marlids experiment``: reproducible experiments on real captures → ``results/<name>/`` and ``docs/results.md``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help=("Reproducible experiments on real captures: concept drift, cross-site generalization, self-play "
          "benefit, ablations. Each writes results/<name>/ (CSV, Markdown, PNG, config.json with the seed); "
          "--quick is the small CI mode (≤ 5 min each on 2 cores), the default is the full mode. "
          "`marlids experiment report` builds docs/results.md from results/."),
    no_args_is_help=True,
)

QUICK = typer.Option(False, "--quick", help="Small settings (CI, ≤ 5 min on 2 cores); default: full mode.")
SEED = typer.Option(0, "--seed", help="Seed of data sampling, models and RL training.")
OUT = typer.Option(None, "--out", help="Results root (default: results/ in the repository).")


def _run(title: str, fn, **kwargs) -> None:
    import time

    from rich.console import Console

    console = Console()
    t0 = time.perf_counter()
    with console.status(f"[bold]{title}") as status:
        def progress(msg: str) -> None:
            status.update(f"[bold]{title}[/]: {msg} ({time.perf_counter() - t0:.0f} s)")
            console.log(msg)

        md = fn(progress=progress, **kwargs)
    console.print(f"{title}: done in {time.perf_counter() - t0:.0f} s → {md.parent}/")
    console.print(md.read_text().split("\n\n### ", 2)[1].join(("### ", "")) if "\n\n### " in md.read_text() else "")


@app.command()
def generalization(
    quick: bool = QUICK, seed: int = SEED, out: Path = OUT,
    with_mixes: bool = typer.Option(False, "--with-mixes", help="Also train on the SYN-flood public mix "
                                                               "(then it is not a test set)."),
) -> None:
    """Train on site A, test on site B, on public-capture mixes and on IoT Sentinel devices.

    Per-class F1 for seen vs unseen techniques and devices; MAPPO vs RandomForest, Kitsune-style, scorer.

    Example: marlids experiment generalization --quick
    """
    from experiments.generalization import run

    _run("generalization", run, quick=quick, seed=seed, with_mixes=with_mixes, out_root=out)
