"""Alembic environment: runs on the connection handed in by ``points.shell.schema.upgrade``."""

from __future__ import annotations

from alembic import context

from points.shell.schema import include_in_comparison, target_metadata

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    assert connection is not None, "run migrations through points.shell.schema.upgrade()"
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
