"""``marlids fog``: the multi-agent core — run the exported defender policy over sites' windows (``detect``)
or serve edge streams live (``serve``)."""

from __future__ import annotations

from pathlib import Path

import typer

from edge.paths import BUNDLED_POLICY
from edge.settings import settings_command
from fog.config import FogConfig

app = typer.Typer(help="Fog: run the trained shared defender policy over edge windows and raise alerts (no Ray).",
                  no_args_is_help=True)


def load_windows(source: Path, site: str | None):
    """Windows of a capture (metered by the edge pipeline) or of a window file, and their MiniLM embeddings
    ``(n, 384)`` (the edge's embedder: ONNX whenever its model folder is present)."""
    import numpy as np

    from edge.capture import CaptureError, check_capture
    from edge.embed import EMBED_DIM
    from edge.io import WindowFileError, read_embeddings, read_windows
    from edge.onnx_embed import make_embedder

    try:
        check_capture(source)
        is_capture, why_not_capture = True, ""
    except CaptureError as exc:
        is_capture, why_not_capture = False, str(exc)
    if is_capture:
        from edge.windows import extract_windows

        frame = extract_windows([source], site_id=site or source.name.split(".")[0])
        emb = None
    else:
        frame, _ = read_windows(source, not_capture=why_not_capture)
        try:
            emb = np.asarray(read_embeddings(source))
        except WindowFileError:
            emb = None
    if emb is None:
        emb = make_embedder().embed(frame["proto_text"].tolist()) if len(frame) else np.zeros((0, EMBED_DIM), np.float32)
    return frame, emb


