"""``marlids range``: record labeled IoT traffic in network namespaces, label captures, mix public ones."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from edge.config import DEFAULT_WINDOW_S

app = typer.Typer(
    help=("Cyber range: record real labeled IoT traffic with real attack tools in network namespaces, "
          "label captures into windows, mix public attack captures into benign ones."),
    no_args_is_help=True,
)
log = logging.getLogger("training.range")


def _fail(msg: str) -> None:
    """Raise a user error; ``marlids.cli.main`` prints it as one ``marlids: error: …`` line (exit 2)."""
    raise ValueError(msg)


@app.command()
def record(
    scenario: str = typer.Argument(..., help="Scenario YAML file, or a bundled name: site_a, site_b, ci_short."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for <site>.pcap and <site>.groundtruth.csv."),
    name: str = typer.Option(None, "--name", help="File stem (default: the scenario's site id)."),
    duration: float = typer.Option(None, "--duration", help="Override the scenario duration, seconds."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Build the site in network namespaces, run benign traffic and the attack schedule, capture (root)."""
    from training.range.recorder import RangeError, check_can_record
    from training.range.recorder import record as _record
    from training.range.scenario import load_scenario

    try:
        scen = load_scenario(scenario)
        check_can_record(scen)
        res = _record(scen, out, name=name, progress=progress, duration_s=duration)
    except (ValueError, FileNotFoundError, RangeError) as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        # one line via marlids.cli.main ("marlids: error: …", exit 2), after the teardown already ran
        raise RuntimeError("interrupted; the range was torn down") from None
    typer.echo(f"{res.pcap} ({res.pcap.stat().st_size / 1e6:.2f} MB, {res.duration_s:.0f} s), "
               f"{res.ground_truth} ({len(res.rows)} attacks)")


@app.command()
def label(
    capture: Path = typer.Argument(..., help="Capture file (pcap/pcapng)."),
    ground_truth: Path = typer.Argument(None, help="Ground-truth CSV (default: <capture stem>.groundtruth.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output Parquet file."),
    window: float = typer.Option(DEFAULT_WINDOW_S, "--window", help="Window length, seconds."),
    site: str = typer.Option(None, "--site", help="Site id (default: the capture's file stem)."),
) -> None:
    """Turn a capture + its ground truth into labeled windows (Parquet).

    A window is malicious when it overlaps an attack interval and it is the attacker's own window or
    has the attacker among its peers (see training/range/label.py).
    """
    from training.range.label import label_capture

    try:
        df = label_capture(capture, ground_truth, window_s=window, site=site)
    except (ValueError, FileNotFoundError, ImportError) as exc:
        _fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out, index=False)
    n_mal = int(df["label"].sum()) if len(df) else 0
    typer.echo(f"{out}: {len(df)} windows, {n_mal} malicious "
               f"({', '.join(sorted(set(df.loc[df['label'] == 1, 'attack']))) or 'none'})")


@app.command()
def mix(
    attack_pcap: Path = typer.Argument(..., help="Attack-only capture (e.g. shared/data/pcaps/stopddos/*)."),
    benign_pcap: Path = typer.Argument(..., help="Benign capture (never altered)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    seed: int = typer.Option(..., "--seed", help="Seed for the attacker address mapping and default offset."),
    offset: float = typer.Option(None, "--offset", help="Attack start, seconds after the benign start "
                                 "(default: seeded, 20-40 % into the benign capture)."),
    victim: str = typer.Option(None, "--victim", help="Benign device address that receives the attack "
                               "(default: the busiest private address of the benign capture)."),
    max_packets: int = typer.Option(5000, "--max-packets", help="Read at most this many attack packets."),
    sources: int = typer.Option(4, "--sources", help="Map attack sources onto this many attacker addresses."),
    name: str = typer.Option(None, "--name", help="Output file stem (default <attack>__<benign>)."),
) -> None:
    """Merge an attack-only capture into a benign one on one timeline, with ground truth."""
    from training.range.mix import mix_captures

    try:
        res = mix_captures(attack_pcap, benign_pcap, out, seed=seed, offset_s=offset, victim=victim,
                           max_packets=max_packets, n_sources=sources, name=name)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"{res.pcap} ({res.n_benign} benign + {res.n_attack} attack packets), {res.ground_truth}")


@app.command()
def stats(
    capture: Path = typer.Argument(..., help="Capture file."),
    ground_truth: Path = typer.Argument(None, help="Ground-truth CSV (default: <capture stem>.groundtruth.csv)."),
) -> None:
    """Packets per attack: attacker packets and background inside each ground-truth interval."""
    from rich.console import Console
    from rich.table import Table

    from training.range.stats import capture_stats

    if not capture.is_file():
        _fail(f"capture {str(capture)!r} does not exist")
    st = capture_stats(capture, ground_truth)
    t = Table("attack", "ATT&CK", "attacker", "victim", "duration s", "attacker pkts", "other pkts",
              title=f"{capture.name}: {st['packets']:,} packets, {st['bytes'] / 1e6:.2f} MB, {st['duration_s']} s")
    for a in st["attacks"]:
        t.add_row(a["attack"], a["mitre_technique"], a["attacker_ip"], a["victim_ip"], f"{a['duration_s']:.1f}",
                  f"{a['attacker_pkts']:,}", f"{a['other_pkts']:,}")
    Console(width=130).print(t)


@app.command()
def techniques() -> None:
    """List the technique library (name, ATT&CK ID, tool, default bounds)."""
    from rich.console import Console
    from rich.table import Table

    from training.range.techniques import TECHNIQUES

    t = Table("name", "ATT&CK", "tool", "count", "duration s", "target", "description")
    for tech in TECHNIQUES.values():
        t.add_row(tech.name, tech.technique_id, tech.tool, str(tech.default_count),
                  f"{tech.default_duration_s:g}", tech.target + (f" ({tech.service})" if tech.service else ""),
                  tech.description)
    Console(width=160).print(t)


@app.command()
def validate(scenario: str = typer.Argument(..., help="Scenario YAML file or bundled name.")) -> None:
    """Check a scenario file without running it."""
    from training.range.scenario import load_scenario

    try:
        s = load_scenario(scenario)
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    typer.echo(f"{s.site}: {len(s.devices)} devices, {len(s.attacks)} attacks, {s.duration_s:g} s, "
               f"subnet {s.subnet}, attacker {s.attacker_ip}")


@app.command()
def cleanup() -> None:
    """Delete namespaces left by a recording process that no longer exists (root)."""
    from training.range.netns import cleanup_stale

    gone = cleanup_stale()
    typer.echo(f"deleted {len(gone)} stale namespace(s){': ' + ', '.join(gone) if gone else ''}")
