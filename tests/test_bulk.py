"""Bulk awards from a CSV file (``issuers.bulk``), on SQLite and PostgreSQL: the file checked
whole (every problem reported with its line and column, nothing written), its total set aside
from the budget, the rows awarded in batches, re-uploads and interrupted uploads, concurrent
single awards, a 100,000-row file, the ``points award`` command and the HTTP API.

Every refusal is checked twice: the problems (exactly, in order) and that nothing was written
(``Earning.written()`` and the ``award_upload`` table are the same before and after).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import World, assert_problem
from concurrency import run_together
from conftest import FakeClock
from earning_helpers import ACTOR, Earning
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, select
from test_cli import invoke

from issuers import bulk
from issuers.bulk import CsvInvalid, RowError, UploadResult
from issuers.errors import BudgetExhausted, ProgramNotActive
from issuers.programs import Program, ProgramStatus
from points import wallets
from points.pointtypes import PointType, get_point_type
from points.registry import ResidentStatus, StaffRole

#: 2026-05-10 12:00 in Tokyo (FY2026).
NOON = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
AMOUNT = 500
CHECKUP = {"checkup_types": ["specific_health_checkup"]}
BASIC = {"checkup_type": "specific_health_checkup"}
HEADER = "resident_id,record_id,checkup_type"
COLUMNS = "resident_id, address_number, record_id, occurred_on, amount, checkup_type"
BOM = b"\xef\xbb\xbf"
NOT_UTF8 = "the file is neither UTF-8 nor Shift_JIS (CP932); save it as CSV UTF-8"


def encode(
    lines: list[str], *, bom: bool = True, newline: str = "\r\n", encoding: str = "utf-8"
) -> bytes:
    """The lines as a file: UTF-8 with a BOM and CRLF, as Excel saves "CSV UTF-8"."""
    data = "".join(line + newline for line in lines).encode(encoding)
    return (BOM if bom else b"") + data


@dataclass
class Desk:
    """An earning world at ``NOON`` with one active, funded program, and its bulk uploads."""

    earning: Earning
    point_type: PointType
    program: Program

    @property
    def engine(self) -> Engine:
        return self.earning.engine

    def residents(self, count: int) -> list[str]:
        return [self.earning.resident() for _ in range(count)]

    def check(self, data: bytes) -> tuple[bulk.Plan | None, list[RowError]]:
        return bulk.check_file(
            self.engine, self.program.id, self.program.department_id, data, self.earning.clock()
        )

    def upload(self, data: bytes, **options: Any) -> UploadResult:
        return bulk.upload(
            self.engine,
            ACTOR,
            self.earning.clock,
            self.program.id,
            data,
            department_id=self.program.department_id,
            **options,
        )

    def snapshot(self) -> tuple[Any, ...]:
        """Everything an upload can write."""
        return self.earning.written(), self.earning.count("award_upload")

    def refused(self, data: bytes) -> list[RowError]:
        """The file is refused at validation with nothing written; its problems (the same
        from ``check_file``)."""
        return self.refusal(data).errors

    def refusal(self, data: bytes) -> CsvInvalid:
        """As ``refused``; the refusal itself."""
        before = self.snapshot()
        _plan, checked = self.check(data)
        assert checked
        with pytest.raises(CsvInvalid) as raised:
            self.upload(data)
        assert self.snapshot() == before
        invalid = raised.value
        assert invalid.code == "csv_invalid"
        assert invalid.errors == checked
        assert invalid.context["errors"] == [error.as_dict() for error in checked][:1000]
        assert invalid.context["error_count"] == len(checked)
        return invalid

    def remaining(self, year: int = 2026) -> int:
        return self.earning.budget(self.program, year).remaining

    def posted(self, resident_id: str) -> list[int]:
        return [b.posted for b in self.earning.buckets(self.point_type, resident_id)]

    def entries(self, kind: str | None = None) -> int:
        return self.earning.count("ledger_entry", **({"kind": kind} if kind else {}))

    def the_upload(self) -> bulk.AwardUpload:
        """The one upload there is."""
        (upload,) = self.earning.read(lambda s: list(s.exec(select(bulk.AwardUpload))))
        return upload

    def upload_dying(self, data: bytes, batch: int) -> None:
        """Upload ``data`` in batches of ``batch`` rows, dying after the first."""

        def die_after_the_first_batch(done: int, total: int | None) -> None:
            if done == batch:
                raise Interrupted

        with pytest.raises(Interrupted):
            self.upload(data, batch=batch, progress=die_after_the_first_batch)

    def clearing(self, upload: bulk.AwardUpload) -> list[sa.Row[Any]]:
        """The upload's clearing accounts."""
        return [
            self.earning.account_row(int(i)) for i in json.loads(upload.clearing_accounts).values()
        ]

    def assert_settled(self, upload: bulk.AwardUpload) -> None:
        """Done, its clearing accounts empty and closed, the ledger sound."""
        assert upload.status == "done"
        assert upload.finished_at is not None
        for account in self.clearing(upload):
            assert account.closed
            assert account.debits_posted == account.credits_posted
            assert account.debits_pending == account.credits_pending == 0
        report = self.earning.verify()
        assert report.ok, report.problems


def desk(
    engine: Engine,
    clock: FakeClock,
    *,
    module: str = "health_checkup",
    config: dict[str, Any] | None = None,
    amount: int = AMOUNT,
    budget: int | None = 1_000_000,
    **options: Any,
) -> Desk:
    clock.now = NOON
    earning = Earning(engine, clock)
    point_type = earning.point_type()
    if module == "health_checkup" and config is None:
        config = CHECKUP
    program = earning.program(
        point_type, module=module, amount=amount, config=config or {}, **options
    )
    if budget is not None:
        earning.allocate(program, 2026, budget)
    return Desk(earning, point_type, program)


def checkup_file(residents: list[str], **encoding: Any) -> bytes:
    lines = [HEADER] + [f"{r},REC-{n},specific_health_checkup" for n, r in enumerate(residents, 1)]
    return encode(lines, **encoding)


# The happy path ---------------------------------------------------------------------------


