"""The award rules (``issuers.eligibility``): pure, tested here without a database; and written
once, which the last tests show by changing a rule and watching every path obey it: a single
award, the whole-file check of a bulk upload, and the batches of an upload."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import pytest
from conftest import FakeClock
from sqlalchemy.engine import Engine
from test_bulk import desk, encode

from issuers import eligibility
from issuers.eligibility import (
    NOTHING_CLAIMED,
    CapPeriod,
    Claimed,
    OnceClaim,
    Parties,
    decide,
)
from issuers.errors import AlreadyAwarded, CapExceeded, OutsideProgramWindow, ProgramNotActive
from issuers.modules import module_for, parse_config, parse_details
from issuers.programs import Program
from points.errors import Conflict, NotFound, ResidentNotActive, WalletClosed
from points.registry import ResidentStatus
from points.wallets import WalletStatus

TODAY = date(2026, 5, 10)
NOW = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
ACTIVE = Parties(ResidentStatus.ACTIVE, WalletStatus.OPEN)


def program(**fields: Any) -> Program:
    """A program as the database would hold it, built in memory (the rules need no more)."""
    values: dict[str, Any] = {
        "id": "prg_rules",
        "department_id": "dep_rules",
        "point_type_id": "pty_rules",
        "module": "health_checkup",
        "name_ja": "特定健診",
        "name_en": "Health checkup",
        "amount": 500,
        "valid_from": date(2026, 4, 1),
        "status": "active",
        "config": json.dumps({"checkup_types": ["specific_health_checkup", "dental_checkup"]}),
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(fields)
    return Program(**values)


def decided(
    subject: Program,
    *,
    checkup_type: str = "specific_health_checkup",
    occurred_on: date | None = None,
    parties: Parties = ACTIVE,
    claimed: Claimed = NOTHING_CLAIMED,
    valid_until: date = date(2027, 5, 31),
) -> eligibility.Decision:
    module = module_for(subject.module)
    asked: list[tuple[tuple[str, ...], tuple[CapPeriod, ...]]] = []

    def reader(once: Sequence[str], periods: Sequence[CapPeriod]) -> Claimed:
        asked.append((tuple(once), tuple(periods)))
        return claimed

    decision = decide(
        subject,
        module,
        parse_config(module, subject.config),
        parse_details(module, {"checkup_type": checkup_type}),
        resident_id="res_rules",
        record_id="R-1",
        occurred_on=occurred_on,
        today=TODAY,
        valid_until=valid_until,
        parties=parties,
        claimed=reader,
    )
    # The claims are read once, for exactly what the award would claim.
    assert asked == [(decision.once_keys, decision.cap_periods)]
    return decision


# decide, without a database -----------------------------------------------------------------


def test_an_award_the_rules_allow_carries_its_year_amount_once_keys_and_cap_periods() -> None:
    subject = program(cap_per_day=500, cap_per_month=1_000, cap_per_fiscal_year=1_500)

    decision = decided(subject, occurred_on=date(2026, 4, 1))

    assert decision.fiscal_year == 2026
    assert decision.occurred_on == date(2026, 4, 1)
    assert decision.amount == 500
    assert decision.once_keys == ("FY2026:specific_health_checkup",)
    assert decision.cap_periods == (("D2026-04-01", 500), ("M2026-04", 1_000), ("FY2026", 1_500))
    assert decided(subject).occurred_on == TODAY  # no date: today
    # March is the end of the fiscal year that began the April before.
    assert eligibility.fiscal_year_of(subject, date(2027, 3, 31), date(2027, 4, 5)) == 2026
    assert eligibility.fiscal_year_of(subject, date(2027, 4, 1), date(2027, 4, 5)) == 2027


@pytest.mark.parametrize(
    ("occurred_on", "reason"),
    [
        (date(2026, 5, 11), "occurred_on 2026-05-11 is in the future"),
        (date(2026, 3, 31), "the program runs 2026-04-01 to 2026-04-30; the event was on"),
        (date(2026, 5, 1), "the program runs 2026-04-01 to 2026-04-30; the event was on"),
    ],
)
def test_an_event_outside_the_window_is_refused(occurred_on: date, reason: str) -> None:
    with pytest.raises(OutsideProgramWindow) as refused:
        decided(program(valid_until=date(2026, 4, 30)), occurred_on=occurred_on)
    assert refused.value.message.startswith(reason)
    assert refused.value.context == {"field": "occurred_on"}


def test_the_window_includes_its_first_and_last_days() -> None:
    subject = program(valid_until=date(2026, 5, 10))
    assert decided(subject, occurred_on=date(2026, 4, 1)).fiscal_year == 2026
    assert decided(subject, occurred_on=date(2026, 5, 10)).fiscal_year == 2026


@pytest.mark.parametrize(
    ("parties", "refusal", "message"),
    [
        (Parties(None, None), NotFound, "no such resident"),
        (Parties(ResidentStatus.MOVED_OUT, None), ResidentNotActive, "the resident is moved_out"),
        (Parties(ResidentStatus.ACTIVE, "closed"), WalletClosed, "the resident's wallet is closed"),
        # A closed wallet is named before the resident's status (the counter closed it).
        (Parties(ResidentStatus.DECEASED, "closed"), WalletClosed, "the resident's wallet is"),
    ],
)
def test_a_resident_who_cannot_receive_points_is_refused(
    parties: Parties, refusal: type[Exception], message: str
) -> None:
    with pytest.raises(refusal) as refused:
        decided(program(), parties=parties)
    assert str(refused.value).startswith(message)


def test_a_wallet_not_opened_yet_receives_points() -> None:
    assert decided(program(), parties=Parties(ResidentStatus.ACTIVE, None)).amount == 500


def test_once_keys_claimed_by_an_award_or_an_earlier_line_are_refused() -> None:
    by_award = Claimed(once={"FY2026:specific_health_checkup": OnceClaim("R-0")}, counted={})
    by_line = Claimed(once={"FY2026:specific_health_checkup": OnceClaim("R-9", line=7)}, counted={})

    with pytest.raises(AlreadyAwarded) as first:
        decided(program(), claimed=by_award)
    with pytest.raises(AlreadyAwarded) as second:
        decided(program(), claimed=by_line)

    assert first.value.message == "FY2026:specific_health_checkup was awarded already (record R-0)"
    assert first.value.context == {"once_key": "FY2026:specific_health_checkup", "record_id": "R-0"}
    assert second.value.message == "FY2026:specific_health_checkup is also on line 7"
    # Another checkup type is another key.
    assert decided(program(), checkup_type="dental_checkup", claimed=by_award).amount == 500


def test_a_cap_refuses_an_award_that_passes_it_and_allows_one_that_reaches_it() -> None:
    subject = program(cap_per_month=1_000)
    reaches = Claimed(once={}, counted={"M2026-05": 500})
    passes = Claimed(once={}, counted={"M2026-05": 501})

    assert decided(subject, claimed=reaches).amount == 500
    with pytest.raises(CapExceeded) as refused:
        decided(subject, claimed=passes)

    assert refused.value.context == {"period": "M2026-05", "cap": 1_000, "awarded": 501}
    assert refused.value.message == (
        "the cap for M2026-05 is 1000; 501 is counted already and this award is 500"
    )


def test_the_rules_refuse_in_their_documented_order() -> None:
    """Each refusal wins over every later rule: an inactive program over a bad date, a bad date
    over the resident, the resident over a run-out point type, that over once-keys, once-keys
    over caps."""
    everything_wrong: dict[str, Any] = {
        "occurred_on": date(2026, 5, 11),
        "parties": Parties(None, None),
        "valid_until": date(2026, 5, 9),
        "claimed": Claimed(
            once={"FY2026:specific_health_checkup": OnceClaim("R-0")}, counted={"D2026-05-10": 500}
        ),
    }
    expected: list[tuple[str, type[Exception]]] = [
        ("status", ProgramNotActive),
        ("occurred_on", OutsideProgramWindow),
        ("parties", NotFound),
        ("valid_until", Conflict),
        ("claimed", AlreadyAwarded),
    ]
    subject = program(status="paused", cap_per_day=500)
    for name, refusal in expected:
        with pytest.raises(refusal):
            decided(subject, **everything_wrong)
        if name == "status":
            subject = program(cap_per_day=500)
        else:
            del everything_wrong[name]
    with pytest.raises(CapExceeded):
        decided(subject, claimed=Claimed(once={}, counted={"D2026-05-10": 500}))


def test_the_modules_refusal_is_its_own() -> None:
    """Planning is the module's: a checkup type the program does not reward."""
    with pytest.raises(Exception, match="checkup_type 'eye' is not one of this program's"):
        decided(program(), checkup_type="eye")


