"""Ledger exports: JSON Lines, CSV (UTF-8 and CP932) and hledger, and their re-verification
without the database (``points export``, ``points verify-export``)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ledger_helpers import Chart, fund, make_chart, transfer
from sqlalchemy.engine import Engine
from test_cli import invoke

from ledger import Ledger, Side
from ledger.export import ExportError, SealedEntry, reading, sealed_entries, verify_lines
from ledger.model import from_us
from points import exports
from points.accounts import AccountCode
from points.auth import Principal, Role
from points.calendar import TOKYO

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
FINANCE = Principal(Role.FINANCE, "stf_finance", "tok_1")


def build(ledger_: Ledger) -> tuple[Chart, Chart]:
    """Two point types' ledgers with the chart's codes, some of every kind of entry, sealed."""
    one = make_chart(ledger_, "pt")
    two = make_chart(ledger_, "eco")
    fund(ledger_, one, 1000)
    ledger_.post(transfer(one.wallet.id, one.merchant.id, 300, description="お買い物 髙橋商店 ①"))
    hold = ledger_.post(transfer(one.wallet.id, one.merchant.id, 50, pending=True))
    ledger_.post_pending(hold.id)
    other = ledger_.post(transfer(one.wallet.id, one.merchant.id, 20, pending=True))
    ledger_.void_pending(other.id)
    fund(ledger_, two, 700)
    ledger_.post(transfer(two.wallet.id, two.merchant.id, 70, metadata={"note": "😀", "n": 1}))
    ledger_.seal()
    return one, two


def head(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.exec_driver_sql("SELECT sequence FROM ledger_seal_head").scalar() or 0
        )


def export_bytes(engine: Engine, fmt: str, from_seq: int, to_seq: int) -> bytes:
    request = exports.ExportRequest(exports.ExportFormat(fmt), from_seq, to_seq)
    return b"".join(exports.stream_export(engine, request))


def jsonl(engine: Engine) -> list[str]:
    return export_bytes(engine, "jsonl", 1, head(engine)).decode("utf-8").splitlines()


def test_jsonl_round_trip_and_the_hashes_are_the_seals(engine: Engine) -> None:
    ledger_ = Ledger(engine)
    build(ledger_)
    lines = jsonl(engine)
    result = verify_lines(lines)
    assert result.ok, result
    assert result.entries == head(engine) == len(lines) - 2
    end = json.loads(lines[-1])
    assert end["entries"] == head(engine)
    # A part of the chain verifies on its own too.
    part = export_bytes(engine, "jsonl", 3, 5).decode("utf-8").splitlines()
    assert verify_lines(part).ok
    assert [json.loads(line)["sequence"] for line in part[1:-1]] == [3, 4, 5]


def test_batches_stream_the_same_entries(engine: Engine) -> None:
    build(Ledger(engine))
    with reading(engine) as connection:
        small = [item.hash for item in sealed_entries(connection, 1, head(engine), batch=2)]
        large = [item.hash for item in sealed_entries(connection, 1, head(engine))]
    assert small == large and len(small) == head(engine)


def altered(lines: list[str], how: str) -> tuple[list[str], int]:
    """``lines`` changed in one way, and the 1-based line that must be named."""
    changed = list(lines)
    if how == "amount":
        value = json.loads(changed[3])
        value["entry"][14][0][3] += 1
        value["entry"][14][1][3] += 1  # still balanced: only the hash can tell
        changed[3] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        return changed, 4
    if how == "deleted":
        del changed[3]
        return changed, 4
    changed[3], changed[4] = changed[4], changed[3]
    return changed, 4


@pytest.mark.parametrize("how", ["amount", "deleted", "reordered"])
def test_an_altered_jsonl_export_names_the_first_bad_line(engine: Engine, how: str) -> None:
    build(Ledger(engine))
    lines, bad_line = altered(jsonl(engine), how)
    result = verify_lines(lines)
    assert not result.ok
    assert result.line == bad_line, result


def test_a_truncated_or_unbalanced_export_is_refused(engine: Engine) -> None:
    build(Ledger(engine))
    lines = jsonl(engine)
    assert not verify_lines(lines[:-1]).ok
    assert verify_lines([*lines[:-2], lines[-1]]).line == len(lines) - 1
    value = json.loads(lines[2])
    value["entry"][14][0][3] += 1
    lines[2] = json.dumps(value, ensure_ascii=False)
    result = verify_lines(lines)
    assert result.line == 3 and not result.ok


def test_csv_round_trip_and_alterations(engine: Engine, tmp_path: Path) -> None:
    build(Ledger(engine))
    data = export_bytes(engine, "csv", 1, head(engine))
    assert data.startswith(b"\xef\xbb\xbf")
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    assert exports.verify_file(str(path)).ok
    text = data.decode("utf-8-sig")
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == list(exports.CSV_COLUMNS)
    names = {row[exports.CSV_COLUMNS.index("account")] for row in rows[2:-1]}
    assert "liabilities:points:residents" in names
    assert "お買い物 髙橋商店 ①" in text
    # Change one amount (line 6: the second entry's first posting).
    lines = text.split("\r\n")
    cells = lines[5].split(",")
    amount = exports.CSV_COLUMNS.index("amount")
    cells[amount] = str(int(cells[amount]) + 1)
    lines[5] = ",".join(cells)
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    result = exports.verify_file(str(path))
    assert not result.ok and result.line == 5, result
    # Delete a whole entry (lines 5 and 6).
    lines = text.split("\r\n")
    del lines[4:6]
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))
    result = exports.verify_file(str(path))
    assert not result.ok and result.line == 5, result


def test_cp932_reports_what_it_cannot_encode(engine: Engine) -> None:
    build(Ledger(engine))
    request = exports.ExportRequest(exports.ExportFormat.CSV_CP932, 1, head(engine))
    unencodable = exports.Unencodable()
    data = b"".join(exports.stream_export(engine, request, unencodable))
    text = data.decode("cp932")
    assert "髙橋商店" in text and "①" in text  # both are in CP932
    # The entry's metadata is on each of its two posting rows.
    assert [char for _, char in unencodable.found] == ["😀", "😀"]
    line = unencodable.found[0][0]
    assert "?" in text.split("\r\n")[line - 1]


def balances_from_hledger(path: Path) -> dict[tuple[str, str], int]:
    run = subprocess.run(
        ["hledger", "bal", "-f", str(path), "--flat", "-N", "-O", "csv", "--layout", "bare"],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[tuple[str, str], int] = {}
    for row in list(csv.reader(run.stdout.splitlines()))[1:]:
        account, symbol, amount = row[0], row[1], row[2]
        if amount and amount != "0":
            found[(account, symbol)] = int(amount)
    return found


@pytest.mark.skipif(
    shutil.which("hledger") is None and os.environ.get("POINTS_TEST_HLEDGER") != "required",
    reason="hledger is not installed (CI installs it and sets POINTS_TEST_HLEDGER=required)",
)
def test_hledger_journal_passes_strict_checks_and_is_the_trial_balance(
    engine: Engine, tmp_path: Path
) -> None:
    ledger_ = Ledger(engine)
    charts = build(ledger_)
    path = tmp_path / "ledger.journal"
    path.write_bytes(export_bytes(engine, "hledger", 1, head(engine)))
    text = path.read_text()
    assert "commodity 1000. PT" in text and "commodity 1000. ECO" in text
    assert "account liabilities:points:residents" in text
    assert "= " in text.split("balance assertions")[1]
    check = subprocess.run(
        ["hledger", "check", "-s", "-f", str(path)], capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr
    expected: dict[tuple[str, str], int] = {}
    for chart, symbol in zip(charts, ("PT", "ECO"), strict=True):
        for account, code in (
            (chart.source, 100),
            (chart.wallet, 300),
            (chart.merchant, 400),
        ):
            balance = ledger_.get_account(account.id)
            name = exports.account_name(code, account.owner_ref)
            signed = balance.debits_posted - balance.credits_posted
            if signed:
                expected[(name, symbol)] = expected.get((name, symbol), 0) + signed
    assert balances_from_hledger(path) == expected
    # A changed amount breaks the journal's balance assertions.
    broken = text.replace("  -300 PT", "  -301 PT").replace("  300 PT", "  301 PT", 1)
    assert broken != text
    path.write_text(broken)
    rerun = ["hledger", "check", "-s", "-f", str(path)]
    assert subprocess.run(rerun, capture_output=True, check=False).returncode != 0


def test_account_names_follow_the_chart() -> None:
    assert exports.account_name(AccountCode.RESIDENT_BUCKET, "res_123") == (
        "liabilities:points:residents"
    )
    assert exports.account_name(AccountCode.PROGRAM_BUDGET, "prg_1:FY2026") == (
        "expenses:program:prg_1:FY2026"
    )
    assert exports.account_name(AccountCode.MERCHANT_PAYABLE, "mer 1") == (
        "liabilities:merchant-payable:mer_1"
    )
    assert exports.commodity("pt") == "PT" and exports.commodity("pt2") == '"PT2"'


def test_range_errors(engine: Engine) -> None:
    ledger_ = Ledger(engine)
    build(ledger_)
    last = head(engine)
    with reading(engine) as connection:
        for start, end, code in (
            (0, 3, "export_range_invalid"),
            (4, 3, "export_range_reversed"),
            (1, last + 2, "export_range_unsealed"),
        ):
            with pytest.raises(ExportError) as caught:
                list(sealed_entries(connection, start, end))
            assert caught.value.code == code
    with pytest.raises(ExportError) as caught:
        exports.parse_format("xlsx")
    assert caught.value.code == "export_format_unknown"


# The commands ------------------------------------------------------------------------------


def audit_exports(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        return [
            {"actor": row[0], **json.loads(row[1])}
            for row in connection.exec_driver_sql(
                "SELECT actor_id, details FROM audit_event WHERE action = 'ledger.export' "
                "ORDER BY sequence"
            )
        ]


def test_cli_export_and_verify_export(engine: Engine, database_url: str, tmp_path: Path) -> None:
    ledger_ = Ledger(engine)
    chart, _ = build(ledger_)
    last = head(engine)
    for fmt in ("jsonl", "csv", "csv-cp932", "hledger"):
        out = tmp_path / f"x.{fmt}"
        result = invoke(
            database_url, "export", "--format", fmt, "--from-seq", "1", "--to-seq", str(last),
            "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        if fmt == "csv-cp932":
            assert "2 characters CP932 cannot hold were written as ?" in result.output
        if fmt in ("csv-cp932", "hledger"):
            direct = invoke(database_url, "verify-export", str(out))
            assert direct.exit_code == 1 and "JSONL twin" in direct.output
        target = out if fmt in ("jsonl", "csv") else out.with_name(out.name + ".jsonl")
        checked = invoke(database_url, "verify-export", str(target))
        assert checked.exit_code == 0, checked.output
        assert "export verified" in checked.output
    assert [row["format"] for row in audit_exports(engine)] == [
        "jsonl",
        "csv",
        "csv-cp932",
        "hledger",
    ]
    # An altered file: exit 1 and one line naming the line.
    path = tmp_path / "x.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    del lines[2]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    checked = invoke(database_url, "verify-export", str(path))
    assert checked.exit_code == 1
    assert checked.output.strip().splitlines() == ["Error: line 3: " + checked.output.split(
        "line 3: ", 1
    )[1].strip()]  # fmt: skip
    # Unsealed entries, a reversed range, an unknown format: exit 1, nothing written.
    fund(ledger_, chart, 5)
    for args, words in (
        (("--format", "csv", "--from-seq", "1", "--to-seq", str(last + 1)), "not sealed"),
        (("--format", "csv", "--from-seq", "3", "--to-seq", "2"), "reversed"),
        (("--format", "xlsx", "--from-seq", "1", "--to-seq", "2"), "not offered"),
        (("--format", "csv", "--from", "2026-12-01", "--to", "2099-12-31"), "not sealed yet"),
    ):
        out = tmp_path / "refused.csv"
        result = invoke(database_url, "export", *args, "--out", str(out))
        assert result.exit_code == 1, result.output
        assert words in result.output
        assert not out.exists()
    assert len(audit_exports(engine)) == 4
    ledger_.seal()
    out = tmp_path / "days.jsonl"
    result = invoke(
        database_url, "export", "--format", "jsonl", "--from", "2000-01-01", "--to",
        "2099-12-31", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"sequences 1..{last + 1}" in result.output
    assert audit_exports(engine)[-1]["from_seq"] == 1
    out = tmp_path / "ids.jsonl"
    result = invoke(
        database_url, "export", "--format", "jsonl", "--from-id", "2", "--to-id", "3",
        "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "sequences 2..3" in result.output
    refused = invoke(
        database_url, "export", "--format", "jsonl", "--from-id", "2", "--to-seq", "3",
        "--out", str(tmp_path / "mixed.jsonl"),
    )  # fmt: skip
    assert refused.exit_code == 1 and "give one range" in refused.output


def test_the_accounts_of_a_side(engine: Engine) -> None:
    """Side is stored as 1 debit, 2 credit: the CSV writes words, the check maps them back."""
    assert int(Side.DEBIT) == 1 and int(Side.CREDIT) == 2
    assert exports.EXPORT_FORMAT == "ledger-export/1"


def test_the_documented_checker_works(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The few lines of Python in docs/exports.md check an export, and catch a change."""
    build(Ledger(engine))
    text = (Path(__file__).parent.parent / "docs" / "exports.md").read_text(encoding="utf-8")
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    lines = jsonl(engine)
    (tmp_path / "ledger.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    exec(code, {})
    changed, _ = altered(lines, "amount")
    (tmp_path / "ledger.jsonl").write_text("\n".join(changed) + "\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="line 4: hash"):
        exec(code, {})


def _tricky_entries() -> list[SealedEntry]:
    """Entries whose text needs every kind of CSV quoting, absent values, a voided hold without
    postings, and instants around Tokyo's summer time of 1948-1951 and the epoch."""
    texts = [
        "",
        "plain",
        "a,b",
        'say "hi"',
        "line\nbreak",
        "cr\rhere",
        "crlf\r\nend",
        " leading and trailing ",
        "お買い物 髙橋商店 ①",
        "😀",
        '"',
        ",",
    ]
    instants = [
        0,
        -1,
        1,
        -(10**12) - 7,
        1_775_001_600_000_000,
        1_775_001_600_172_963,
        1_775_001_599_999_999,
        datetime(1949, 4, 2, 15, 0, tzinfo=UTC).timestamp() * 10**6,
        datetime(1949, 9, 10, 14, 30, 0, 5, tzinfo=UTC).timestamp() * 10**6,
        datetime(1950, 5, 6, 14, 59, 59, 999_999, tzinfo=UTC).timestamp() * 10**6,
        253_402_261_199_999_999,
    ]
    made = []
    for number, text in enumerate(texts * 2, start=1):
        instant = int(instants[number % len(instants)])
        optional = None if number % 2 else text
        postings = [[number * 2, number % 4 + 1, 1, number], [number * 2 + 1, 9, 2, number]]
        if number % 5 == 0:
            postings = []
        document = [
            "ledger-entry/1", number, number % 3 + 1, 3 if not postings else 0, text or "kind",
            text, json.dumps({"note": text}, ensure_ascii=False), instant, instant + 1,
            optional, optional, None if number % 3 else number, None if number % 4 else number,
            None if number % 5 else number, postings,
        ]  # fmt: skip
        made.append(SealedEntry(number, bytes([number]) * 32, bytes([number + 1]) * 32, document))
    return made


def test_csv_lines_write_what_csv_writer_writes() -> None:
    """``csv_lines`` (the export's fast writer) makes the very text ``csv.writer`` makes of
    ``csv_rows``, the rows as lists."""
    entries = _tricky_entries()
    accounts = {1: "assets:city-funding:x", 2: "a,b", 3: 'q"uote', 9: "liabilities:points:x"}
    names = exports.Names(accounts=accounts, ledgers={1: "pt", 2: "e,co", 3: 'p"t'})
    expected = "".join(exports._csv_line(row) for row in exports.csv_rows(entries, names, 1, 24))
    assert "".join(exports.csv_lines(entries, names, 1, 24)) == expected


def test_tokyo_times_are_isoformat() -> None:
    times = exports.TokyoTimes()
    for item in _tricky_entries():
        instant = item.document[7]
        for us in (instant, instant + 3_600_000_000, instant - 1):
            expected = from_us(us).astimezone(TOKYO).isoformat()
            assert times.iso(us) == expected, us


def test_cp932_names_the_line_past_a_chunk() -> None:
    """Pieces are encoded a chunk at a time; a character CP932 cannot hold is still named by
    its line, also after quoted line breaks and past the first chunk."""
    pieces = ["a,b\r\n"] * (exports.CHUNK_LINES + 5) + ['"x\r\ny",😀\r\n', "z,😀\r\n"]
    found = exports.Unencodable()
    data = b"".join(exports.encode_csv(pieces, cp932=True, unencodable=found))
    lines = data.decode("cp932").split("\r\n")
    assert [line for line, _ in found.found] == [exports.CHUNK_LINES + 7, exports.CHUNK_LINES + 8]
    assert all("?" in lines[line - 1] for line, _ in found.found)
