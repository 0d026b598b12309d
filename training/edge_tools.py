"""Offline edge tools: train the temporal scorer, compare it with baselines, export the torch-free edge models.

They run on a workstation or at image build, never on the edge device, so they live here and not in
``edge/``; ``marlids/cli.py`` registers them under ``marlids edge`` (``train-scorer``, ``score-eval``,
``export-onnx``), where users look for them. User errors (ValueError, ``edge.scorer.CheckpointError``) propagate
to ``marlids.cli.main``: one line, exit 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Offline edge tools (registered under `marlids edge`).")


@app.command("train-scorer")
def train_scorer(
    windows: Path = typer.Argument(..., help="Window Parquet file (only label == 0 rows are used if labeled)."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint directory to write."),
    seq_len: int = typer.Option(20, "--seq-len", help="T: windows per sequence.", min=2),
    epochs: int = typer.Option(20, "--epochs", help="Training passes over the benign sequences.", min=1),
    hidden: int = typer.Option(32, "--hidden", help="LSTM / attention width (multiple of --heads).", min=2),
    heads: int = typer.Option(4, "--heads", help="Temporal attention heads.", min=1),
    q: float = typer.Option(1e-3, "--q", help="Target false-positive rate of the SPOT threshold."),
    val_fraction: float = typer.Option(0.2, "--val-fraction",
                                       help="Last share of each device's benign windows used to fit the threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and shuffling."),
    onnx: bool = typer.Option(True, "--onnx/--no-onnx", help="Also write CKPT/scorer.onnx for the edge."),
    grace: float = typer.Option(60.0, "--grace", min=0.0,
                                help="Grace period of each capture's site baseline, seconds (as in deployment)."),
) -> None:
    """Train the LSTM + temporal-attention scorer on benign windows and write a checkpoint.

    The scorer reads windows standardised by their site baseline (each capture learns its own in its first
    --grace seconds), as every detection path feeds it. The checkpoint holds weights.pt and config.json
    (parameters, feature list, baseline settings, fitted SPOT threshold) and, with --onnx, scorer.onnx.

    Example: marlids edge train-scorer windows.parquet --out ckpt/scorer --seq-len 20 --epochs 20 --seed 0
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edge.io import read_window_table
    from edge.scorer import export_onnx, save_checkpoint
    from training.scorer.train import TrainConfig, train_from_frame

    df = read_window_table(windows)
    cfg = TrainConfig(seq_len=seq_len, epochs=epochs, hidden_size=hidden, n_heads=heads, q=q,
                      val_fraction=val_fraction, seed=seed, grace_s=grace)
    with Progress(TextColumn("[bold]training scorer"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("loss {task.fields[loss]}")) as progress:
        task = progress.add_task("train", total=epochs, loss="–")
        scorer, threshold, summary = train_from_frame(
            df, cfg, progress=lambda ep, loss: progress.update(task, advance=1, loss=f"{loss:.4f}"))
    save_checkpoint(out, scorer, threshold, extra=summary)
    msg = (f"wrote {out} ({summary['train_sequences']} train / {summary['val_sequences']} validation sequences, "
           f"threshold {threshold.threshold_:.4g} for q={q:g})")
    if onnx:
        export_onnx(scorer, out / "scorer.onnx")
        msg += f"; ONNX: {out / 'scorer.onnx'}"
    Console().print(msg, highlight=False)


@app.command("score-eval")
def score_eval(
    labeled: Path = typer.Argument(..., help="Labeled window Parquet file (label 0/1)."),
    out: Path = typer.Option(Path("score-eval"), "--out", "-o", help="Directory for metrics.json, roc.png, pr.png."),
    seq_len: int = typer.Option(20, "--seq-len", help="T: windows per sequence.", min=2),
    epochs: int = typer.Option(15, "--epochs", help="Training passes of the neural models.", min=1),
    q: float = typer.Option(1e-3, "--q", help="Target false-positive rate of every SPOT threshold."),
    models: str = typer.Option("lstm_attention,kitsune,lstm_ae,iforest", "--models",
                               help="Comma-separated subset of lstm_attention, kitsune, lstm_ae, iforest."),
    seed: int = typer.Option(0, "--seed", help="Seed of every model."),
) -> None:
    """Compare the temporal scorer with Kitsune-style, LSTM-autoencoder and Isolation-Forest baselines.

    Each device's windows are split by time 60/20/20; models train on benign train windows, thresholds
    are fitted on benign validation scores (SPOT), metrics are measured on the test part.

    Example: marlids edge score-eval labeled.parquet --out results/score-eval
    """
    from rich.console import Console
    from rich.table import Table

    from edge.io import read_window_table
    from training.scorer.evaluate import MODEL_NAMES, EvalConfig, evaluate_scorers, save_results

    chosen = tuple(m.strip() for m in models.split(",") if m.strip())
    bad = [m for m in chosen if m not in MODEL_NAMES]
    if bad or not chosen:
        raise ValueError(f"--models={models!r} is invalid: expected a comma-separated subset of "
                         f"{', '.join(MODEL_NAMES)}")
    df = read_window_table(labeled)
    cfg = EvalConfig(seq_len=seq_len, epochs=epochs, q=q, models=chosen, seed=seed)
    console = Console()
    with console.status("training") as status:
        results = evaluate_scorers(df, cfg, on_model=lambda name, stage: status.update(
            f"{'training and scoring' if stage == 'fit' else 'done'} {name}"))
    paths = save_results(results, out, meta={"file": str(labeled), "config": {
        "seq_len": seq_len, "epochs": epochs, "q": q, "seed": seed, "models": list(chosen)}})
    table = Table(title=f"anomaly scorers on {labeled.name} (test split; SPOT threshold q={q:g})",
                  caption="prec/recall/F1/FPR at the SPOT threshold fitted on benign validation scores")
    for col in ("model", "prec", "recall", "F1", "ROC-AUC", "PR-AUC", "FPR", "fit s", "ms/seq"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for r in results:
        table.add_row(r.name, f"{r.precision:.3f}", f"{r.recall:.3f}", f"{r.f1:.3f}", f"{r.roc_auc:.3f}",
                      f"{r.pr_auc:.3f}", f"{r.fpr:.4f}", f"{r.fit_s:.1f}", f"{r.score_ms_per_seq:.3f}")
    console.print(table)
    console.print("wrote " + ", ".join(str(p) for p in paths), highlight=False)


@app.command("export-onnx")
def export_onnx_models(
    out: Path = typer.Option(Path("models/edge"), "--out", "-o", help="Folder to write the edge models into."),
    fusion: Path = typer.Option(None, "--fusion",
                                help="Folder with a fusion.json (exported policy) to ship with its scorer."),
    scorer: Path = typer.Option(None, "--scorer", help="Scorer checkpoint (default: the fusion's scorer)."),
    keep_fp32: bool = typer.Option(False, "--keep-fp32", help="Also keep the fp32 MiniLM graph (~90 MB)."),
) -> None:
    """Write the torch-free edge models: MiniLM as int8 ONNX (parity-checked against fp32) + tokenizer,
    and optionally the fusion pipeline with the temporal scorer's ONNX.

    Needs the `ml` extra (torch) once, at image build or set-up time; the edge then runs with
    MARLIDS_EDGE_MODELS=OUT and no torch.

    Example: marlids edge export-onnx --out models/edge --fusion runs/policy
    """
    from rich.console import Console

    from training.onnx_export import export_edge_models

    m = export_edge_models(out, fusion=fusion, scorer=scorer, keep_fp32=keep_fp32)
    p = m["minilm"]["parity_int8_vs_fp32_torch"]
    size = sum(f["bytes"] for f in m["files"].values()) / 1e6
    Console().print(f"wrote {out} ({', '.join(m['files'])}; {size:.1f} MB); int8 MiniLM cosine to fp32: "
                    f"min {p['min_cosine']:.4f}, mean {p['mean_cosine']:.4f} on {p['n_texts']} protocol texts",
                    highlight=False)


