"""Settings, read from the environment (prefix ``POINTS_``) and an optional ``.env`` file.

``POINTS_DATABASE_URL``: where the data lives. Default: ``sqlite:///points.db``, a file in the
working directory. PostgreSQL: ``postgresql://user@host:5432/dbname`` (psycopg 3 is used).
``POINTS_SQLITE_SYNCHRONOUS``: SQLite's ``synchronous`` pragma; ``FULL`` (the default) loses no
committed entry on power loss.
"""

from __future__ import annotations

from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POINTS_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///points.db"
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    #: Seconds after which ``points verify`` reports an entry that is still not sealed.
    unsealed_grace_seconds: int = 10