def test_a_file_awards_every_row_from_the_budget_through_a_clearing_account(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(30)
    data = checkup_file(residents)  # UTF-8 with a BOM, CRLF
    assert data.startswith(BOM) and b"\r\n" in data
    entries = d.entries()
    progress: list[tuple[int, int | None]] = []

    result = d.upload(
        data, filename="checkups.csv", batch=7, progress=lambda *p: progress.append(p)
    )

    assert not result.replayed
    upload = result.upload
    assert upload.id.startswith("upl_")
    assert (upload.program_id, upload.filename, upload.created_by) == (
        d.program.id,
        "checkups.csv",
        ACTOR.principal_id,
    )
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert (upload.rows, upload.to_award, upload.total) == (30, 30, 30 * AMOUNT)
    assert (upload.awarded, upload.replayed, upload.failed) == (30, 0, 0)
    assert json.loads(upload.failures) == []
    assert progress == [(0, 30), (7, 30), (14, 30), (21, 30), (28, 30), (30, 30)]
    assert d.remaining() == 1_000_000 - 30 * AMOUNT
    view = d.earning.budget(d.program, 2026)
    assert (view.awarded, view.awards, view.residents_awarded) == (30 * AMOUNT, 30, 30)
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    awarded = d.earning.awards_of(d.program)
    assert sorted((a.record_id, a.resident_id) for a in awarded) == sorted(
        (f"REC-{n}", r) for n, r in enumerate(residents, 1)
    )
    assert {(a.amount, a.fiscal_year, a.occurred_on, a.details) for a in awarded} == {
        (AMOUNT, 2026, date(2026, 5, 10), '{"checkup_type": "specific_health_checkup"}')
    }
    assert {a.awarded_by for a in awarded} == {ACTOR.principal_id}
    assert d.earning.count("award_once", program_id=d.program.id) == 30
    # One entry sets the total aside, one per row awards it; nothing was left to return.
    assert d.entries() - entries == 31
    assert d.entries("bulk_set_aside") == 1
    assert d.entries("award") == 30
    assert d.entries("bulk_return") == 0
    (clearing,) = d.clearing(upload)
    assert (clearing.credits_posted, clearing.debits_posted) == (30 * AMOUNT, 30 * AMOUNT)
    assert (clearing.code, clearing.owner_ref) == (700, f"{upload.id}:FY2026")
    d.assert_settled(upload)
    stored = d.earning.read(lambda s: bulk.get_upload(s, upload.id, department_id=None))
    assert (stored.status, stored.awarded) == ("done", 30)


def test_rows_of_one_resident_share_a_bucket_across_batches(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, module="fixed_award", amount=100)
    first, second = d.residents(2)
    d.earning.award(d.program, first, "SINGLE-1")  # the first resident has a bucket already
    rows = [f"{first if n % 3 else second},R-{n}" for n in range(1, 13)]
    data = encode(["resident_id,record_id", *rows], bom=False, newline="\n")

    result = d.upload(data, batch=5)

    assert (result.upload.awarded, result.upload.total) == (12, 1_200)
    assert d.posted(first) == [100 + 8 * 100]
    assert d.posted(second) == [4 * 100]
    assert d.earning.count("wallet_bucket") == 2
    assert d.remaining() == 1_000_000 - 1_300
    d.assert_settled(result.upload)


def test_optional_columns_dates_in_both_forms_and_the_programs_amount(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    a, b, c, e = d.residents(4)
    data = encode(
        [
            " Resident_ID ,RECORD_ID,Occurred_On,Amount,Checkup_Type",  # case and spaces
            f"{a},R-1,2026-05-01,500,specific_health_checkup",
            f"{b},R-2,2026/05/02,,specific_health_checkup",
            f"{c},R-3,,500,specific_health_checkup",
            f"  {e} , R-4 ,2026-04-01 ,,  specific_health_checkup ",
        ]
    )

    result = d.upload(data)

    assert result.upload.awarded == 4
    got = {x.record_id: x.occurred_on for x in d.earning.awards_of(d.program)}
    assert got == {
        "R-1": date(2026, 5, 1),
        "R-2": date(2026, 5, 2),
        "R-3": date(2026, 5, 10),  # blank: today in Tokyo
        "R-4": date(2026, 4, 1),
    }
    d.assert_settled(result.upload)


def test_a_file_spanning_two_fiscal_years_sets_each_years_total_aside(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=None, valid_from=date(2025, 4, 1))
    d.earning.allocate(d.program, 2025, 10_000)
    d.earning.allocate(d.program, 2026, 10_000)
    a, b, c = d.residents(3)
    data = encode(
        [
            "resident_id,record_id,occurred_on,checkup_type",
            f"{a},R-1,2026-03-31,specific_health_checkup",
            f"{a},R-2,2026-04-01,specific_health_checkup",  # another fiscal year: another once-key
            f"{b},R-3,2025-04-01,specific_health_checkup",
            f"{c},R-4,2026-05-10,specific_health_checkup",
        ]
    )
    plan, errors = d.check(data)
    assert errors == [] and plan is not None
    assert plan.totals == {2025: 1_000, 2026: 1_000}

    result = d.upload(data)

    assert (result.upload.awarded, result.upload.total) == (4, 2_000)
    assert (d.remaining(2025), d.remaining(2026)) == (9_000, 9_000)
    clearing = d.clearing(result.upload)
    assert sorted(account.owner_ref for account in clearing) == [
        f"{result.upload.id}:FY2025",
        f"{result.upload.id}:FY2026",
    ]
    d.assert_settled(result.upload)


# Encodings and blank lines ----------------------------------------------------------------


def test_utf8_without_a_bom_and_cp932_files_are_read(engine: Engine, clock: FakeClock) -> None:
    d = desk(
        engine, clock, config={"checkup_types": ["specific_health_checkup", "cancer_screening"]}
    )
    residents = d.residents(4)
    # A department's spreadsheet names checkup types in Japanese: they are read as their codes.
    lines = [HEADER, f"{residents[0]},R-1,特定健康診査", f"{residents[1]},R-2,cancer_screening"]
    utf8 = encode(lines, bom=False)
    cp932_lines = [HEADER, f"{residents[2]},R-3,特定健康診査", f"{residents[3]},R-4,がん検診"]
    cp932 = encode(cp932_lines, bom=False, encoding="cp932")
    with pytest.raises(UnicodeDecodeError):
        cp932.decode("utf-8")

    first = d.upload(utf8, filename="utf8.csv")
    second = d.upload(cp932, filename="健診受診者一覧.csv")

    assert (first.upload.awarded, second.upload.awarded) == (2, 2)
    assert second.upload.filename == "健診受診者一覧.csv"
    details = {a.record_id: json.loads(a.details) for a in d.earning.awards_of(d.program)}
    assert details == {
        "R-1": {"checkup_type": "specific_health_checkup"},
        "R-2": {"checkup_type": "cancer_screening"},
        "R-3": {"checkup_type": "specific_health_checkup"},
        "R-4": {"checkup_type": "cancer_screening"},
    }
    # A CP932 value not in the program is reported in Japanese, as the department wrote it.
    (error,) = d.refused(
        encode([HEADER, f"{residents[0]},R-9,脳ドック"], bom=False, encoding="cp932")
    )
    assert (error.line, error.column) == (2, "checkup_type")
    assert "脳ドック" in error.reason


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00garbage\x81", b"resident_id,record_id\r\n\x82\xa0\xff\x81"],
    ids=["garbage", "broken-sjis"],
)
def test_a_file_in_neither_encoding_is_csv_invalid_saying_utf8(
    engine: Engine, clock: FakeClock, data: bytes
) -> None:
    d = desk(engine, clock)

    assert d.refused(data) == [RowError(1, "", NOT_UTF8)]


def test_a_utf16_file_is_refused_as_neither_utf8_nor_cp932(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    resident = d.earning.resident()
    data = f"{HEADER}\r\n{resident},R-1,specific_health_checkup\r\n".encode(
        "utf-16"
    )  # with its BOM

    assert d.refused(data) == [RowError(1, "", NOT_UTF8)]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b" \r\n\r\n\t\n", "the file is empty"),
        (BOM, "the file has no header row"),
        (BOM + b"\r\n   \r\n,,\r\n", "the file has no header row"),
    ],
    ids=["empty", "blank", "bom-only", "blank-lines-only"],
)
def test_an_empty_file_is_csv_invalid(
    engine: Engine, clock: FakeClock, data: bytes, reason: str
) -> None:
    d = desk(engine, clock)

    assert d.refused(data) == [RowError(1, "", reason)]


def test_blank_lines_are_skipped_and_lines_are_counted_as_in_the_file(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, config={"checkup_types": ["specific_health_checkup", "dental_checkup"]})
    a, b, c = d.residents(3)
    lines = [
        "",  # 1
        HEADER,  # 2
        f"{a},R-1,specific_health_checkup",  # 3
        "",  # 4
        "   \t ",  # 5
        f"{b},R-2,eye",  # 6: not one of the program's
        ",,",  # 7: only empty cells
        "",  # 8
        f"{c},R-3,dental_checkup",  # 9
        "  ",  # 10
    ]

    errors = d.refused(encode(lines))

    assert errors == [
        RowError(
            6,
            "checkup_type",
            "checkup_type 'eye' is not one of this program's: "
            "specific_health_checkup, dental_checkup",
        )
    ]
    lines[5] = f"{b},R-2,dental_checkup"
    plan, errors = d.check(encode(lines))
    assert errors == [] and plan is not None
    assert (plan.rows, [row.line for row in plan.to_award]) == (3, [3, 6, 9])
    result = d.upload(encode(lines))
    assert (result.upload.rows, result.upload.awarded) == (3, 3)


