"""Alembic environment: runs on the connection handed over by :func:`cloud.core.db.run_migrations`,
or on ``DATABASE_URL`` when started by the ``alembic`` command."""

from __future__ import annotations

from alembic import context

from cloud.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    from cloud.core.config import get_settings
    from cloud.core.db import make_engine

    engine = make_engine(get_settings().database_url)
    with engine.begin() as conn:
        _run(conn)
