"""The ``marlids`` command: one entry point, one sub-command group per component.

Each component owns its typer app in ``<component>/cli.py``; heavy libraries (torch, Ray,
FastAPI) are imported inside the commands, so ``marlids --help`` stays instant.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import typer
from typer.core import TyperGroup

try:  # typer < 0.20 depends on click; newer releases vendor their own copy (then click may be absent)
    import click
except ImportError:  # e.g. the fog image: `pip install .[fog]` brings no click
    click = None

from edge.cli import app as edge_app
from edge.paths import BUNDLED_CAPTURES, BUNDLED_POLICY
from experiments.cli import app as experiment_app
from fog.cli import app as fog_app
from marlids import __version__
from training import edge_tools
from training.cli import app as train_app
from training.range.cli import app as range_app


def _cloud_app() -> typer.Typer:
    """``marlids cloud``, or, in an install without the ``cloud`` extra (the edge and fog images), a group
    that says how to get it: the cloud's options are generated from its pydantic-settings model."""
    try:
        from cloud.cli import app as cloud
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("cloud", "edge", "fog", "training", "experiments", "marlids"):
            raise  # our own code is missing: a broken install, not an absent extra
        missing = exc.name
        cloud = typer.Typer(help=f"Cloud analyst API — not installed here ({missing} is missing): "
                                 "pip install 'marlids[cloud]'.")

        @cloud.callback(invoke_without_command=True)
        def _absent() -> None:
            typer.echo(f"marlids: error: the cloud is not installed here ({missing} is missing); "
                       "pip install 'marlids[cloud]'", err=True)
            raise typer.Exit(2)

    return cloud


