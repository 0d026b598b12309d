"""``marlids cloud …``: serve the analyst API, manage API keys, migrate, export, rebuild the ATT&CK table.

FastAPI, SQLAlchemy and uvicorn are imported inside the commands so ``marlids --help`` stays instant.
The database comes from ``--db PATH`` (a SQLite file), ``--database-url URL``, or the environment
(``DATABASE_URL``; default ``sqlite:///./marlids-cloud.db``).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cloud.core.config import Settings
from edge.settings import settings_command

app = typer.Typer(name="cloud", no_args_is_help=True,
                  help="Cloud analyst API: alert store, ATT&CK mapping, explanations, dashboard, export.")

DbOpt = Annotated[Path | None, typer.Option(
    "--db", help="SQLite file of the alert store (shorthand for --database-url sqlite:///PATH).", dir_okay=False)]
UrlOpt = Annotated[str | None, typer.Option(
    "--database-url", help="SQLAlchemy URL, e.g. postgresql://user@host:5432/marlids (default: $DATABASE_URL or "
                           "./marlids-cloud.db).")]


def _settings(db: Path | None, database_url: str | None, **overrides: Any) -> Settings:
    from cloud.core.config import Settings

    if db is not None and database_url is not None:
        raise typer.BadParameter("give --db or --database-url, not both")
    if db is not None:
        overrides["database_url"] = f"sqlite:///{db.expanduser().resolve()}"
    elif database_url is not None:
        overrides["database_url"] = database_url
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _session_factory(settings: Settings):
    from cloud.core.db import make_engine, make_session_factory, run_migrations

    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    run_migrations(engine)
    return make_session_factory(engine)


@app.command()
@settings_command(Settings, exclude=("database_url",),
                  flags={"bootstrap_keys_file": "--bootstrap-keys", "cors_origins": "--cors-origin"})
def serve(
    settings: Settings,
    db: DbOpt = None,
    database_url: UrlOpt = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
) -> None:
    """Serve the analyst API and dashboard with uvicorn (one process: a single writer commits in groups).

    The fog posts alerts with `Authorization: Bearer <ingest key>`; analysts open /dashboard. Keys also
    come from $MARLIDS_INGEST_KEY / $MARLIDS_ANALYST_KEY; LLM explanations need $OPENAI_BASE_URL and
    $OPENAI_MODEL (otherwise the built-in grounded explainer writes them). Bound to an address other
    than loopback, serve HTTPS (--tls-cert/--tls-key) or put a TLS proxy in front: keys and the session
    cookie would otherwise cross the network in clear (a warning says so at start-up).
    """
    from cloud.api.main import serve as serve_app

    for opt, path in (("--tls-cert", settings.tls_cert), ("--tls-key", settings.tls_key)):
        if path is not None and not path.is_file():
            raise typer.BadParameter(f"{opt} {path}: no such file")
    if db is not None or database_url is not None:
        settings = settings.model_copy(update={"database_url": _settings(db, database_url).database_url})
    if settings.bootstrap_keys_file is not None and not settings.bootstrap_keys_file.exists():
        typer.echo(f"creating API keys in {settings.bootstrap_keys_file} (mode 0600)", err=True)
    serve_app(settings, log_level=log_level)


@app.command("create-key")
def create_key(
    role: Annotated[str, typer.Option("--role", help="ingest (fog coordinators post alerts) or analyst (read, triage).")],
    name: Annotated[str | None, typer.Option("--name", help="A label for people (default: <role>-<UTC time>).")] = None,
    db: DbOpt = None,
    database_url: UrlOpt = None,
    key: Annotated[str | None, typer.Option(
        "--key", envvar="MARLIDS_NEW_KEY", help="Register this key instead of a random one (≥ 24 URL-safe characters).")] = None,
) -> None:
    """Create an API key and print it once (only its SHA-256 digest is stored)."""
    from cloud.services.keys import register_key

    name = name or f"{role}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    key_id, secret = register_key(_session_factory(_settings(db, database_url)), name, role, key)
    typer.echo(f"created {role} key {key_id} ({name}); store it now, it is not shown again:", err=True)
    typer.echo(secret)


@app.command("list-keys")
def list_keys_cmd(db: DbOpt = None, database_url: UrlOpt = None) -> None:
    """List API keys (id, name, role, created, revoked); secrets are never stored, so never shown."""
    from rich.console import Console
    from rich.table import Table

    from cloud.services.keys import list_keys

    table = Table("id", "name", "role", "created (UTC)", "revoked")
    for k in list_keys(_session_factory(_settings(db, database_url))):
        table.add_row(str(k.id), k.name, k.role, f"{datetime.fromtimestamp(k.created_at_us / 1e6, UTC):%Y-%m-%d %H:%M:%S}",
                      "yes" if k.revoked else "")
    Console().print(table)


@app.command("revoke-key")
def revoke_key_cmd(key_id: Annotated[int, typer.Argument(help="The key's id (see list-keys).")],
                   db: DbOpt = None, database_url: UrlOpt = None) -> None:
    """Revoke an API key (running services refuse it within their key-cache time, 30 s by default)."""
    from cloud.services.keys import revoke_key

    revoke_key(_session_factory(_settings(db, database_url)), key_id)
    typer.echo(f"revoked key {key_id}")


@app.command()
def migrate(db: DbOpt = None, database_url: UrlOpt = None) -> None:
    """Create or upgrade the database schema to the newest Alembic revision."""
    settings = _settings(db, database_url)
    _session_factory(settings)
    typer.echo("database schema is at the newest revision")


@app.command()
def export(
    fmt: Annotated[str, typer.Option("--format", help="ecs (JSON lines) or stix (STIX 2.1 bundle).")] = "ecs",
    out: Annotated[Path | None, typer.Option("--out", help="File to write (default: standard output).",
                                             dir_okay=False)] = None,
    site_id: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    db: DbOpt = None,
    database_url: UrlOpt = None,
) -> None:
    """Export stored alerts for a SIEM: ECS-style JSON lines or a STIX 2.1 bundle of sightings."""
    from sqlalchemy import select

    from cloud.models import AlertRow, ExplanationRow
    from cloud.services.attack import get_attack_table
    from cloud.services.export import ecs_lines, stix_bundle
    from cloud.services.writer import row_dict

    if fmt not in ("ecs", "stix"):
        raise typer.BadParameter(f"--format {fmt!r}; allowed: ecs, stix")
    factory = _session_factory(_settings(db, database_url))
    table = get_attack_table()
    with factory() as session:
        stmt = select(AlertRow).order_by(AlertRow.ts_us, AlertRow.alert_id)
        if site_id is not None:
            stmt = stmt.where(AlertRow.site_id == site_id)
        rows = [row_dict(r) for r in session.scalars(stmt)]
        ids = [r["alert_id"] for r in rows]
        expl = {e.alert_id: {"summary": e.body.get("summary"), "source": e.source}
                for i in range(0, len(ids), 500)
                for e in session.scalars(select(ExplanationRow).where(ExplanationRow.alert_id.in_(ids[i:i + 500])))}
    text = ("".join(ecs_lines(rows, table, expl)) if fmt == "ecs"
            else json.dumps(stix_bundle(rows, table), indent=1) + "\n")
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(rows)} alerts to {out}", err=True)


@app.command("build-attack-table")
def build_attack_table(
    source: Annotated[Path | None, typer.Option(
        "--source", help="Folder with MITRE's STIX bundles and LICENSE.txt (default: ../shared/data/attack).",
        file_okay=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Table to write (default: the one bundled in cloud/data).")] = None,
) -> None:
    """Rebuild the bundled ATT&CK technique table (and copy MITRE's licence beside it)."""
    from cloud.scripts.build_attack_table import DEFAULT_OUT, DEFAULT_SOURCE, write_table

    path = write_table(source or DEFAULT_SOURCE, out or DEFAULT_OUT)
    typer.echo(f"wrote {path}")
