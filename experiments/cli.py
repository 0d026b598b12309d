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
    console.print(f"{title}: done in {time.perf_counter() - t0:.0f} s → {md.parent}/ (Markdown: {md.name})")


SEEDS = typer.Option(None, "--seeds", min=1, help="Number of seeds (seed, seed+1, …); default: quick 1–2, full 2–3.")


@app.command()
def generalization(
    quick: bool = QUICK, seed: int = SEED, out: Path = OUT, seeds: int = SEEDS,
    folds: int = typer.Option(None, "--folds", min=2, help="Folds of range networks (default: quick 2, full 3)."),
    families: str = typer.Option(None, "--families", help="Comma-separated technique families left out one at a "
                                 "time (scan, flood, brute_force, app_dos, arp_spoof), or 'none' "
                                 "(default: quick scan, full all five)."),
    public_split: str = typer.Option("sites", "--public-split", help="How benign public captures are held out: "
                                     "'sites' (each fold tests a third of them, stratified by data set, and "
                                     "trains on the rest) or 'dataset' (IoT Sentinel against O'Connor + Kitsune: "
                                     "a model tested on a device set-up never saw one)."),
    aux_coeff: float = typer.Option(0.5, "--aux-coeff", min=0.0, help="Weight of the supervised auxiliary loss of "
                                    "every MAPPO run (marlids train mappo --aux-coeff, the bundle's 0.5; 0: PPO "
                                    "alone)."),
    mappo: list[str] = typer.Option(None, "--mappo", help="KEY=VALUE: another MAPPO setting of every run, over the "
                                    "bundle's (a field of `marlids train mappo`, with _ for -), e.g. --mappo "
                                    "minibatch_size=1000 --mappo num_epochs=2; repeatable."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Seeds run at the same time, each in its own process on "
                             "about one core and about 2.5 GiB of memory with its local Ray (every model trains "
                             "single-threaded, so the results do not depend on it)."),
    keep_models: Path = typer.Option(None, "--keep-models", help="Keep every fold's trained defender in this "
                                     "folder (seed<s>_fold<i>/, with held_out.json naming what it never trained on) "
                                     "to run `marlids fog detect --policy` with it; default: deleted."),
) -> None:
    """Leave sites out: train on some recorded networks, test on networks never trained on (after each site's
    grace period), on benign public captures and public attack mixes; leave-technique-out recall.

    MAPPO vs the temporal scorer, RandomForests (raw and site-standardised statistics) and a Kitsune-style
    ensemble learned from each test site's grace period; 95 % intervals over seeds.

    Example: marlids experiment generalization --quick; the full run, two seeds at a time:
    marlids experiment generalization --jobs 2
    """
    from experiments.generalization import mappo_overrides, run

    try:
        overrides = mappo_overrides(mappo or [])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--mappo") from None
    fams = None if families is None else [f.strip() for f in families.split(",") if f.strip() not in ("", "none")]
    try:
        _run("generalization", run, quick=quick, seed=seed, seeds=seeds, folds=folds, families=fams,
             public_split=public_split, aux_coeff=aux_coeff, mappo=overrides, jobs=jobs, keep_models=keep_models,
             out_root=out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--families/--folds/--public-split") from None




@app.command()
def ablation(quick: bool = QUICK, seed: int = SEED, seeds: int = SEEDS, out: Path = OUT) -> None:
    """Observation parts (statistics / + MiniLM / + temporal score / full) and MAPPO vs IPPO vs single-agent PPO.

    Held-out part of both range sites; mean and 95 % interval over seeds.

    Example: marlids experiment ablation --quick
    """
    from experiments.ablation import run

    _run("ablation", run, quick=quick, seed=seed, seeds=seeds, out_root=out)


@app.command()
def selfplay(quick: bool = QUICK, seed: int = SEED, seeds: int = SEEDS, out: Path = OUT) -> None:
    """With vs without the self-play attacker: held-out captures and a freshly trained adaptive attacker.

    Robustness gain as a paired per-seed difference with a 95 % interval.

    Example: marlids experiment selfplay --quick --seeds 3
    """
    from experiments.selfplay import run

    _run("selfplay", run, quick=quick, seed=seed, seeds=seeds, out_root=out)


@app.command()
def drift(quick: bool = QUICK, seed: int = SEED, out: Path = OUT) -> None:
    """Prequential (test-then-train) evaluation over a real stream with drift at known points.

    Benign behaviour change, new device types (IoT Sentinel), an unseen technique (amplification);
    MAPPO with online fine-tuning vs static MAPPO, RandomForest (static and retrained) and the temporal
    scorer; prequential-F1 plot and windows to recover after each drift.

    Example: marlids experiment drift --quick
    """
    from experiments.drift import run

    _run("drift", run, quick=quick, seed=seed, out_root=out)


@app.command()
def report(
    results: Path = typer.Option(None, "--results", help="Results root (default: results/ in the repository)."),
    out: Path = typer.Option(None, "--out", help="Markdown file (default: docs/results.md)."),
) -> None:
    """Build docs/results.md from results/<experiment>/ (tables, plots, seeds, runtimes, dataset citations).

    Example: marlids experiment report
    """
    from experiments.common import RESULTS
    from experiments.report import build

    path = build(results or RESULTS, out)
    typer.echo(f"wrote {path}")