class _RootGroup(TyperGroup):
    """The root command group; ``cloud`` is built on first use, so the edge and fog commands do not import the
    cloud's settings model (pydantic-settings, about 0.1 s of every start on one core)."""

    def list_commands(self, ctx) -> list[str]:
        names = list(super().list_commands(ctx))
        if "cloud" not in names:  # listed where it was registered before: after train, before experiment
            names.insert(names.index("experiment") if "experiment" in names else len(names), "cloud")
        return names

    def get_command(self, ctx, cmd_name: str):
        if cmd_name == "cloud" and cmd_name not in self.commands:
            holder = typer.Typer()  # built as a sub-group, as add_typer does: no completion options of its own
            holder.add_typer(_cloud_app(), name="cloud")
            self.add_command(typer.main.get_command(holder).commands["cloud"], "cloud")
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    cls=_RootGroup,
    name="marlids",
    help=(
        "marlids — multi-agent RL intrusion detection for IoT networks.\n\n"
        "Packets in (pcap files or a live interface), explained alerts out. Components:\n\n"
        "  edge    meter flows, build per-device windows, protocol text, MiniLM embeddings, temporal scorer\n\n"
        "  range   record labeled IoT traffic with real attack tools in network namespaces; label, mix\n\n"
        "  train   MAPPO with a self-play attacker on Ray RLlib; evaluate policies; attack schedules\n\n"
        "  fog     run the trained shared defender policy over sites' windows and raise alerts\n\n"
        "  cloud   analyst API: store alerts, map to ATT&CK, explain them, dashboard, SIEM export\n\n"
        "  experiment  drift, cross-site generalization, self-play benefit, ablations → results/, docs/results.md\n\n"
        "Run `marlids demo` for the end-to-end job on the bundled captures, and\n"
        "`marlids COMMAND --help` for what each group does."
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
# the offline edge tools (train-scorer, score-eval, export-onnx) live in training/ and are listed under `edge`
edge_app.registered_commands.extend(edge_tools.app.registered_commands)
app.add_typer(edge_app, name="edge")
app.add_typer(range_app, name="range")
app.add_typer(fog_app, name="fog")
app.add_typer(train_app, name="train")
app.add_typer(experiment_app, name="experiment")


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
    if not verbose:  # one line per HTTP request (the demo polls the cloud) only with -v
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def demo(
    captures: Path = typer.Option(BUNDLED_CAPTURES, "--captures",
                                  help="Folder of <site>.pcap captures with <site>.groundtruth.csv beside them "
                                       "(default: the bundled range recordings)."),
    policy: Path = typer.Option(BUNDLED_POLICY, "--policy", help="Exported defender policy folder "
                                                                 "(default: the bundled models/defender)."),
    out: Path = typer.Option(Path("out/demo"), "--out", help="Working folder: logs, SQLite store, keys, buffers."),
    keep_running: bool = typer.Option(False, "--keep-running",
                                      help="Leave the cloud API, dashboard and fog up until Ctrl-C."),
    show: int = typer.Option(15, "--show", min=0, help="Incidents listed in the table (each technique family first, "
                                                       "then by level)."),
    grace: float | None = typer.Option(None, "--grace", min=0.0,
                                       help="Grace period in seconds: each site first learns its own baseline from "
                                            "its traffic, with no alerts (default: the policy's, 60)."),
) -> None:
    """The main job: cloud API + fog coordinator + one edge daemon per site on the bundled real captures.

    Each edge meters flows, builds windows, embeds protocol texts with MiniLM, scores them with the
    temporal scorer and streams Observations over gRPC; the fog decides them with the trained MAPPO
    defender and posts alerts; the cloud stores, maps to ATT&CK and explains them. Each site first learns
    its own baseline in a grace period (--grace), during which nothing is alerted. Ends with the alerts,
    per-site detection metrics after the grace period against the captures' ground truth and the dashboard URL.
    """
    import time
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from marlids.demo import DemoStopped, run_demo, stop_all, stop_on_signals

    pcaps = sorted(p for p in captures.glob("*.pcap*") if p.is_file())
    if not pcaps:
        raise FileNotFoundError(f"no .pcap/.pcapng captures in {captures}")
    probe = Console()
    console = Console(width=min(100, probe.width) if probe.is_terminal else 100)  # ≤ 100 columns
    result = None
    with stop_on_signals():  # SIGTERM and Ctrl-C stop every service, whenever they come
        try:
            result = run_demo(pcaps, policy, out, console=console, keep_running=keep_running, grace_s=grace)
            console.print(incidents_table(result.incidents, len(result.alerts), show))
            m = Table(title="per-site detection after each site's grace period (grace: windows learned, not decided; "
                            "a window is detected when an alert was stored for it)")
            for c in ("site", "grace", "detecting from (UTC)", "windows", "malicious", "P", "R", "F1", "FPR"):
                m.add_column(c, justify="left" if c in ("site", "detecting from (UTC)") else "right")
            for site, r in result.metrics.items():
                end = r.get("grace_period_end")
                since = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M:%S") if end else "still learning"
                m.add_row(site, str(r["grace_windows"]), since, str(r["windows"]), str(r["malicious"]),
                          f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", f"{r['fpr']:.4f}")
            console.print(m)
            if policy.resolve() == BUNDLED_POLICY.resolve() and captures.resolve() == BUNDLED_CAPTURES.resolve():
                console.print("The bundled policy was trained on other recordings of these sites, 13 other range "
                              "networks and 27 public benign captures (models/README.md): none of these windows was "
                              "seen in training, but its training settings were tuned while watching these captures, "
                              "so they are not a fully held-out test; see results/generalization for networks never "
                              "trained on.")
            console.print(f"finished in {result.seconds:.0f} s; metrics in {out / 'demo_metrics.json'}, logs in {out}/")
            console.print(f"dashboard: {result.dashboard_url}  (analyst key in {out / 'keys.json'})")
            if keep_running:
                console.print("services keep running; Ctrl-C (or SIGTERM) stops them")
                while all(s.alive() for s in result.services if not s.name.startswith("edge_")):
                    time.sleep(1)
        except DemoStopped as exc:
            console.print(f"{exc}: every service stopped")
            raise typer.Exit(128 + exc.signum) from None
        finally:
            if result is not None and keep_running:
                stop_all(result.services)


def incidents_table(incidents: list[dict], n_alerts: int, show: int):
    """The demo's first table: incidents (cloud/services/incidents.py), every technique family that occurred
    first (its highest-level incident), then the rest by level; times in UTC with their date."""
    from datetime import UTC, datetime

    from rich.table import Table

    def when(iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    ranked = sorted(incidents, key=lambda i: (-i["max_level"], -i["alert_count"], i["first_ts"]))
    first = {}
    for i in ranked:
        first.setdefault(i["attack_class"], i)
    rows = list(first.values()) + [i for i in ranked if i not in first.values()]
    t = Table(title=f"{len(incidents)} incidents from {n_alerts} alerts (showing {min(show, len(rows))}: each "
                    "technique family first, then by level)")
    for c in ("start (UTC)", "for", "family", "likely attacker", "devices", "alerts", "lvl"):
        t.add_column(c, overflow="fold", justify="right" if c in ("for", "alerts", "lvl") else "left")
    for i in rows[:show]:
        span = (datetime.fromisoformat(i["last_ts"]) - datetime.fromisoformat(i["first_ts"])).total_seconds()
        devices = ", ".join(i["device_ids"][:2]) + (f" +{len(i['device_ids']) - 2}" if len(i["device_ids"]) > 2 else "")
        t.add_row(when(i["first_ts"]), f"{span:.0f} s", i["attack_class"], i["actor"], devices, str(i["alert_count"]),
                  str(i["max_level"]))
    return t


@app.command()
def version() -> None:
    """Print the marlids version."""
    typer.echo(__version__)


#: Errors a user can cause (bad file, bad argument, missing model): one line, exit code 2, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, PermissionError,
                                                 IsADirectoryError, RuntimeError)


# Recent Typer releases vendor their own copy of click, whose exceptions are not the installed click's: catch both.
_EXITS: tuple[type[BaseException], ...] = (typer.Exit,) + ((click.exceptions.Exit,) if click else ())
_USAGE_ERRORS: tuple[type[BaseException], ...] = tuple(
    e for e in (getattr(typer, "TyperException", None), click.ClickException if click else None) if e is not None)
_ABORTS: tuple[type[BaseException], ...] = (typer.Abort,) + ((click.exceptions.Abort,) if click else ())


#: Command groups whose results must not depend on Python's per-process string-hash seed.
SEEDED_GROUPS = ("train", "experiment")


def fix_hash_seed(argv: list[str]) -> None:
    """Re-execute as ``python -m marlids …`` with ``PYTHONHASHSEED=0`` for :data:`SEEDED_GROUPS`.

    RLlib iterates over sets of module IDs (string hashes, salted per process), so two MAPPO runs with
    the same ``--seed`` drew random numbers in different orders; a fixed hash seed makes them identical.
    No-op when ``PYTHONHASHSEED`` is already set.
    """
    if os.environ.get("PYTHONHASHSEED") is None and any(a in SEEDED_GROUPS for a in argv[1:3]):
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, "-m", "marlids", *argv[1:]])


def main() -> None:
    """Console-script entry point: user errors become one ``marlids: error: …`` line and exit code 2."""
    fix_hash_seed(sys.argv)
    try:
        rc = app(standalone_mode=False, prog_name="marlids")
    except _EXITS as exc:
        sys.exit(exc.exit_code)
    except _USAGE_ERRORS as exc:  # unknown option, bad value, missing argument: click's usage message
        exc.show()
        sys.exit(exc.exit_code)
    except _ABORTS:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except USER_ERRORS as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        typer.echo(f"marlids: error: {exc}", err=True)
        sys.exit(2)
    # Without standalone mode click returns (not raises) the code of a typer.Exit, e.g. 130 on Ctrl-C.
    sys.exit(rc if isinstance(rc, int) else 0)
