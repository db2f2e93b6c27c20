"""Run test work in threads that start together, for the concurrency tests of every module."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def run_together(workers: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run each callable in its own thread, released together by a barrier; for each, in
    order, ("ok", its result) or ("error", the exception it raised). A thread still running
    after two minutes fails the test (a deadlock, most likely)."""
    barrier = threading.Barrier(len(workers))
    outcomes: list[tuple[str, Any]] = [("missing", None)] * len(workers)

    def run(index: int, work: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes[index] = ("ok", work())
        except BaseException as error:
            outcomes[index] = ("error", error)

    threads = [
        threading.Thread(target=run, args=(index, work), name=f"worker-{index}")
        for index, work in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
        assert not thread.is_alive(), f"{thread.name} is stuck (deadlock?)"
    return outcomes


class Waiting:
    """One SQL statement run and committed on a connection of its own, in a thread, while the
    test holds a lock it needs: the statement must still be waiting after a second. ``error()``
    then waits for it to end and gives what it raised (None if it went through)."""

    def __init__(self, engine: Engine, sql: str, *, what: str) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(engine, sql), name=what)
        self._thread.start()
        self._thread.join(1.0)
        assert self._thread.is_alive(), f"{what} did not wait for the other transaction"

    def _run(self, engine: Engine, sql: str) -> None:
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("SET lock_timeout = '20s'")
                connection.exec_driver_sql(sql)
                connection.commit()
        except BaseException as error:  # reported to the test thread by error()
            self._error = error

    def error(self) -> BaseException | None:
        self._thread.join(30)
        assert not self._thread.is_alive(), f"{self._thread.name} is stuck"
        return self._error


def wait_for_lock_waiters(engine: Engine, expected: int, *, seconds: float = 20) -> None:
    """PostgreSQL: until ``expected`` sessions of this database wait on a lock (SQLite: a pause,
    since its waiters sleep in the busy handler where nothing can observe them)."""
    if engine.dialect.name == "sqlite":
        time.sleep(1.0)
        return
    deadline = time.monotonic() + seconds
    waiting = 0
    while time.monotonic() < deadline:
        with engine.connect() as connection:
            waiting = connection.execute(
                sa.text(
                    "SELECT COUNT(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        if waiting >= expected:
            return
        time.sleep(0.02)
    raise AssertionError(f"only {waiting} of {expected} sessions wait on a lock")
