"""Hypothesis budgets for the stateful tests, chosen by ``POINTS_HYPOTHESIS_PROFILE``.

A state machine declares its budgets once, per profile and backend, as (examples, steps per
example); ``machine_settings`` returns the settings of the profile the environment names
(``deep`` for a long manual run, ``quick`` while editing a test, anything else or nothing: the
``default`` that ``make test`` runs). Hypothesis counts a machine's set-up as a step, so the
step count asked of it is one more than the budget's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import HealthCheck, settings

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