# Bad input: every problem, with its line and column; nothing written ------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            "resident_id,checkup_type",
            [RowError(1, "record_id", f"missing column 'record_id'; columns: {COLUMNS}")],
        ),
        (
            "resident_id,record_id,checkup_type,name",
            [RowError(1, "name", f"unknown column 'name'; columns: {COLUMNS}")],
        ),
        (
            "resident_id,record_id,Record_ID,checkup_type",
            [RowError(1, "record_id", "column 'record_id' appears twice")],
        ),
        (
            "resident_id,record_id,event_id",  # another module's column
            [RowError(1, "event_id", f"unknown column 'event_id'; columns: {COLUMNS}")],
        ),
        (
            "record_id,checkup_type,",  # a trailing empty column, and no resident_id
            [
                RowError(1, "", f"unknown column ''; columns: {COLUMNS}"),
                RowError(
                    1,
                    "resident_id",
                    f"missing column 'resident_id' or 'address_number'; columns: {COLUMNS}",
                ),
            ],
        ),
    ],
    ids=["missing", "unknown", "duplicate", "other-module", "several"],
)
def test_a_wrong_header_is_reported_on_its_line_and_nothing_else(
    engine: Engine, clock: FakeClock, header: str, expected: list[RowError]
) -> None:
    d = desk(engine, clock)
    resident = d.earning.resident()
    # The rows are not looked at: a header that is wrong is the one problem reported.
    data = encode(["", header, f"{resident},R-1,specific_health_checkup", "nonsense,,,,,"])

    errors = d.refused(data)

    assert errors == [RowError(2, e.column, e.reason) for e in expected]


def test_every_bad_row_is_reported_with_its_line_and_column_sorted_by_line(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, config={"checkup_types": ["specific_health_checkup", "dental_checkup"]})
    ok, ok2, ok3, ok4, other, before = d.residents(6)
    moved_out, closed = d.residents(2)
    d.earning.set_resident_status(moved_out, ResidentStatus.MOVED_OUT)
    d.earning.award(d.program, closed, "R-CLOSED", BASIC)
    d.earning.write(
        lambda s: wallets.close_wallet(
            s, ACTOR, clock(), get_point_type(s, d.point_type.id), closed, reason="moved out"
        )
    )
    d.earning.award(d.program, before, "R-BEFORE", BASIC, occurred_on=date(2026, 5, 1))
    d.earning.award(d.program, before, "R-DENTAL", {"checkup_type": "dental_checkup"})
    lines = [
        "resident_id,record_id,occurred_on,amount,checkup_type",  # 1
        f"{ok},R-1,2026-05-01,500,specific_health_checkup",  # 2: fine
        "res_nosuchresident,R-2,,,specific_health_checkup",  # 3
        f"{moved_out},R-3,,,specific_health_checkup",  # 4
        f"{ok2},R-4,,0,specific_health_checkup",  # 5
        f"{ok2},R-5,,-5,specific_health_checkup",  # 6
        f"{ok2},R-6,,1.5,specific_health_checkup",  # 7
        f"{ok2},R-7,,abc,specific_health_checkup",  # 8
        f"{ok2},R-8,,100,specific_health_checkup",  # 9: not the program's amount
        f"{ok2},R-9,2026-13-01,,specific_health_checkup",  # 10
        f"{ok2},R-10,2026-05-11,,specific_health_checkup",  # 11: tomorrow in Tokyo
        f"{ok3},R-1,,,dental_checkup",  # 12: the record id of line 2
        f"{ok},R-11,2026-05-02,,specific_health_checkup",  # 13: the checkup of line 2 again
        # 14: awarded before, to another resident
        f"{other},R-BEFORE,2026-05-01,,specific_health_checkup",
        f"{before},R-12,,,specific_health_checkup",  # 15: this checkup was awarded before
        f"{ok4},R-13,,,",  # 16: no checkup type
        f"{ok4},R-14,,,eye",  # 17
        f"{ok4},R-15,specific_health_checkup",  # 18: too few fields
        "not-a-resident,R 16,,,specific_health_checkup",  # 19: two problems
        f"{ok4},R-17,2026-03-31,,specific_health_checkup",  # 20: before the program began
        f"{closed},R-18,,,dental_checkup",  # 21
        f"{before},R-DENTAL,,,dental_checkup",  # 22: a replay, fine
        f"{ok2},R-19,,,specific_health_checkup",  # 23: fine
    ]
    before_residents = d.posted(before)

    errors = d.refused(encode(lines))

    assert errors == [
        RowError(3, "resident_id", "no such resident"),
        RowError(4, "resident_id", "the resident is moved_out"),
        RowError(5, "amount", "not a positive integer: '0'"),
        RowError(6, "amount", "not a positive integer: '-5'"),
        RowError(7, "amount", "not a positive integer: '1.5'"),
        RowError(8, "amount", "not a positive integer: 'abc'"),
        RowError(9, "amount", "this program awards 500 per event"),
        RowError(10, "occurred_on", "not a date (YYYY-MM-DD): '2026-13-01'"),
        RowError(11, "occurred_on", "occurred_on 2026-05-11 is in the future"),
        RowError(12, "record_id", "the same record_id is on line 2"),
        RowError(13, "record_id", "FY2026:specific_health_checkup is also on line 2"),
        RowError(
            14,
            "record_id",
            "this record id was awarded for a different event (record_id_reused)",
        ),
        RowError(
            15, "record_id", "FY2026:specific_health_checkup was awarded already (record R-BEFORE)"
        ),
        RowError(16, "checkup_type", "details.checkup_type: Field required"),
        RowError(
            17,
            "checkup_type",
            "checkup_type 'eye' is not one of this program's: "
            "specific_health_checkup, dental_checkup",
        ),
        RowError(18, "", "3 fields where the header has 5"),
        RowError(19, "record_id", "record_id is 1 to 128 printable ASCII characters, no spaces"),
        RowError(19, "resident_id", "not a resident id: 'not-a-resident'"),
        RowError(
            20,
            "occurred_on",
            "the program runs 2026-04-01 to open-ended; the event was on 2026-03-31",
        ),
        RowError(21, "resident_id", "the resident's wallet is closed"),
    ]
    assert d.posted(before) == before_residents
    # Without the bad lines the file is fine: two rows to award and one replay.
    good = encode([lines[0], lines[1], lines[21], lines[22]])
    plan, errors = d.check(good)
    assert errors == [] and plan is not None
    assert (plan.rows, plan.replays, [r.line for r in plan.to_award]) == (3, 1, [2, 4])
    assert plan.totals == {2026: 1_000}