# One rule, three paths ----------------------------------------------------------------------


def weekly_cap(points: int) -> Any:
    """``cap_periods`` with one more cap: ``points`` per ISO week."""
    original = eligibility.cap_periods

    def with_week(subject: Program, occurred_on: date, year: int) -> list[CapPeriod]:
        iso_year, week, _day = occurred_on.isocalendar()
        return [*original(subject, occurred_on, year), (f"W{iso_year}-{week:02d}", points)]

    return with_week


def test_a_cap_added_to_the_rules_binds_single_awards_file_checks_and_batches(
    engine: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = desk(engine, clock, module="fixed_award", amount=100)
    single, in_file, in_batch, other = d.residents(4)
    file = encode(["resident_id,record_id", f"{in_file},F-1", f"{in_file},F-2"])
    batch_file = encode(
        ["resident_id,record_id", f"{in_batch},B-1", f"{other},B-2", f"{in_batch},B-3"]
    )
    # Without the new rule, all of it would be awarded.
    assert d.check(file)[1] == [] and d.check(batch_file)[1] == []

    monkeypatch.setattr(eligibility, "cap_periods", weekly_cap(100))

    # A single award.
    d.earning.award(d.program, single, "S-1")
    with pytest.raises(CapExceeded) as refused:
        d.earning.award(d.program, single, "S-2")
    assert refused.value.context["period"] == "W2026-19"
    # The whole-file check.
    assert [(e.line, e.column, e.reason) for e in d.check(file)[1]] == [
        (
            3,
            "resident_id",
            "the cap for W2026-19 is 100; 100 is counted already and this award is 100",
        )
    ]
    # The batches: the file was checked before the rule changed, and is awarded after.
    monkeypatch.undo()

    def change_the_rule(done: int, total: int | None) -> None:
        if done == 0:
            monkeypatch.setattr(eligibility, "cap_periods", weekly_cap(100))

    result = d.upload(batch_file, progress=change_the_rule)

    upload = result.upload
    assert (upload.awarded, upload.failed) == (2, 1)
    assert [(f["line"], f["code"]) for f in json.loads(upload.failures)] == [(4, "cap_exceeded")]
    assert d.posted(in_batch) == [100] and d.posted(other) == [100]
    assert d.earning.counter(d.program, in_batch, "W2026-19") == 100
    d.assert_settled(upload)


def test_a_party_rule_changed_binds_single_awards_file_checks_and_batches(
    engine: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same with rule 4, made stricter: only a resident with a wallet already may receive."""
    d = desk(engine, clock, module="fixed_award", amount=100)
    known, new, known_in_batch, new_in_batch = d.residents(4)
    for number, resident in enumerate((known, known_in_batch)):
        d.earning.award(d.program, resident, f"EARLIER-{number}")
    file = encode(["resident_id,record_id", f"{known},F-1", f"{new},F-2"])
    batch_file = encode(["resident_id,record_id", f"{new_in_batch},B-1", f"{known_in_batch},B-2"])
    original = eligibility.check_parties

    def only_known(parties: Parties) -> None:
        original(parties)
        if parties.wallet_status is None:
            raise ResidentNotActive("the resident has no wallet yet")

    monkeypatch.setattr(eligibility, "check_parties", only_known)

    # A single award.
    with pytest.raises(ResidentNotActive):
        d.earning.award(d.program, new, "S-1")
    assert d.earning.award(d.program, known, "S-2").award.amount == 100
    # The whole-file check.
    assert [(e.line, e.column, e.reason) for e in d.check(file)[1]] == [
        (3, "resident_id", "the resident has no wallet yet")
    ]
    # The batches: checked under the old rule, awarded under the new one.
    monkeypatch.undo()
    assert d.check(batch_file)[1] == []

    def change_the_rule(done: int, total: int | None) -> None:
        if done == 0:
            monkeypatch.setattr(eligibility, "check_parties", only_known)

    result = d.upload(batch_file, progress=change_the_rule)

    upload = result.upload
    assert (upload.awarded, upload.failed) == (1, 1)
    assert [(f["line"], f["code"]) for f in json.loads(upload.failures)] == [
        (2, "resident_not_active")
    ]
    assert d.posted(new_in_batch) == [] and d.posted(known_in_batch) == [200]
    d.assert_settled(upload)
