"""Alembic environment: runs on the connection handed in by ``points.db`` (or a URL)."""

from __future__ import annotations

from alembic import context

from points.db import include_in_comparison, target_metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    assert connection is not None, "run migrations through points.db.upgrade()"
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        compare_type=True,
        include_object=include_in_comparison(connection.dialect.name),
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
