"""Run test work in threads that start together, for the concurrency tests of every module."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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