def test_only_the_first_thousand_problems_travel_with_the_refusal(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    lines = [HEADER] + [f"bad-{n},R-{n},specific_health_checkup" for n in range(1_200)]

    errors = d.refused(encode(lines))

    assert len(errors) == 1_200
    assert [e.line for e in errors] == list(range(2, 1_202))
    with pytest.raises(CsvInvalid) as raised:
        d.upload(encode(lines))
    assert len(raised.value.context["errors"]) == 1_000
    assert raised.value.context["error_count"] == 1_200
    assert raised.value.message.startswith(
        "the file has 1200 problem(s); nothing was awarded. First: line 2, resident_id: "
    )


def test_the_validation_report_as_csv_is_utf8_with_a_bom_for_excel() -> None:
    errors = [
        RowError(2, "checkup_type", "「人間ドック」, not one of this program's"),
        RowError(3, "", "x"),
    ]

    data = bulk.errors_csv(errors)

    assert data.startswith(BOM)
    assert data[3:].decode("utf-8").split("\r\n") == [
        "line,column,reason",
        '2,checkup_type,"「人間ドック」, not one of this program\'s"',
        "3,,x",
        "",
    ]
    assert bulk.errors_csv([]) == BOM + b"line,column,reason\r\n"


def test_a_stray_quote_that_swallows_the_rest_of_a_big_file_is_reported(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    resident = d.earning.resident()
    lines = [HEADER, f'{resident},"R-0,specific_health_checkup'] + [
        f"{resident},R-{n},specific_health_checkup" for n in range(8_000)
    ]

    errors = d.refused(encode(lines))

    assert errors[0].line == 2


def test_caps_and_once_keys_are_counted_across_the_file_and_what_was_awarded(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, module="fixed_award", amount=100, cap_per_day=200)
    busy, free = d.residents(2)
    d.earning.award(d.program, busy, "EARLIER")
    lines = [
        "resident_id,record_id,occurred_on",
        f"{busy},C-1,",  # 200 with the earlier award: the cap
        f"{busy},C-2,",  # 300: over
        f"{busy},C-3,2026-05-09",  # another day
        f"{free},C-4,",
        f"{free},C-5,",
        f"{free},C-6,",  # 300: over
    ]

    errors = d.refused(encode(lines))

    assert errors == [
        RowError(
            3,
            "resident_id",
            "the cap for D2026-05-10 is 200; 200 is counted already and this award is 100",
        ),
        RowError(
            7,
            "resident_id",
            "the cap for D2026-05-10 is 200; 200 is counted already and this award is 100",
        ),
    ]
    result = d.upload(encode([line for n, line in enumerate(lines) if n not in (2, 6)]))
    assert result.upload.awarded == 4
    assert d.earning.counter(d.program, busy, "D2026-05-10") == 200
    assert d.earning.counter(d.program, busy, "D2026-05-09") == 100
    assert d.earning.counter(d.program, free, "D2026-05-10") == 200


def test_a_volunteering_file_awards_each_event_once_per_resident(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, module="volunteering", amount=300)
    a, b = d.residents(2)
    lines = [
        "resident_id,record_id,event_id",
        f"{a},V-1,CLEANUP-0510",
        f"{b},V-2,CLEANUP-0510",
        f"{a},V-3,PARK-0509",
        f"{a},V-4,CLEANUP-0510",
        f"{b},V-5,清掃",  # an event id is printable ASCII
    ]

    errors = d.refused(encode(lines))

    assert [(e.line, e.column) for e in errors] == [(5, "record_id"), (6, "event_id")]
    assert errors[0].reason == "event:CLEANUP-0510 is also on line 2"
    result = d.upload(encode(lines[:4]))
    assert result.upload.awarded == 3
    assert (d.posted(a), d.posted(b)) == ([600], [300])


def test_a_program_that_is_not_active_takes_no_file(engine: Engine, clock: FakeClock) -> None:
    d = desk(engine, clock)
    data = checkup_file(d.residents(2))
    d.earning.set_program_status(d.program, ProgramStatus.PAUSED)
    before = d.snapshot()

    with pytest.raises(ProgramNotActive) as raised:
        d.upload(data)

    assert raised.value.code == "program_not_active"
    assert d.snapshot() == before


# The budget -------------------------------------------------------------------------------


def test_a_file_needing_more_than_remains_is_refused_before_anything_is_awarded(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=10 * AMOUNT - 1)
    data = checkup_file(d.residents(10))
    plan, errors = d.check(data)  # the check does not look at the budget
    assert errors == [] and plan is not None and plan.totals == {2026: 10 * AMOUNT}
    before = d.snapshot()

    with pytest.raises(BudgetExhausted) as raised:
        d.upload(data)

    assert raised.value.code == "budget_exhausted"
    assert raised.value.context == {"remaining": 10 * AMOUNT - 1, "requested": 10 * AMOUNT}
    assert d.snapshot() == before
    assert d.remaining() == 10 * AMOUNT - 1
    # Once the budget is topped up, the same file is awarded (the refusal recorded nothing).
    d.earning.allocate(d.program, 2026, 1)
    result = d.upload(data)
    assert (result.replayed, result.upload.awarded) == (False, 10)
    assert d.remaining() == 0


def test_a_file_that_fits_the_budget_exactly_leaves_nothing(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=10 * AMOUNT)

    result = d.upload(checkup_file(d.residents(10)))

    assert (result.upload.awarded, result.upload.total) == (10, 10 * AMOUNT)
    assert d.remaining() == 0
    d.assert_settled(result.upload)
    with pytest.raises(BudgetExhausted):
        d.earning.award(d.program, d.earning.resident(), "ONE-MORE", BASIC)


def test_a_year_without_a_budget_refuses_the_file(engine: Engine, clock: FakeClock) -> None:
    d = desk(engine, clock, budget=None, valid_from=date(2025, 4, 1))
    d.earning.allocate(d.program, 2026, 10_000)
    a, b = d.residents(2)
    data = encode(
        [
            "resident_id,record_id,occurred_on,checkup_type",
            f"{a},R-1,2026-05-01,specific_health_checkup",
            f"{b},R-2,2026-03-01,specific_health_checkup",
        ]
    )
    before = d.snapshot()

    with pytest.raises(BudgetExhausted) as raised:
        d.upload(data)

    assert raised.value.context == {"remaining": 0, "requested": AMOUNT}
    assert "FY2025" in raised.value.message
    assert d.snapshot() == before


# Uploading again --------------------------------------------------------------------------


def test_the_same_file_again_is_a_replay_that_awards_nothing(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(5)
    data = checkup_file(residents)
    first = d.upload(data, filename="a.csv")
    before = d.snapshot()

    again = d.upload(data, filename="renamed.csv")

    assert again.replayed
    assert again.upload.id == first.upload.id
    assert (again.upload.filename, again.upload.awarded, again.upload.replayed) == ("a.csv", 5, 0)
    assert d.snapshot() == before
    assert d.remaining() == 1_000_000 - 5 * AMOUNT
    # The check says so too: every row is a replay.
    plan, errors = d.check(data)
    assert errors == [] and plan is not None
    assert (plan.rows, plan.replays, plan.to_award, plan.totals) == (5, 5, [], {})


def test_the_old_file_with_new_rows_awards_only_the_new_rows(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    old, new = d.residents(4), d.residents(3)
    first = d.upload(checkup_file(old))
    entries = d.entries()

    longer = checkup_file(old + new)
    second = d.upload(longer)

    assert not second.replayed
    assert second.upload.id != first.upload.id
    upload = second.upload
    assert (upload.rows, upload.to_award, upload.total) == (7, 3, 3 * AMOUNT)
    assert (upload.awarded, upload.replayed, upload.failed) == (3, 4, 0)
    assert d.entries() - entries == 1 + 3
    for resident in old + new:
        assert d.posted(resident) == [AMOUNT]
    assert d.remaining() == 1_000_000 - 7 * AMOUNT
    assert d.earning.count("award") == 7
    d.assert_settled(upload)


def test_the_same_rows_in_other_bytes_are_a_new_upload_of_replays_only(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(3)
    d.upload(checkup_file(residents))
    entries = d.entries()

    again = d.upload(checkup_file(residents, bom=False, newline="\n"))

    assert not again.replayed
    upload = again.upload
    assert (upload.rows, upload.to_award, upload.total, upload.clearing_accounts) == (3, 0, 0, "{}")
    assert (upload.awarded, upload.replayed, upload.status) == (0, 3, "done")
    assert d.entries() == entries
    assert d.remaining() == 1_000_000 - 3 * AMOUNT


class Interrupted(Exception):
    """The process died while awarding."""


def test_an_interrupted_upload_is_resumed_and_awards_each_row_once(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(10)
    data = checkup_file(residents)

    d.upload_dying(data, batch=4)
    halfway = d.the_upload()
    assert (halfway.status, halfway.awarded, halfway.to_award) == ("issuing", 4, 10)
    # The whole file is set aside: what is not awarded yet is held, not in the budget.
    assert d.remaining() == 1_000_000 - 10 * AMOUNT
    (clearing,) = d.clearing(halfway)
    assert (clearing.credits_posted, clearing.debits_posted, clearing.closed) == (
        10 * AMOUNT,
        4 * AMOUNT,
        False,
    )
    assert d.earning.count("award") == 4

    resumed = d.upload(data, batch=4)

    assert not resumed.replayed
    upload = resumed.upload
    assert upload.id == halfway.id
    assert (upload.rows, upload.to_award, upload.total) == (10, 10, 10 * AMOUNT)
    assert (upload.awarded, upload.replayed, upload.failed) == (10, 0, 0)
    assert d.entries("bulk_set_aside") == 1
    assert d.earning.count("award") == 10
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    assert d.remaining() == 1_000_000 - 10 * AMOUNT
    d.assert_settled(upload)
    assert d.upload(data).replayed


class Stalled:
    """A run of an upload that stops after its first batch (a slow request, a stalled process)
    until the test lets it go on, in a thread of its own."""

    def __init__(self, upload: Callable[..., UploadResult], data: bytes, batch: int) -> None:
        self.stalled, self.go_on = threading.Event(), threading.Event()
        self.outcome: list[Any] = []

        def stall(done: int, total: int | None) -> None:
            if done == batch:
                self.stalled.set()
                assert self.go_on.wait(30)

        def run() -> None:
            try:
                self.outcome.append(upload(data, batch=batch, progress=stall))
            except Exception as error:  # handed to the test
                self.outcome.append(error)

        self.thread = threading.Thread(target=run)
        self.thread.start()
        assert self.stalled.wait(30)

    def finish(self) -> Any:
        self.go_on.set()
        self.thread.join(30)
        (outcome,) = self.outcome
        return outcome


def test_the_same_file_while_a_run_awards_it_is_refused_and_counted_once(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(10)
    data = checkup_file(residents)
    first = Stalled(d.upload, data, batch=4)
    before = d.snapshot()

    with pytest.raises(bulk.UploadInProgress) as raised:
        d.upload(data, batch=4)

    upload = d.the_upload()
    assert raised.value.code == "upload_in_progress"
    assert raised.value.context == {
        "upload_id": upload.id,
        "awarded": 4,
        "to_award": 10,
        # The clock has not moved since the first run renewed its lease before the batch.
        "retry_after_seconds": bulk.LEASE.total_seconds(),
    }
    assert f"upload {upload.id} of this file is being awarded by another request" in str(
        raised.value
    )
    assert d.snapshot() == before
    result = first.finish()
    assert isinstance(result, UploadResult), result
    assert (result.upload.awarded, result.upload.replayed, result.upload.failed) == (10, 0, 0)
    assert (result.upload.owner, result.upload.lease_expires_at) == (None, None)
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    d.assert_settled(result.upload)
    assert d.upload(data).replayed


def test_a_stalled_run_is_taken_over_once_its_lease_lapses_and_stops(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(10)
    data = checkup_file(residents)
    first = Stalled(d.upload, data, batch=4)
    clock.advance(seconds=bulk.LEASE.total_seconds() + 1)

    second = d.upload(data, batch=4)

    # The second run checked the file after taking the upload over: the first run's 4 awards
    # were replays there, not rows to award again.
    assert not second.replayed
    assert (second.upload.awarded, second.upload.replayed, second.upload.failed) == (10, 0, 0)
    stopped = first.finish()
    assert isinstance(stopped, bulk.UploadInProgress), stopped
    assert "another request took it over" in str(stopped)
    upload = d.the_upload()
    assert (upload.status, upload.awarded, upload.replayed, upload.failed) == ("done", 10, 0, 0)
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    assert d.remaining() == 1_000_000 - 10 * AMOUNT
    d.assert_settled(upload)
    assert d.earning.verify().ok


def test_a_run_whose_process_died_holds_the_upload_until_its_lease_lapses(
    engine: Engine, clock: FakeClock
) -> None:
    """A process that dies cannot let go of its upload: it is held until the lease lapses."""
    d = desk(engine, clock)
    residents = d.residents(6)
    data = checkup_file(residents)

    d.upload_dying(data, batch=3)
    # As a dead process leaves it: still held, by nobody alive.
    died_at = clock()
    with engine.begin() as connection:
        connection.execute(
            sa.update(bulk.AwardUpload).values(
                owner="dead" * 8, lease_expires_at=died_at + bulk.LEASE
            )
        )
    clock.advance(seconds=bulk.LEASE.total_seconds() - 1)
    with pytest.raises(bulk.UploadInProgress):
        d.upload(data, batch=3)
    clock.advance(seconds=2)
    resumed = d.upload(data, batch=3)
    assert (resumed.upload.awarded, resumed.upload.replayed, resumed.upload.failed) == (6, 0, 0)
    for resident in residents:
        assert d.posted(resident) == [AMOUNT]
    d.assert_settled(resumed.upload)


# Concurrent single awards -----------------------------------------------------------------


def singles(d: Desk, residents: list[str]) -> list[Callable[[], Any]]:
    return [
        functools.partial(d.earning.award, d.program, resident, f"SINGLE-{resident}", BASIC)
        for resident in residents
    ]


def assert_budget_exhausted(outcomes: list[tuple[str, Any]], count: int) -> None:
    refused = [value for status, value in outcomes if status == "error"]
    assert len(refused) == count, outcomes
    for error in refused:
        assert isinstance(error, BudgetExhausted), error
        assert error.context == {"remaining": 0, "requested": AMOUNT}


def test_single_awards_after_the_set_aside_cannot_take_the_files_budget(
    engine: Engine, clock: FakeClock
) -> None:
    # Room for the file and 3 singles; 8 singles arrive once the file is set aside.
    d = desk(engine, clock, budget=(20 + 3) * AMOUNT)
    in_file, alone = d.residents(20), d.residents(8)
    outcomes: list[tuple[str, Any]] = []

    def singles_meanwhile(done: int, total: int | None) -> None:
        if done == 0:
            outcomes.extend(run_together(singles(d, alone)))

    result = d.upload(checkup_file(in_file), batch=6, progress=singles_meanwhile)

    assert (result.upload.awarded, result.upload.failed) == (20, 0)
    assert_budget_exhausted(outcomes, 5)
    assert d.remaining() == 0
    assert sum(sum(d.posted(r)) for r in in_file + alone) == 23 * AMOUNT
    d.assert_settled(result.upload)


def test_a_file_racing_single_awards_is_awarded_whole_or_refused_whole(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, budget=(20 + 5) * AMOUNT)
    in_file, alone = d.residents(20), d.residents(10)
    data = checkup_file(in_file)

    outcomes = run_together([lambda: d.upload(data, batch=5), *singles(d, alone)])

    status, value = outcomes[0]
    singles_awarded = sum(1 for s, _ in outcomes[1:] if s == "ok")
    if status == "ok":
        # The file was set aside first (at most 5 singles before it): 5 singles in all.
        assert (value.upload.awarded, value.upload.failed) == (20, 0)
        assert singles_awarded == 5
        assert_budget_exhausted(outcomes[1:], 5)
        assert d.remaining() == 0
        d.assert_settled(value.upload)
    else:
        # More than 5 singles came first: the file does not fit and nothing of it is awarded.
        assert isinstance(value, BudgetExhausted), value
        assert value.context["requested"] == 20 * AMOUNT
        assert singles_awarded == 10
        assert d.earning.count("award_upload") == 0
        assert all(d.posted(r) == [] for r in in_file)
        assert d.remaining() == 15 * AMOUNT
    awarded = sum(sum(d.posted(r)) for r in in_file + alone)
    assert awarded + d.remaining() == 25 * AMOUNT
    assert d.earning.verify().ok


def test_a_row_a_single_award_made_invalid_meanwhile_is_reported_and_its_points_return(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(12)
    taken, gone = residents[4], residents[9]

    def meanwhile(done: int, total: int | None) -> None:
        if done == 0:
            # Between the check and the awarding: the checkup of line 6 is awarded under
            # another record, and the resident of line 11 moves out.
            d.earning.award(d.program, taken, "BY-HAND", BASIC)
            d.earning.set_resident_status(gone, ResidentStatus.MOVED_OUT)

    result = d.upload(checkup_file(residents), batch=5, progress=meanwhile)

    upload = result.upload
    assert (upload.awarded, upload.replayed, upload.failed) == (10, 0, 2)
    failures = json.loads(upload.failures)
    assert [(f["line"], f["code"]) for f in failures] == [
        (6, "already_awarded"),
        (11, "resident_not_active"),
    ]
    assert (
        "FY2026:specific_health_checkup" in failures[0]["reason"]
        and "BY-HAND" in failures[0]["reason"]
    )
    assert d.posted(taken) == [AMOUNT]
    assert d.posted(gone) == []
    for resident in residents:
        if resident not in (taken, gone):
            assert d.posted(resident) == [AMOUNT]
    # 2 rows' points went back to the budget; nothing half-applied.
    assert d.entries("bulk_return") == 1
    assert d.remaining() == 1_000_000 - 11 * AMOUNT
    assert d.earning.count("award", program_id=d.program.id) == 11
    assert d.earning.count("award_once", program_id=d.program.id) == 11
    d.assert_settled(upload)


def test_a_record_id_taken_meanwhile_for_another_resident_is_reported(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(5)
    intruder = d.earning.resident()

    def meanwhile(done: int, total: int | None) -> None:
        if done == 0:
            d.earning.award(d.program, intruder, "REC-3", BASIC)

    result = d.upload(checkup_file(residents), progress=meanwhile)

    upload = result.upload
    assert (upload.awarded, upload.replayed, upload.failed) == (4, 0, 1)
    assert [(f["line"], f["code"]) for f in json.loads(upload.failures)] == [
        (4, "record_id_reused")
    ]


def test_rows_without_a_date_are_awarded_as_checked_when_midnight_passes(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    residents = d.residents(3)
    clock.now = datetime(2027, 3, 31, 14, 59, 50, tzinfo=UTC)  # 23:59:50 on March 31 in Tokyo

    def midnight(done: int, total: int | None) -> None:
        if done == 0:
            clock.advance(seconds=20)

    result = d.upload(checkup_file(residents), progress=midnight)

    assert (result.upload.awarded, result.upload.failed) == (3, 0), result.upload.failures
    assert {a.occurred_on for a in d.earning.awards_of(d.program)} == {date(2027, 3, 31)}


def test_rows_without_a_date_are_never_awarded_outside_the_programs_window(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock, valid_until=date(2026, 5, 10))
    residents = d.residents(3)
    clock.now = datetime(2026, 5, 10, 14, 59, 50, tzinfo=UTC)  # 23:59:50 on May 10 in Tokyo

    def midnight(done: int, total: int | None) -> None:
        if done == 0:
            clock.advance(seconds=20)

    result = d.upload(checkup_file(residents), progress=midnight)

    # Awarded as checked: dated the day of the check, the window's last day, not the next.
    assert (result.upload.awarded, result.upload.failed) == (3, 0)
    assert [a.occurred_on for a in d.earning.awards_of(d.program)] == [date(2026, 5, 10)] * 3


# A 100,000-row file ---------------------------------------------------------------------


def many_residents(d: Desk, count: int, prefix: str = "bulk") -> list[str]:
    """``count`` active residents, inserted in one statement (the registry's own path writes
    an audit event per resident and would take minutes)."""
    ids = [f"res_{prefix}{n:06d}" for n in range(count)]
    rows = [
        {
            "id": i,
            "verification": "self_enrolled",
            "status": "active",
            "created_at": NOON,
            "updated_at": NOON,
        }
        for i in ids
    ]
    table = SQLModel.metadata.tables["resident"]
    d.earning.write(lambda s: s.connection().execute(sa.insert(table), rows))
    return ids


#: Rows of the big file, and rows uploaded where awarding all of them takes minutes.
BIG = 100_000
BIG_UPLOAD = {"sqlite": BIG, "postgresql": BIG}


@pytest.mark.slow
def test_a_100000_row_file_is_checked_and_uploaded(
    engine: Engine, clock: FakeClock, backend: str, record_property: Callable[[str, Any], None]
) -> None:
    """50,000 residents with two checkups each, checked and uploaded whole on both databases
    (here: 11 s on SQLite, 17 s on PostgreSQL); timings are recorded as properties
    (``--junitxml``) and printed (``-s``)."""
    d = desk(
        engine,
        clock,
        module="health_checkup",
        amount=10,
        config={"checkup_types": ["specific_health_checkup", "dental_checkup"]},
        budget=BIG * 10,
    )
    residents = many_residents(d, BIG // 2)
    lines = [HEADER] + [
        f"{residents[k % len(residents)]},R-{k},"
        + ("specific_health_checkup" if k < len(residents) else "dental_checkup")
        for k in range(BIG)
    ]

    started = time.perf_counter()
    plan, errors = d.check(encode(lines))
    checked = time.perf_counter() - started

    assert errors == [] and plan is not None
    assert (plan.rows, len(plan.to_award), plan.replays, plan.totals) == (
        BIG,
        BIG,
        0,
        {2026: BIG * 10},
    )
    rows = BIG_UPLOAD[backend]
    data = encode(lines[: rows + 1])
    started = time.perf_counter()
    result = d.upload(data)
    uploaded = time.perf_counter() - started

    upload = result.upload
    assert (upload.rows, upload.awarded, upload.failed, upload.total) == (rows, rows, 0, rows * 10)
    assert d.remaining() == (BIG - rows) * 10
    assert d.earning.count("award", program_id=d.program.id) == rows
    assert d.entries("award") == rows
    assert d.posted(residents[0]) == [20 if rows > len(residents) else 10]
    d.assert_settled(upload)
    record_property("check_file_seconds", round(checked, 1))
    record_property("upload_rows", rows)
    record_property("upload_seconds", round(uploaded, 1))
    print(
        f"\n{backend}: check_file {BIG} rows {checked:.1f} s; upload {rows} rows {uploaded:.1f} s"
    )


def test_a_file_of_more_than_65535_residents_is_checked(engine: Engine, clock: FakeClock) -> None:
    d = desk(engine, clock)
    lines = [HEADER] + [f"res_nobody{n:06d},R-{n},specific_health_checkup" for n in range(70_000)]

    plan, errors = d.check(encode(lines))

    assert plan is not None and (plan.rows, plan.to_award, plan.totals) == (70_000, [], {})
    assert len(errors) == 70_000
    assert errors[0] == RowError(2, "resident_id", "no such resident")
    assert errors[-1] == RowError(70_001, "resident_id", "no such resident")


# The command: points award --program P --csv FILE ----------------------------------------


def test_points_award_checks_reports_and_awards_a_file(
    engine: Engine, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    # The command reads the real clock: the rows carry a date in FY2026 that has passed.
    d = desk(engine, clock)
    a, b, c = d.residents(3)
    good = tmp_path / "checkups.csv"
    good.write_bytes(
        encode(
            [
                "resident_id,record_id,occurred_on,checkup_type",
                *(
                    f"{r},R-{n},2026-05-01,specific_health_checkup"
                    for n, r in enumerate((a, b, c), 1)
                ),
            ]
        )
    )
    bad = tmp_path / "bad.csv"
    bad.write_bytes(
        encode(
            [
                "resident_id,record_id,occurred_on,checkup_type",
                f"{a},R-1,2026-05-01,eye",
                "res_nosuchresident,R-2,2026-05-01,specific_health_checkup",
            ],
            bom=False,
            encoding="cp932",
        )
    )
    report_json, report_csv = tmp_path / "problems.json", tmp_path / "problems.csv"
    program = ["award", "--program", d.program.id]
    before = d.snapshot()

    checked = invoke(database_url, *program, "--csv", str(good), "--check")
    refused = invoke(
        database_url,
        *program,
        "--csv",
        str(bad),
        "--report-json",
        str(report_json),
        "--report-csv",
        str(report_csv),
    )

    assert checked.exit_code == 0, checked.output
    assert checked.stdout == "checkups.csv: no problems\n"
    assert refused.exit_code == 1, refused.output
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "line 2, checkup_type: "
        "checkup_type 'eye' is not one of this program's: specific_health_checkup",
        "line 3, resident_id: no such resident",
        "Error: 2 problem(s) in bad.csv; nothing awarded",
    ]
    problems = [
        {
            "line": 2,
            "column": "checkup_type",
            "reason": "checkup_type 'eye' is not one of this program's: specific_health_checkup",
        },
        {"line": 3, "column": "resident_id", "reason": "no such resident"},
    ]
    assert json.loads(report_json.read_text(encoding="utf-8")) == problems
    raw = report_csv.read_bytes()
    assert raw.startswith(BOM)
    rows = list(csv.DictReader(io.StringIO(raw[3:].decode("utf-8"), newline="")))
    assert rows == [{k: str(v) for k, v in problem.items()} for problem in problems]
    assert d.snapshot() == before

    awarded = invoke(database_url, *program, "--csv", str(good))

    assert awarded.exit_code == 0, awarded.output
    upload = d.the_upload()
    counts = (
        f"{upload.id}: 3 awarded, 0 awarded before, 0 refused while awarding; "
        f"{3 * AMOUNT} points set aside"
    )
    assert awarded.stdout == counts + "\n"
    assert (upload.filename, upload.created_by, upload.status) == (
        "checkups.csv",
        "system",
        "done",
    )
    assert [d.posted(r) for r in (a, b, c)] == [[AMOUNT]] * 3
    after = d.snapshot()

    again = invoke(database_url, *program, "--csv", str(good))

    assert again.exit_code == 0, again.output
    assert again.stdout == (
        f"checkups.csv was uploaded before ({upload.id}); nothing awarded now\n{counts}\n"
    )
    assert d.snapshot() == after
    # The checked file now holds only replays: still no problems.
    assert invoke(database_url, *program, "--csv", str(good), "--check").exit_code == 0


def test_points_award_explains_an_unknown_program_and_an_exhausted_budget(
    engine: Engine, clock: FakeClock, database_url: str, tmp_path: Path
) -> None:
    d = desk(engine, clock, budget=AMOUNT)
    path = tmp_path / "two.csv"
    path.write_bytes(
        encode(
            [
                "resident_id,record_id,occurred_on,checkup_type",
                *(
                    f"{r},R-{n},2026-05-01,specific_health_checkup"
                    for n, r in enumerate(d.residents(2))
                ),
            ]
        )
    )
    before = d.snapshot()

    unknown = invoke(database_url, "award", "--program", "prg_nosuchprogram", "--csv", str(path))
    short = invoke(database_url, "award", "--program", d.program.id, "--csv", str(path))

    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error: ") and "prg_nosuchprogram" in unknown.stderr
    assert short.exit_code == 1
    assert short.stderr == (
        f"Error: the FY2026 budget has {AMOUNT} remaining; the file needs {2 * AMOUNT}\n"
    )
    assert d.snapshot() == before


# The HTTP API -----------------------------------------------------------------------------

ISS = "/api/v1/issuer"


@pytest.fixture
def world_clock(clock: FakeClock) -> FakeClock:
    """The API tests' world (conftest's ``world``) opens at ``NOON``."""
    clock.now = NOON
    return clock


def post_file(
    world: World,
    actor: str,
    program_id: str,
    data: bytes,
    *,
    key: str | None = "key-1",
    path: str = "award-uploads",
    **params: str,
) -> Any:
    headers = {**world.actors[actor].headers, "Content-Type": "text/csv"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return world.client.post(
        f"{ISS}/programs/{program_id}/{path}", headers=headers, content=data, params=params
    )


def world_file(world: World, count: int, *, start: int = 1) -> bytes:
    """A file of ``count`` rows for fresh residents (the world's programs are fixed awards)."""
    rows = [f"{world.fresh_resident().id},W-{n}" for n in range(start, start + count)]
    return encode(["resident_id,record_id", *rows])


def budget_remaining(world: World, program: str = "a") -> int:
    response = world.client.get(
        f"{ISS}/programs/{world.programs[program]}/budgets/2026",
        headers=world.actors[f"issuer_{program}"].headers,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["remaining"])


def test_an_issuer_uploads_a_file_and_a_retry_replays_it(world: World) -> None:
    program = world.programs["a"]
    data = world_file(world, 5)
    remaining = budget_remaining(world)

    created = post_file(world, "issuer_a", program, data, filename="checkups.csv")

    assert created.status_code == 201, created.text
    assert "Idempotent-Replayed" not in created.headers
    body = created.json()
    assert body["id"].startswith("upl_")
    expected = {
        "program_id": program,
        "sha256": hashlib.sha256(data).hexdigest(),
        "filename": "checkups.csv",
        "status": "done",
        "rows": 5,
        "to_award": 5,
        "total": 500,
        "awarded": 5,
        "replayed": 0,
        "failed": 0,
        "failures": [],
    }
    assert {k: body[k] for k in expected} == expected
    assert budget_remaining(world) == remaining - 500
    officer = world.fresh_staff(StaffRole.ISSUER, department_id=world.departments["a"])
    snapshot = world.snapshot()

    # The same request with the same key: the stored answer (201), marked as a replay.
    same_key = post_file(world, "issuer_a", program, data, filename="checkups.csv")
    # The same file under a new key: the upload is known by its digest (200, no header).
    new_key = post_file(world, "issuer_a", program, data, key="key-2", filename="checkups.csv")
    # Another officer of the department, with the first key: the department's stored answer.
    headers = {**officer.headers, "Content-Type": "text/csv", "Idempotency-Key": "key-1"}
    colleague = world.client.post(
        f"{ISS}/programs/{program}/award-uploads",
        headers=headers,
        content=data,
        params={"filename": "checkups.csv"},
    )

    assert (same_key.status_code, same_key.headers.get("Idempotent-Replayed")) == (201, "true")
    assert same_key.json() == body
    assert new_key.status_code == 200, new_key.text
    assert "Idempotent-Replayed" not in new_key.headers
    assert new_key.json() == body
    assert (colleague.status_code, colleague.headers.get("Idempotent-Replayed")) == (201, "true")
    assert colleague.json() == body
    assert world.snapshot() == snapshot
    assert budget_remaining(world) == remaining - 500
    read = world.client.get(
        f"{ISS}/award-uploads/{body['id']}", headers=world.actors["issuer_a"].headers
    )
    assert read.status_code == 200 and read.json() == body


def test_a_key_reused_for_another_file_or_name_is_refused(world: World) -> None:
    program = world.programs["a"]
    data, another = world_file(world, 2), world_file(world, 1, start=10)
    assert post_file(world, "issuer_a", program, data).status_code == 201
    snapshot = world.snapshot()

    other_file = post_file(world, "issuer_a", program, another)
    other_name = post_file(world, "issuer_a", program, data, filename="renamed.csv")
    no_key = post_file(world, "issuer_a", program, data, key=None)

    assert_problem(other_file, 422, "idempotency_key_reused")
    assert_problem(other_name, 422, "idempotency_key_reused")
    assert_problem(no_key, 422, "validation_error")
    assert world.snapshot() == snapshot


def test_a_bad_file_is_422_csv_invalid_with_every_problem(world: World) -> None:
    program = world.programs["a"]
    resident = world.fresh_resident().id
    data = encode(
        [
            "resident_id,record_id,amount",
            f"{resident},B-1,99",
            "res_nosuchresident,B-2,",
            f"{resident},B-1,",
        ]
    )
    snapshot = world.snapshot()

    response = post_file(world, "issuer_a", program, data)

    body = assert_problem(response, 422, "csv_invalid")
    assert body["errors"] == [
        {"line": 2, "column": "amount", "reason": "this program awards 100 per event"},
        {"line": 3, "column": "resident_id", "reason": "no such resident"},
    ]
    assert body["error_count"] == 2
    assert body["detail"].startswith("the file has 2 problem(s); nothing was awarded.")
    assert world.snapshot() == snapshot
    # The refusal is the key's answer: the same request again gets it again.
    again = post_file(world, "issuer_a", program, data)
    assert assert_problem(again, 422, "csv_invalid")["errors"] == body["errors"]
    assert again.headers.get("Idempotent-Replayed") == "true"


def test_a_file_another_run_is_awarding_is_409_and_a_retry_with_the_key_goes_through(
    world: World,
) -> None:
    program = world.programs["a"]
    data = world_file(world, 6)
    first = Stalled(
        functools.partial(
            bulk.upload, world.engine, ACTOR, world.clock, program, department_id=None
        ),
        data,
        batch=2,
    )

    busy = post_file(world, "issuer_a", program, data)

    body = assert_problem(busy, 409, "upload_in_progress")
    (upload,) = world.read(lambda s: list(s.exec(select(bulk.AwardUpload))))
    assert (body["upload_id"], body["awarded"], body["to_award"]) == (upload.id, 2, 6)
    finished = first.finish()
    assert isinstance(finished, UploadResult), finished
    # Not stored as the key's answer: the retry runs, and finds the file awarded.
    retried = post_file(world, "issuer_a", program, data)
    assert retried.status_code == 200, retried.text
    assert retried.headers.get("Idempotent-Replayed") != "true"
    assert (retried.json()["id"], retried.json()["awarded"]) == (upload.id, 6)


def test_a_file_beyond_the_budget_is_409_budget_exhausted(world: World) -> None:
    program = world.fresh_program("a", budget={2026: 250})
    data = world_file(world, 3)
    snapshot = world.snapshot()

    response = post_file(world, "issuer_a", program, data)

    body = assert_problem(response, 409, "budget_exhausted")
    assert (body["remaining"], body["requested"]) == (250, 300)
    assert world.snapshot() == snapshot


def test_checking_a_file_writes_nothing_and_answers_json_or_csv(world: World) -> None:
    program = world.programs["a"]
    good = world_file(world, 3)
    bad = encode(["resident_id,record_id", "res_nosuchresident,C-1", "nonsense,C 2"])
    # Four rows, one bad: the report counts them all and plans the three good ones.
    mixed_rows = world_file(world, 4).decode("utf-8-sig").splitlines()
    mixed_rows[3] = "res_nosuchresident,W-3"
    mixed = encode(mixed_rows)
    snapshot = world.snapshot()

    ok = post_file(world, "issuer_a", program, good, key=None, path="award-uploads/check")
    problems = post_file(world, "issuer_a", program, bad, key=None, path="award-uploads/check")
    as_csv = post_file(
        world, "issuer_a", program, bad, key=None, path="award-uploads/check", format="csv"
    )
    clean_csv = post_file(
        world, "issuer_a", program, good, key=None, path="award-uploads/check", format="csv"
    )

    assert ok.status_code == 200, ok.text
    assert ok.json() == {
        "ok": True,
        "rows": 3,
        "to_award": 3,
        "replays": 0,
        "totals": {"2026": 300},
        "errors": [],
    }
    partly = post_file(world, "issuer_a", program, mixed, key=None, path="award-uploads/check")
    assert partly.status_code == 200, partly.text
    assert partly.json() == {
        "ok": False,
        "rows": 4,
        "to_award": 3,
        "replays": 0,
        "totals": {"2026": 300},
        "errors": [{"line": 4, "column": "resident_id", "reason": "no such resident"}],
    }
    assert problems.status_code == 200, problems.text
    assert problems.json() == {
        "ok": False,
        "rows": 2,
        "to_award": 0,
        "replays": 0,
        "totals": {},
        "errors": [
            {"line": 2, "column": "resident_id", "reason": "no such resident"},
            {
                "line": 3,
                "column": "record_id",
                "reason": "record_id is 1 to 128 printable ASCII characters, no spaces",
            },
            {"line": 3, "column": "resident_id", "reason": "not a resident id: 'nonsense'"},
        ],
    }
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert "upload-check.csv" in as_csv.headers["content-disposition"]
    assert as_csv.content.startswith(BOM)
    assert as_csv.content[3:].decode("utf-8").splitlines() == [
        "line,column,reason",
        "2,resident_id,no such resident",
        '3,record_id,"record_id is 1 to 128 printable ASCII characters, no spaces"',
        "3,resident_id,not a resident id: 'nonsense'",
    ]
    assert clean_csv.content == BOM + b"line,column,reason\r\n"
    assert world.snapshot() == snapshot


def test_another_department_can_neither_upload_to_nor_read_a_departments_uploads(
    world: World,
) -> None:
    program = world.programs["a"]
    data = world_file(world, 2)
    upload_id = post_file(world, "issuer_a", program, data).json()["id"]
    other = world_file(world, 2, start=20)
    snapshot = world.snapshot()

    upload = post_file(world, "issuer_b", program, other, key="b-key")
    replay = post_file(world, "issuer_b", program, data, key="b-key-2")
    check = post_file(world, "issuer_b", program, other, key=None, path="award-uploads/check")
    read = world.client.get(
        f"{ISS}/award-uploads/{upload_id}", headers=world.actors["issuer_b"].headers
    )
    unknown = world.client.get(
        f"{ISS}/award-uploads/upl_nosuchupload", headers=world.actors["issuer_a"].headers
    )

    for response in (upload, replay, check, read, unknown):
        assert_problem(response, 404, "not_found")
    assert world.snapshot() == snapshot
    # Department b's own program takes department b's file.
    own = post_file(world, "issuer_b", world.programs["b"], other, key="b-key-3")
    assert own.status_code == 201, own.text


def test_a_file_larger_than_the_json_body_limit_is_accepted_for_upload(world: World) -> None:
    program = world.programs["a"]
    residents = [world.fresh_resident().id for _ in range(10)]
    data = encode(
        ["resident_id,record_id"]
        + [f"{residents[n % 10]},LARGE-{n:05d}-{'x' * 8}" for n in range(5_000)]
    )
    assert len(data) > 3 * 65_536
    remaining = budget_remaining(world)

    checked = post_file(world, "issuer_a", program, data, key=None, path="award-uploads/check")
    uploaded = post_file(world, "issuer_a", program, data, key="large")
    as_json = world.client.post(
        f"{ISS}/programs/{program}/awards",
        headers={**world.actors["issuer_a"].headers, "Idempotency-Key": "json"},
        json={"resident_id": residents[0], "record_id": "J-1", "details": {"x": "y" * 70_000}},
    )

    assert checked.status_code == 200 and checked.json()["to_award"] == 5_000
    assert uploaded.status_code == 201, uploaded.text
    assert (uploaded.json()["awarded"], uploaded.json()["total"]) == (5_000, 500_000)
    assert budget_remaining(world) == remaining - 500_000
    assert_problem(as_json, 413, "request_too_large")
