"""Reading an uploaded CSV file (``issuers.bulk.reading``): pure, so tested without a database,
on a program built in memory. What the database adds (residents, replays, caps) is
``tests/test_bulk.py``'s."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from issuers.bulk import reading
from issuers.bulk.reading import ROWS_MAX, UNKNOWN_ENCODING, decode, errors_csv, parse
from issuers.errors import CsvInvalid, RowError
from issuers.programs import Program

NOW = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
RESIDENT = "res_AAAAAAAAAAAAAAAA"


def program(module: str = "health_checkup", **fields: Any) -> Program:
    config = {"checkup_types": ["specific_health_checkup"]} if module == "health_checkup" else {}
    return Program(
        id="prg_reading",
        department_id="dep_reading",
        point_type_id="pty_reading",
        module=module,
        name_ja="特定健診",
        name_en="Health checkup",
        amount=500,
        valid_from=date(2026, 4, 1),
        status="active",
        config=json.dumps(config),
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )


def read(text: str, subject: Program | None = None) -> tuple[list[reading.Row], list[RowError]]:
    rows, errors, _data_rows = parse(text, subject or program())
    return rows, errors


# Encodings ----------------------------------------------------------------------------------


def test_utf8_with_or_without_a_bom_and_cp932_are_read() -> None:
    text = "resident_id,record_id,checkup_type\r\nres_狛江,R-1,specific_health_checkup\r\n"
    assert decode(b"\xef\xbb\xbf" + text.encode("utf-8")) == text
    assert decode(text.encode("utf-8")) == text
    assert decode(text.encode("cp932")) == text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty"),
        (b" \r\n\r\n", "the file is empty"),
        ("resident_id".encode("utf-16"), UNKNOWN_ENCODING),
        (b"\xff\xfe\xfd\x80\x81", UNKNOWN_ENCODING),
    ],
)
def test_a_file_that_is_not_text_we_read_is_refused_at_line_1(data: bytes, reason: str) -> None:
    with pytest.raises(CsvInvalid) as refused:
        decode(data)
    assert refused.value.errors == [RowError(1, "", reason)]


# The header ---------------------------------------------------------------------------------


def test_the_header_names_required_optional_and_the_modules_columns() -> None:
    rows, errors = read(
        "Resident_ID , record_id,occurred_on,amount,checkup_type\n"
        f"{RESIDENT},R-1,2026/5/1,500,specific_health_checkup\n"
    )
    assert errors == []
    (row,) = rows
    assert (row.line, row.resident_id, row.record_id, row.occurred_on, row.details) == (
        2,
        RESIDENT,
        "R-1",
        date(2026, 5, 1),
        {"checkup_type": "specific_health_checkup"},
    )


def test_a_bad_header_is_reported_and_no_row_is_read() -> None:
    rows, errors = read("record_id,colour,record_id\nR-1,red,R-2\n")
    columns = "resident_id, address_number, record_id, occurred_on, amount, checkup_type"
    assert rows == []
    assert sorted(errors, key=lambda e: e.column) == [
        RowError(1, "colour", f"unknown column 'colour'; columns: {columns}"),
        RowError(1, "record_id", "column 'record_id' appears twice"),
        RowError(
            1,
            "resident_id",
            f"missing column 'resident_id' or 'address_number'; columns: {columns}",
        ),
    ]


def test_residents_are_named_by_id_or_address_number_exactly_one_a_row() -> None:
    rows, errors = read(
        "record_id,address_number,resident_id,checkup_type\n"
        "R-1,0012345678,,specific_health_checkup\n"  # 2: by number (leading zeros kept)
        f"R-2,,{RESIDENT},specific_health_checkup\n"  # 3: by id
        f"R-3,0012345678,{RESIDENT},specific_health_checkup\n"  # 4: both
        "R-4,,,specific_health_checkup\n"  # 5: neither
        "R-5,12-34,,specific_health_checkup\n"  # 6: not a number
        "R-6,１２３,,specific_health_checkup\n"  # 7: full-width digits
        "R-7,123456789012345678901,,specific_health_checkup\n"  # 8: 21 digits
    )
    assert [(row.line, row.resident_id, row.address_number) for row in rows] == [
        (2, "", "0012345678"),
        (3, RESIDENT, None),
    ]
    assert errors == [
        RowError(4, "address_number", "give resident_id or address_number, not both"),
        RowError(5, "resident_id", "give resident_id or address_number"),
        RowError(6, "address_number", "not an address number (1 to 20 digits): '12-34'"),
        RowError(7, "address_number", "not an address number (1 to 20 digits): '１２３'"),
        RowError(
            8,
            "address_number",
            "not an address number (1 to 20 digits): '123456789012345678901'",
        ),
    ]


@pytest.mark.parametrize("column", ["resident_id", "address_number"])
def test_a_header_with_one_of_the_resident_columns_reports_it_blank(column: str) -> None:
    rows, errors = read(f"{column},record_id\n,R-1\n", program("fixed_award"))
    assert rows == []
    reasons = {
        "resident_id": "not a resident id: ''",
        "address_number": "not an address number (1 to 20 digits): ''",
    }
    assert errors == [RowError(2, column, reasons[column])]


def test_a_file_of_blank_lines_has_no_header() -> None:
    assert read("\n,,\n \n") == ([], [RowError(1, "", "the file has no header row")])


# Rows ---------------------------------------------------------------------------------------


def test_every_problem_of_a_row_is_reported_with_its_line_and_column() -> None:
    rows, errors = read(
        "resident_id,record_id,occurred_on,amount,checkup_type\n"
        f"{RESIDENT},R-1,,,specific_health_checkup\n"  # 2: fine
        "\n"  # 3: blank, skipped
        "someone,R 2,2026-02-30,abc,specific_health_checkup\n"  # 4
        f"{RESIDENT},R-1,,,specific_health_checkup\n"  # 5: the record id of line 2
        f"{RESIDENT},R-3,,100,specific_health_checkup\n"  # 6: not the program's amount
        f"{RESIDENT},R-4,,,\n"  # 7: no checkup type
        f"{RESIDENT},R-5\n"  # 8: too few fields
    )
    assert [row.line for row in rows] == [2]
    assert errors == [
        RowError(4, "resident_id", "not a resident id: 'someone'"),
        RowError(4, "record_id", "record_id is 1 to 128 printable ASCII characters, no spaces"),
        RowError(4, "occurred_on", "not a date (YYYY-MM-DD): '2026-02-30'"),
        RowError(4, "amount", "not a positive integer: 'abc'"),
        RowError(5, "record_id", "the same record_id is on line 2"),
        RowError(6, "amount", "this program awards 500 per event"),
        RowError(7, "checkup_type", "details.checkup_type: Field required"),
        RowError(8, "", "2 fields where the header has 5"),
    ]


def test_a_stray_quote_is_reported_where_the_broken_row_starts() -> None:
    text = (
        f"resident_id,record_id,checkup_type\n{RESIDENT},R-1,specific_health_checkup\n"
        f'{RESIDENT},"R-2,specific_health_checkup\n'
    )
    rows, errors = read(text + f"{RESIDENT},R-3,specific_health_checkup\n" * 3)
    assert [row.line for row in rows] == [2]
    assert errors == [
        RowError(
            3, "", "2 fields where the header has 3 (the row runs on to line 6: a stray quote?)"
        )
    ]


def test_a_file_over_the_row_cap_is_refused_for_its_size_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reading, "ROWS_MAX", 3)
    text = "resident_id,record_id\n" + "".join(f"bad,R {n}\n" for n in range(4))
    assert read(text, program("fixed_award")) == (
        [],
        [RowError(5, "", "a file holds at most 3 rows")],
    )
    assert ROWS_MAX == 200_000  # the real cap, untouched by the patch above


def test_the_report_as_csv_keeps_a_formula_in_a_reason_as_text() -> None:
    report = errors_csv([RowError(2, "record_id", "=HYPERLINK(1)")]).decode("utf-8-sig")
    assert report.splitlines() == ["line,column,reason", "2,record_id,'=HYPERLINK(1)"]


# A property ---------------------------------------------------------------------------------

RECORD_IDS = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='",'),
    min_size=1,
    max_size=20,
)


@given(st.lists(RECORD_IDS, min_size=1, max_size=30, unique=True), st.sampled_from(["\n", "\r\n"]))
def test_good_rows_are_read_back_as_written(record_ids: list[str], newline: str) -> None:
    text = newline.join(["resident_id,record_id", *(f"{RESIDENT},{r}" for r in record_ids)])
    rows, errors = read(text + newline, program("fixed_award"))
    assert errors == []
    assert [(row.line, row.record_id) for row in rows] == [
        (line, record_id) for line, record_id in enumerate(record_ids, start=2)
    ]


# The samples the README points at -------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "module", "config"),
    [
        (
            "health_checkup_awards.csv",
            "health_checkup",
            {"checkup_types": ["specific_health_checkup", "cancer_screening"]},
        ),
        ("volunteering_awards.csv", "volunteering", {}),
        (
            "health_checkup_awards_by_address_number.csv",
            "health_checkup",
            {"checkup_types": ["specific_health_checkup", "cancer_screening"]},
        ),
    ],
)
def test_the_documented_sample_files_read_without_a_problem(
    sample: str, module: str, config: dict[str, Any]
) -> None:
    data = (Path(__file__).resolve().parent.parent / "docs" / "samples" / sample).read_bytes()
    subject = program(module)
    subject.config = json.dumps(config)
    rows, errors, data_rows = parse(decode(data), subject)
    assert data_rows == len(rows)
    assert errors == []
    assert len(rows) == data.count(b"\n") - 1 >= 2
    assert all(row.record_id for row in rows)
    # Each row names its resident one way: by id, or by address number (found by the check).
    assert all(
        row.resident_id.startswith("res_") != (row.address_number is not None) for row in rows
    )
    if "address_number" in sample:
        assert all(row.address_number and row.address_number.isdigit() for row in rows)
