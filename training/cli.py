"""``marlids train``: MAPPO training with self-play, evaluation and comparison of exported policies."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.settings import settings_command
from training.mappo.config import MappoArgs

app = typer.Typer(
    help=("Train the defenders with MAPPO on RLlib (shared actor, centralized critic, self-play attacker), "
          "locally, on a Ray cluster (--address) or on GPUs (--num-gpus-per-learner); evaluate exported policies."),
    no_args_is_help=True,
)


@app.command()
@settings_command(MappoArgs, param="args")
def mappo(args: MappoArgs) -> None:
    """Train with MAPPO and league self-play; logs to TensorBoard, checkpoints, exports the defender actor.

    Example: marlids train mappo --iterations 30 (then: tensorboard --logdir runs)
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.mappo.train import train

    if args.resume is not None and not Path(args.resume).is_dir():
        raise FileNotFoundError(f"--resume {args.resume}: no such checkpoint folder")
    if args.scorer is not None and args.scorer_epochs:
        raise ValueError("give either --scorer CHECKPOINT or --scorer-epochs N (train one), not both")
    console = Console()
    with Progress(TextColumn("[bold]training"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        task = progress.add_task("train", total=args.iterations, status="")

        def on_iteration(it: int, m: dict) -> None:
            progress.update(task, advance=1, status=(
                f"F1 {m['detection/f1']:.2f} FPR {m['detection/fpr']:.3f} "
                f"attacker success {m['detection/attacker_success_rate']:.2f} "
                f"{m['charts/env_steps_per_s']:.0f} env steps/s"))

        final = train(args, on_iteration=on_iteration)
    console.print(f"run: {final['run_dir']}\ncheckpoint: {final['checkpoint']}\n"
                  f"exported defender actor: {final['policy_dir']}")


@app.command("eval")
def eval_(
    checkpoint: Path = typer.Argument(..., help="Run folder or its policy/ folder (exported defender actor)."),
    data: list[Path] = typer.Option([], "--data", help="Labeled Parquet or capture + ground truth; repeatable "
                                                        "(default: held-out part of the bundled captures)."),
    compare: list[str] = typer.Option([], "--compare", help="NAME=RUN_DIR of another policy, e.g. IPPO=runs/ippo__0__…; "
                                                            "repeatable."),
    train_fraction: float = typer.Option(0.7, "--train-fraction",
                                         help="With the default data: the share used for training (the rest is scored)."),
    grace: float | None = typer.Option(None, "--grace", min=0.0,
                                       help="Grace period in seconds: each capture first learns its site baseline; "
                                            "those windows are not scored (default: the policy's, 60)."),
    json_out: Path | None = typer.Option(None, "--json",
                                         help="Write the metrics as JSON (keys precision, recall, f1, fpr, mcc, "
                                              "per_technique, … per detector; the metrics are null when every "
                                              "window fell in a grace period)."),
) -> None:
    """Per-window precision, recall, F1, FPR, MCC, per-technique recall and a confusion matrix, side by side,
    on the windows after each site's grace period.

    Example: marlids train eval runs/mappo__0__1795526981 --compare IPPO=runs/ippo__0__1795527100 --json m.json
    """
    from rich.console import Console
    from rich.table import Table

    from edge.paths import BUNDLED_CAPTURES
    from fog.attacks import ATTACK_CLASSES
    from training.data import load_labeled_embedded, split_by_time
    from training.evaluate import evaluate

    policies = {"MAPPO": checkpoint}
    for item in compare:
        if "=" not in item:
            raise ValueError(f"--compare {item!r}: expected NAME=RUN_DIR")
        name, path = item.split("=", 1)
        policies[name] = Path(path)
    frame, emb = load_labeled_embedded(data or sorted(BUNDLED_CAPTURES.glob("*.pcap")))
    if not data:
        _, test = split_by_time(frame.assign(_row=range(len(frame))), train_fraction)
        frame, emb = test.drop(columns="_row"), emb[test["_row"].to_numpy()]
    results = evaluate(policies, frame, emb, grace_s=grace)
    console = Console()
    r0 = results[0]
    t = Table(title=f"per-window detection on {r0.windows} windows ({r0.malicious} malicious) after the grace "
                    f"period ({r0.grace_windows} windows learned the site baselines)")
    for c in ("detector", "precision", "recall", "F1", "FPR", "MCC"):
        t.add_column(c)
    for r in results:
        t.add_row(r.name, *((f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", f"{r.fpr:.4f}", f"{r.mcc:.3f}")
                            if r.windows else ("—",) * 5))
    console.print(t)
    from edge.baseline import grace_notice

    notice = grace_notice(r0.windows, r0.grace_windows, grace)
    if notice:
        console.print(f"[yellow]note:[/] {notice}", highlight=False)
    techs = sorted({k for r in results for k in r.per_technique_recall})
    pt = Table(title="recall per technique")
    pt.add_column("technique")
    for r in results:
        pt.add_column(r.name)
    for k in techs:
        pt.add_row(k, *(f"{r.per_technique_recall.get(k, float('nan')):.2f}" for r in results))
    console.print(pt)
    main = results[0]
    cm = Table(title=f"confusion matrix of {main.name} (rows: true class, columns: predicted)")
    cm.add_column("")
    for c in ATTACK_CLASSES:
        cm.add_column(c)
    for i, c in enumerate(ATTACK_CLASSES):
        cm.add_row(c, *(str(v) for v in main.confusion[i]))
    console.print(cm)
    if json_out is not None:
        import json

        doc = {**results[0].to_dict(), "detectors": {r.name: r.to_dict() for r in results},
               "data": [str(p) for p in data], "grace_s": grace if grace is not None else "policy default"}
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(doc, indent=1))
        console.print(f"wrote {json_out}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="Run folder of `marlids train mappo` (with policy/ and checkpoints/)."),
    iteration: int = typer.Option(..., "--iteration", min=1, help="Training iteration of the checkpoint to export."),
    out: Path = typer.Option(..., "--out", help="Policy folder to write (e.g. models/defender)."),
) -> None:
    """Export the defender actor of one checkpoint (a snapshot of the run) as a policy folder, Ray-free.

    The run's own policy/ is its last iteration; this picks another snapshot (e.g. the bundled one).

    Example: marlids train export runs/bundle8s1__1__1796125889 --iteration 25 --out models/defender
    """
    from training.mappo.train import export_snapshot

    typer.echo(f"exported iteration {iteration} of {run} to {export_snapshot(run, iteration, out)}")


@app.command()
def split(
    labeled: list[Path] = typer.Argument(..., help="Labeled window Parquet files (from `marlids range label`)."),
    train_out: Path = typer.Option(..., "--train-out", help="Parquet for the earlier (training) part."),
    test_out: Path = typer.Option(None, "--test-out", help="Parquet for the later (held-out) part (needed "
                                                            "unless --train-fraction is 1)."),
    train_fraction: float = typer.Option(0.7, "--train-fraction", min=0.01, max=1.0,
                                         help="Share of attack episodes before the cut; 1.0 writes every window "
                                              "to --train-out (joins files)."),
) -> None:
    """Split labeled windows in time, between attack episodes, exactly as `train mappo` and `train eval` do.

    Each (site, capture) is cut on its own; the parts of all files are written together.

    Example: marlids train split site_a.parquet site_b.parquet --train-out train.parquet --test-out test.parquet
    """
    if test_out is None and train_fraction < 1.0:
        raise ValueError(f"--test-out is needed with --train-fraction {train_fraction} (< 1: a held-out part exists)")
    import pandas as pd

    from training.data import split_by_time

    frames = []
    for path in labeled:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        frames.append(pd.read_parquet(path))
        if "label" not in frames[-1].columns:
            raise ValueError(f"{path}: not a labeled window file (no 'label' column); run `marlids range label`")
    frame = pd.concat(frames, ignore_index=True)
    parts = [(frame, train_out)] if train_fraction >= 1.0 else zip(split_by_time(frame, train_fraction),
                                                                     (train_out, test_out))
    for part, out in parts:
        out.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(out, index=False)
        typer.echo(f"{out}: {len(part)} windows, {int(part['label'].sum())} malicious")


@app.command()
def scenarios(
    scenario: Path = typer.Argument(..., help="Site scenario YAML (e.g. training/range/scenarios/site_a.yaml)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the scenario with the new schedule here (YAML)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the rule-based generator."),
    n_attacks: int = typer.Option(6, "--n-attacks", min=1, help="Attacks to schedule."),
    base_url: str = typer.Option(None, "--llm-base-url", envvar="OPENAI_BASE_URL",
                                 help="OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama…); rules when unset."),
    model: str = typer.Option(None, "--llm-model", envvar="MARLIDS_LLM_MODEL", help="Model name at that endpoint."),
    timeout: float = typer.Option(30.0, "--llm-timeout", min=0.1, help="LLM request timeout (s)."),
    attack_stix: Path = typer.Option(None, "--attack-stix",
                                     help="MITRE ATT&CK STIX bundle (default ../shared/data/attack/…)."),
) -> None:
    """Generate an attack schedule (seeded rules, or an LLM) validated against the range and real ATT&CK data."""
    import os

    import yaml
    from rich.console import Console
    from rich.table import Table

    from training.scenario_gen import DEFAULT_STIX, generate, with_schedule

    raw = yaml.safe_load(scenario.read_text())
    res = generate(raw, seed=seed, n_attacks=n_attacks, stix_path=attack_stix or DEFAULT_STIX, base_url=base_url,
                   model=model, timeout_s=timeout, api_key=os.environ.get("OPENAI_API_KEY"))
    console = Console()
    t = Table(title=f"schedule ({res.source}): {len(res.accepted)} accepted, {len(res.rejected)} rejected")
    for c in ("start_s", "duration_s", "technique", "target"):
        t.add_column(c)
    for a in res.accepted:
        t.add_row(str(a["start_s"]), str(a["duration_s"]), a["technique"], a["target"])
    console.print(t)
    for entry, reason in res.rejected:
        console.print(f"[yellow]rejected[/] {str(entry)[:80]} — {reason}")
    if out:
        out.write_text(yaml.safe_dump(with_schedule(raw, res), sort_keys=False))
        console.print(f"wrote {out}")
