"""Bulk uploads after a crash (issue 15), on SQLite and PostgreSQL: a budget's totals stay exact
when an upload hands points back, an upload nobody resumes is handed back by a job or cancelled
by its department, and a dead process costs a retry only a short wait, said in ``Retry-After``.
"""

from __future__ import annotations

from conftest import FakeClock
from sqlalchemy.engine import Engine
from test_bulk import AMOUNT, BASIC, checkup_file, desk

from points.registry import ResidentStatus

# Budget totals -----------------------------------------------------------------------------


def test_points_an_upload_hands_back_are_not_counted_as_allocated(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=50_000_000)
    residents = d.residents(12)
    gone = residents[2:6]

    def meanwhile(done: int, total: int | None) -> None:
        if done == 0:
            d.earning.award(d.program, residents[0], "BY-HAND", BASIC)  # line 2 is refused
            for resident in gone:
                d.earning.set_resident_status(resident, ResidentStatus.MOVED_OUT)

    result = d.upload(checkup_file(residents), batch=5, progress=meanwhile)

    assert (result.upload.awarded, result.upload.failed) == (7, 5)
    assert d.entries("bulk_return") == 1
    budget = d.earning.budget(d.program, 2026)
    assert budget.allocated == 50_000_000
    assert budget.awarded == 8 * AMOUNT
    assert budget.remaining == 50_000_000 - 8 * AMOUNT
    assert budget.allocated - budget.awarded == budget.remaining
    d.assert_settled(result.upload)
