"""The limit of ``python -m bench pay``: a bare FastAPI endpoint that inserts one row a request.

``python -m bench.bare_endpoint --port N`` serves it as ``points serve`` serves the API: uvicorn,
one worker, an app factory, no access log and no log configuration of uvicorn's, the engine that
``points.db.make_engine`` makes from the same settings (``POINTS_DATABASE_URL``: the same
database, connection pool and SQLite pragmas, ``BEGIN IMMEDIATE`` on SQLite), and a synchronous
endpoint run on the worker's thread pool like every route of the API. ``POST /rows`` takes a
small JSON body (``{"amount": 1, "reference": ""}``), inserts it as one row of
``bench_bare_row`` in a transaction of its own and answers 201 with the row's id; ``GET /readyz``
answers 200. No authentication, no middleware, no logging: what any endpoint that writes a row
costs on this machine, and so the most requests a second this server could answer.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

from points import db
from points.settings import Settings

METADATA = sa.MetaData()
ROWS = sa.Table(
    "bench_bare_row",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("reference", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


class NewRow(BaseModel):
    amount: int
    reference: str = ""


def create_app() -> FastAPI:
    """The app, one per worker (uvicorn's ``factory=True``, as ``points serve`` runs the API)."""
    engine = db.make_engine(Settings())
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/rows", status_code=201)
    def insert_row(row: NewRow) -> dict[str, int]:
        with engine.begin() as connection:
            made = connection.execute(
                sa.insert(ROWS)
                .values(amount=row.amount, reference=row.reference, created_at=datetime.now(UTC))
                .returning(ROWS.c.id)
            ).scalar_one()
        return {"id": int(made)}

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare_endpoint")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    # The options of `points serve` (points.shell.cli._serve) at its default of one worker.
    uvicorn.run(
        "bench.bare_endpoint:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=1,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


if __name__ == "__main__":
    main()
