"""``GET /api/v1/finance/exports``: finance and admins stream ledger exports; each is audited;
bad input is problem+json with a stable code and writes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from api_world import World, assert_problem, open_world
from sqlalchemy.engine import Engine

from ledger import Ledger
from ledger.export import verify_lines
from points import exports
from points.calendar import TOKYO

URL = "/api/v1/finance/exports"


@pytest.fixture
def world(engine: Engine, clock: object, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url) as built:  # type: ignore[arg-type]
        Ledger(built.engine).seal()
        yield built


def head(world: World) -> int:
    with world.engine.connect() as connection:
        return int(connection.exec_driver_sql("SELECT sequence FROM ledger_seal_head").scalar_one())


def get(world: World, query: str, who: str = "finance") -> object:
    return world.client.get(f"{URL}?{query}", headers=world.actors[who].headers)


def test_every_format_for_finance_and_admin_audited(world: World, tmp_path: Path) -> None:
    last = head(world)
    assert last >= 2
    for who in ("finance", "admin"):
        for fmt in exports.ExportFormat:
            before = world.audit_count()
            response = world.client.get(
                f"{URL}?format={fmt.value}&from_seq=1&to_seq={last}",
                headers=world.actors[who].headers,
            )
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith(
                exports.MEDIA_TYPES[fmt].split(";")[0]
            )
            assert world.audit_count() == before + 1
            audit = world.last_audit()
            assert audit["action"] == "ledger.export"
            assert audit["actor_id"] == world.actors[who].id
            assert audit["object_id"] == f"seq:1-{last}"
            if fmt is exports.ExportFormat.JSONL:
                assert verify_lines(response.text.splitlines()).ok
            if fmt is exports.ExportFormat.CSV:
                path = tmp_path / "api.csv"
                path.write_bytes(response.content)
                assert exports.verify_file(str(path)).ok
            if fmt is exports.ExportFormat.CSV_CP932:
                assert response.headers["x-unencodable-count"] == "0"
                response.content.decode("cp932")
            if fmt is exports.ExportFormat.HLEDGER and (
                shutil.which("hledger") or os.environ.get("POINTS_TEST_HLEDGER") == "required"
            ):
                path = tmp_path / "api.journal"
                path.write_bytes(response.content)
                check = subprocess.run(
                    ["hledger", "check", "-s", "-f", str(path)], capture_output=True, check=False
                )
                assert check.returncode == 0, check.stderr
                assert "liabilities:points:residents" in response.text
                assert "expenses:program:" in response.text


def test_the_resident_data_is_not_in_an_export(world: World) -> None:
    response = get(world, f"format=csv&from_seq=1&to_seq={head(world)}")
    assert world.resident.id not in response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("format=xlsx&from_seq=1&to_seq=1", 422, "export_format_unknown"),
        ("format=csv&from_seq=2&to_seq=1", 422, "export_range_reversed"),
        ("format=csv&from_seq=1&to_seq=999999", 409, "export_range_unsealed"),
        ("format=csv&from_seq=0&to_seq=1", 422, "validation_error"),
        ("format=csv&from_seq=x&to_seq=1", 422, "validation_error"),
        ("format=csv&from_seq=1", 422, "export_range_invalid"),
        ("format=csv", 422, "export_range_invalid"),
        ("format=csv&from_seq=1&to_seq=1&from_id=1&to_id=1", 422, "export_range_invalid"),
        ("format=csv&from=2026-04-02&to=2026-04-01", 422, "export_range_reversed"),
        ("format=csv&from=2026-02-30&to=2026-04-01", 422, "export_range_invalid"),
        ("format=csv&from=2026/04/01&to=2026-04-01", 422, "validation_error"),
        ("format=csv&from=2020-01-01&to=2020-01-31", 422, "export_range_empty"),
        ("format=csv&from_id=5&to_id=1", 422, "export_range_reversed"),
        ("format=csv&from_id=900000&to_id=900001", 422, "export_range_empty"),
        ("from_seq=1&to_seq=1", 422, "validation_error"),
        ("format=csv&from_seq=1&to_seq=1&extra=1", 422, "validation_error"),
        ("format=csv&from_seq=1&from_seq=2&to_seq=1", 422, "validation_error"),
        ("format=csv&from_seq=1.0&to_seq=1", 422, "validation_error"),
    ],
)
def test_bad_input_is_a_problem_and_writes_nothing(
    world: World, query: str, status: int, code: str | None
) -> None:
    before = world.snapshot()
    response = get(world, query)
    body = assert_problem(response, status, code)
    if code == "export_range_unsealed":
        assert "not sealed" in body["detail"]
    assert world.snapshot() == before


def test_days_and_entry_ids_are_widened_to_the_seal_range(world: World) -> None:
    last = head(world)
    day = world.now().astimezone(TOKYO).date().isoformat()
    by_day = get(world, f"format=jsonl&from={day}&to={day}")
    assert by_day.status_code == 200, by_day.text  # type: ignore[attr-defined]
    headers = by_day.headers  # type: ignore[attr-defined]
    assert (headers["x-export-from-seq"], headers["x-export-to-seq"]) == ("1", str(last))
    assert f'filename="ledger-1-{last}.jsonl"' in headers["content-disposition"]
    assert verify_lines(by_day.text.splitlines()).ok  # type: ignore[attr-defined]
    assert world.last_audit()["object_id"] == f"seq:1-{last}"
    by_id = get(world, f"format=jsonl&from_id={world.entry_id}&to_id={world.entry_id}")
    assert by_id.status_code == 200, by_id.text  # type: ignore[attr-defined]
    seq = by_id.headers["x-export-from-seq"]  # type: ignore[attr-defined]
    assert by_id.headers["x-export-to-seq"] == seq  # type: ignore[attr-defined]
    assert f'"entry":["ledger-entry/1",{world.entry_id},' in by_id.text  # type: ignore[attr-defined]


def test_others_may_not_export(world: World) -> None:
    for who in ("resident", "counter"):
        assert_problem(get(world, "format=csv&from_seq=1&to_seq=1", who), 403)
    assert_problem(world.client.get(f"{URL}?format=csv&from_seq=1&to_seq=1"), 401)


def test_cp932_names_what_it_cannot_hold(world: World) -> None:
    ledger_ = Ledger(world.engine)
    from ledger_helpers import make_chart, transfer

    chart = make_chart(ledger_, f"x{int(datetime.now().timestamp()) % 1000}")
    ledger_.post(transfer(chart.source.id, chart.wallet.id, 5, description="寄付 😀"))
    ledger_.seal()
    last = head(world)
    response = get(world, f"format=csv-cp932&from_seq={last}&to_seq={last}")
    assert response.status_code == 200  # type: ignore[attr-defined]
    assert response.headers["x-unencodable-count"] == "2"  # type: ignore[attr-defined]
    assert "U+1F600" in response.headers["x-unencodable-characters"]  # type: ignore[attr-defined]