@app.command()
def detect(
    source: Path = typer.Argument(..., help="A capture (pcap/pcapng) or a window file (marlids edge extract)."),
    policy: Path = typer.Option(BUNDLED_POLICY, "--policy", help="Exported policy folder (or a training run folder)."),
    site: str = typer.Option(None, "--site", help="Site id (default: the capture's file stem)."),
    out: Path = typer.Option(None, "--out", help="Write every alert as JSON lines."),
    top: int = typer.Option(20, "--top", min=1, help="Alerts shown."),
    grace: float | None = typer.Option(None, "--grace", min=0.0,
                                       help="Grace period in seconds: each site first learns its baseline from its "
                                            "own traffic; those windows are not decided nor scored (default 60)."),
) -> None:
    """Decide every window with the shared defender actor after each site's grace period and print the alerts
    (the runtime path: no labels are read). Metrics against ground truth: `marlids train eval`.

    Example: marlids fog detect data/captures/site_a.pcap --out alerts.jsonl
    """
    from rich.console import Console
    from rich.table import Table

    from fog.alerts import dumps
    from fog.detect import detect as run_detect
    from fog.policy import policy_dir

    frame, emb = load_windows(source, site)
    res = run_detect(frame, emb, policy_dir(policy), grace_s=grace)
    alerts = res[res["alert"]]
    console = Console()
    n_grace = int(res["learning"].sum())
    t = Table(title=f"{len(alerts)} alerts in {len(res) - n_grace} windows of {res['device_id'].nunique()} devices "
                    f"(after the grace period; {n_grace} windows learned the site baseline)")
    for c in ("time", "device", "level", "class", "conf.", "protocol summary"):
        t.add_column(c, overflow="fold")
    import datetime as dt

    for _, a in alerts.sort_values(["level", "ts"], ascending=[False, True]).head(top).iterrows():
        t.add_row(dt.datetime.fromtimestamp(a["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), a["device_id"], str(a["level"]),
                  a["attack_class"], f"{a['confidence']:.2f}", a["evidence"]["protocol_summary"][:70])
    console.print(t)
    from edge.baseline import grace_notice

    notice = grace_notice(len(res) - n_grace, n_grace, grace)
    if notice:
        console.print(f"[yellow]note:[/] {notice}", highlight=False)
    console.print("metrics against a capture's ground truth: marlids train eval POLICY --data CAPTURE", highlight=False)
    if out:
        with out.open("w") as fh:
            for rec in alerts.drop(columns=[c for c in ("alert",) if c in alerts.columns]).to_dict("records"):
                fh.write(dumps(rec, default=str) + "\n")
        console.print(f"wrote {len(alerts)} alerts to {out}")


@app.command()
@settings_command(FogConfig, param="cfg")
def serve(
    cfg: FogConfig,
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Server certificate chain (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Its private key (PEM)."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="CA of the edges' certificates: require mTLS."),
    insecure: bool = typer.Option(False, "--insecure", help="Plaintext gRPC (test benches only; logs a warning)."),
) -> None:
    """Gather each tick's Observations from all sites, decide them with the shared defender actor and post
    alerts (level ≥ 2) to the cloud. Runs until Ctrl-C / SIGTERM. Tick, idle and late rules: fog/README.md.

    Example: marlids fog serve --listen 127.0.0.1:50051 --cloud http://127.0.0.1:8080 --sites site_a,site_b
    --insecure
    """
    if cfg.cloud_ca is not None and not cfg.cloud_ca.is_file():
        raise typer.BadParameter(f"{cfg.cloud_ca}: no such file", param_hint="--cloud-ca")
    from dataclasses import replace

    from rich.console import Console

    from edge.transport.tls import resolve_security
    from fog.server import serve_fog

    cfg = replace(cfg, tls=resolve_security(role="server", cert=tls_cert, key=tls_key, ca=tls_ca, insecure=insecure))
    console = Console()
    stats = serve_fog(cfg, on_started=lambda s: console.print(f"fog listening on port {s.port}", highlight=False))
    console.print(f"fog stopped: {stats['ticks_closed']} ticks, {stats['decisions']} decisions, {stats['alerts']} "
                  f"alerts ({stats['late_observations']} late observations), {stats.get('alerts_suppressed', 0)} "
                  f"suppressed, {stats['outbox_pending']} alerts still waiting for the cloud", highlight=False)


@app.command()
def status(
    outbox: Path | None = typer.Option(None, "--outbox",
                                       help="The fog's outbox (default ~/.cache/marlids/fog/outbox.sqlite)."),
    limit: int = typer.Option(20, "--limit", min=0, help="Dead-lettered alerts listed."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
) -> None:
    """Show the alert outbox of a fog (running or not): alerts waiting for the cloud, posted, and
    dead-lettered — refused by the cloud --max-attempts times, kept with the cloud's last answer."""
    import json

    from rich.console import Console
    from rich.table import Table

    from fog.config import default_outbox_path
    from fog.outbox import AlertOutbox

    path = outbox or default_outbox_path()
    if not path.is_file():
        raise FileNotFoundError(f"--outbox {path}: no such outbox (the fog creates it on its first start)")
    box = AlertOutbox(path)
    try:
        counts, dead = box.counts(), box.dead_letters(limit)
        positions = box.committed_positions()
    finally:
        box.close()
    if as_json:
        typer.echo(json.dumps({"outbox": str(path), "alerts": counts, "dead_letters": dead, "edges": positions}))
        return
    console = Console()
    console.print(f"outbox {path}: {counts['pending']} waiting for the cloud · {counts['posted']} posted (ids kept) "
                  f"· {counts['dead_letter']} dead-lettered", highlight=False)
    if dead:
        t = Table(title=f"dead-lettered alerts (newest {len(dead)})")
        for c in ("alert id", "tries", "the cloud's last answer"):
            t.add_column(c, overflow="fold")
        for d in dead:
            t.add_row(d["alert_id"], str(d["attempts"]), (d["reason"] or "")[:200])
        console.print(t)


@app.command("init-certs")
def init_certs(
    out: Path = typer.Option(..., "--out", help="Folder for ca.crt/key, fog.crt/key, cloud.crt/key, edge.crt/key."),
    fog_name: list[str] = typer.Option(["fog"], "--fog-name",
                                       help="Name the edges use to reach the fog (repeatable)."),
    cloud_name: list[str] = typer.Option(["cloud"], "--cloud-name",
                                         help="Name the fog and analysts use to reach the cloud (repeatable)."),
    days: int = typer.Option(825, "--days", min=1, max=3650, help="Validity of the certificates, days."),
) -> None:
    """Make a private CA and the TLS certificates of a deployment (the compose file's init step; for
    Kubernetes, turn them into Secrets as docs/deploy.md shows). Keys are written 0600; a folder that
    already holds ca.crt is left as it is."""
    from edge.transport.tls import make_pki

    paths = make_pki(out, fog_names=fog_name, cloud_names=cloud_name, days=days)
    typer.echo(f"certificates in {out}: " + ", ".join(sorted(p.name for p in paths.values())))
