"""How a recorded verify run is shown."""

from __future__ import annotations

import json

from api.schemas import VerifyProblemPublic, VerifyResultPublic
from points.verification import VerifyRun


def verify_result(run: VerifyRun) -> VerifyResultPublic:
    assert run.id is not None
    return VerifyResultPublic(
        id=run.id,
        at=run.at,
        ok=run.ok,
        entries=run.entries,
        accounts=run.accounts,
        sealed=run.sealed,
        unsealed=run.unsealed,
        problems=[VerifyProblemPublic(**problem) for problem in json.loads(run.problems)],
    )
