"""Alembic migrations for the whole database, shipped inside the package.

Run them with ``points db upgrade`` (or ``points.shell.schema.upgrade(engine)``). Each revision is
frozen once it has landed: a change to the schema is a new revision. Triggers and SQLite-only CHECKs
are written out in the revisions because autogenerate does not see them.
"""
