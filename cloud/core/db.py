"""Engine and session factory: SQLite (WAL) by default, PostgreSQL through ``DATABASE_URL``."""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from edge.transport.sqlite_queue import create_private_file

log = logging.getLogger(__name__)

ALLOWED_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """Create an engine for ``url``.

    SQLite files get ``journal_mode=WAL`` (readers never block the writer), ``busy_timeout`` 10 s,
    foreign keys on and the given ``synchronous`` level; their parent folder is created, and a new
    file is created readable by its owner only (0600; SQLite gives its ``-wal``/``-shm`` files the same
    mode). Text that is not valid UTF-8 (written around the API) is read with U+FFFD in place of the
    bad bytes instead of failing the read.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///alerts.db`` or ``postgresql+psycopg://u@127.0.0.1:5432/db``.
    sqlite_synchronous : str
        One of ``OFF``, ``NORMAL``, ``FULL``, ``EXTRA`` (SQLite only).

    Raises
    ------
    ValueError
        For an unknown ``sqlite_synchronous`` value.
    """
    sync = sqlite_synchronous.upper()
    if sync not in ALLOWED_SYNCHRONOUS:
        raise ValueError(f"sqlite_synchronous={sqlite_synchronous!r}; allowed: {', '.join(ALLOWED_SYNCHRONOUS)}")
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        if parsed.drivername == "postgresql":  # plain postgresql:// → psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        create_private_file(Path(parsed.database).expanduser().resolve())
    engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 10})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        dbapi_conn.text_factory = _decode_text
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    return engine


def _decode_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Session factory bound to ``engine`` (objects stay readable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)


def run_migrations(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest Alembic revision (``cloud/migrations``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parents[1] / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    log.info("database at %s is at the newest migration", engine.url.render_as_string(hide_password=True))
