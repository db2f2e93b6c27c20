"""The stateful tests' shared set-up: Hypothesis budgets, and a run on fresh databases.

A state machine declares its budgets once, per profile and backend, as (examples, steps per
example); ``machine_settings`` returns the settings of the profile the environment names
(``deep`` for a long manual run, ``quick`` while editing a test, anything else or nothing: the
``default`` that ``make test`` runs). Hypothesis counts a machine's set-up as a step, so the
step count asked of it is one more than the budget's.

``run_machine`` runs a machine class bound to a context of the test's: the context is given a
function that makes a fresh migrated database (conftest's ``new_database_url``) each time it
is called, and every database is dropped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import new_database_url
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from sqlalchemy.engine import Engine

import ledger

C = TypeVar("C")

PROFILE_VARIABLE = "POINTS_HYPOTHESIS_PROFILE"

#: (max_examples, steps per example) per profile, then per backend.
Budgets = Mapping[str, Mapping[str, tuple[int, int]]]


class StateMachineBudgets:
    """One state machine's Hypothesis profiles, named ``{name}-{profile}-{backend}``."""

    def __init__(self, name: str, budgets: Budgets) -> None:
        if "default" not in budgets:
            raise ValueError("a state machine's budgets need a 'default' profile")
        self.name = name
        self.budgets = budgets
        for profile, per_backend in budgets.items():
            for backend, (examples, steps) in per_backend.items():
                settings.register_profile(
                    f"{name}-{profile}-{backend}",
                    max_examples=examples,
                    stateful_step_count=steps + 1,
                    deadline=None,
                    print_blob=True,
                    suppress_health_check=[
                        HealthCheck.too_slow,
                        HealthCheck.filter_too_much,
                        HealthCheck.data_too_large,
                    ],
                )

    def settings_for(self, backend: str) -> settings:
        """The settings for ``backend`` under the profile ``POINTS_HYPOTHESIS_PROFILE`` names."""
        profile = os.environ.get(PROFILE_VARIABLE, "default")
        if profile not in self.budgets:
            profile = "default"
        return settings.get_profile(f"{self.name}-{profile}-{backend}")


def run_machine(
    machine: type[RuleBasedStateMachine],
    new_context: Callable[[Callable[[], Engine]], C],
    budgets: StateMachineBudgets,
    *,
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> C:
    """Run ``machine`` with ``machine.context = new_context(new_engine)``; return the context."""
    databases = 0
    with contextlib.ExitStack() as cleanup:

        def new_engine() -> Engine:
            """A fresh migrated database, dropped when the run ends."""
            nonlocal databases
            databases += 1
            directory = tmp_path / f"database-{databases}"
            directory.mkdir()
            urls: Iterator[str] = new_database_url(backend, request, directory)
            url = next(urls)
            cleanup.callback(next, urls, None)  # runs the helper's clean-up (drops the database)
            # Durability is not under test here: SQLite may skip fsync.
            engine = ledger.create_engine(url, sqlite_synchronous="OFF")
            cleanup.callback(engine.dispose)
            return engine

        context = new_context(new_engine)
        bound: Any = type(f"Bound{machine.__name__}", (machine,), {"context": context})
        run_state_machine_as_test(bound, settings=budgets.settings_for(backend))
    return context
