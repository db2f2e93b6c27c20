"""The hard limits of bulk uploads, on SQLite and PostgreSQL: the row cap of a file
(``issuers.bulk.ROWS_MAX``), the byte limit of an uploaded body (``max_upload_bytes``, with
``max_body_bytes`` still the limit everywhere else), and the smaller limits a file meets on its
way in (the length of a CSV field, of a resident id and a record id, of the file's name).

Every refusal is checked twice: what the refusal says (its code, and that it names the limit)
and that nothing was written.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from api_world import World, assert_problem, world_settings
from conftest import FakeClock
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from test_bulk import Desk as BulkDesk
from test_bulk import desk as bulk_desk

from api.app import create_app
from issuers import bulk
from issuers.awards import RECORD_ID_MAX_LENGTH
from issuers.bulk import ROWS_MAX, RowError

#: 2026-05-10 12:00 in Tokyo (FY2026).
NOON = datetime(2026, 5, 10, 3, 0, tzinfo=UTC)
BUDGET = 10_000_000
BOM = b"\xef\xbb\xbf"
HEADER = "resident_id,record_id"
SIZE_REASON = f"a file holds at most {ROWS_MAX} rows"
ISS = "/api/v1/issuer"
#: The byte limits of the small app: an upload may be four times as large as any other body.
UPLOAD_LIMIT = 4096
BODY_LIMIT = 1024
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


def encode(lines: list[str]) -> bytes:
    """The lines as Excel saves "CSV UTF-8": a BOM and CRLF."""
    return BOM + "".join(line + "\r\n" for line in lines).encode("utf-8")


def rows_file(resident_id: str, count: int, *, prefix: str = "R") -> bytes:
    """``count`` rows for one resident (a fixed award without caps takes them all)."""
    return encode([HEADER, *(f"{resident_id},{prefix}-{n}" for n in range(1, count + 1))])


def padded(lines: list[str], size: int) -> bytes:
    """The lines as a file of exactly ``size`` bytes: a last line of spaces (a blank line,
    which the reader skips) makes up the difference."""
    data = encode(lines)
    spaces = size - len(data) - len(b"\r\n")
    assert spaces >= 0, (len(data), size)
    return data + b" " * spaces + b"\r\n"


@dataclass
class Desk(BulkDesk):
    """The bulk tests' desk with a fixed-award program (amount 1, no caps) funded with
    ``BUDGET`` for FY2026, and one resident."""

    resident: str = ""


def desk(engine: Engine, clock: FakeClock) -> Desk:
    base = bulk_desk(engine, clock, module="fixed_award", amount=1, budget=BUDGET)
    return Desk(base.earning, base.point_type, base.program, base.earning.resident())


# The row cap ------------------------------------------------------------------------------


def test_a_file_of_one_row_more_than_the_cap_is_refused_for_its_size(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    data = rows_file(d.resident, ROWS_MAX + 1)

    refusal = d.refusal(data)

    # Every row is fine but the last: it is the one too many (the header is line 1).
    assert refusal.errors == [RowError(ROWS_MAX + 2, "", SIZE_REASON)]
    assert refusal.context["errors"] == [
        {"line": ROWS_MAX + 2, "column": "", "reason": SIZE_REASON}
    ]
    assert refusal.context["error_count"] == 1
    assert refusal.message == (
        f"the file has 1 problem(s); nothing was awarded. First: line {ROWS_MAX + 2}, : "
        f"{SIZE_REASON}"
    )
    assert str(ROWS_MAX) in refusal.message
    assert d.earning.awards_of(d.program) == []
    assert d.remaining() == BUDGET


def test_a_file_of_exactly_the_cap_is_not_refused_for_its_size(
    engine: Engine, clock: FakeClock
) -> None:
    """Checked only (nothing written): awarding 200,000 rows would take minutes on
    PostgreSQL (tests/test_bulk.py uploads 100,000 rows on SQLite)."""
    d = desk(engine, clock)
    # Blank lines are no rows: they neither count towards the cap nor shift it.
    data = rows_file(d.resident, ROWS_MAX) + b"\r\n , \r\n\r\n"
    before = d.snapshot()

    plan, errors = d.check(data)

    assert errors == []
    assert plan is not None
    assert (plan.rows, len(plan.to_award), plan.replays) == (ROWS_MAX, ROWS_MAX, 0)
    assert plan.totals == {2026: ROWS_MAX}
    assert d.snapshot() == before


@SQLITE_ONLY
def test_a_file_over_the_cap_is_refused_for_its_size_alone_whatever_its_other_rows(
    engine: Engine, clock: FakeClock
) -> None:
    """Bad rows count towards the cap too; the file must be split, so its size is the one
    problem reported (row problems are for its parts, and cannot push this one out)."""
    d = desk(engine, clock)
    lines = [HEADER, "not-a-resident,BAD-1"]
    lines += [f"{d.resident},R-{n}" for n in range(1, ROWS_MAX + 1)]
    before = d.snapshot()

    plan, errors = d.check(encode(lines))

    assert plan is None
    assert errors == [RowError(ROWS_MAX + 2, "", SIZE_REASON)]
    assert d.snapshot() == before


# The HTTP API: a world whose app has small byte limits -----------------------------------


@pytest.fixture
def world_clock(clock: FakeClock) -> FakeClock:
    """The API tests' world (conftest's ``world``) opens at ``NOON``."""
    clock.now = NOON
    return clock


@dataclass
class Small:
    """The world's database behind a second app whose byte limits are small."""

    world: World
    app: FastAPI
    client: TestClient


@pytest.fixture
def small(world: World, database_url: str) -> Iterator[Small]:
    settings = world_settings(database_url).model_copy(
        update={"max_upload_bytes": UPLOAD_LIMIT, "max_body_bytes": BODY_LIMIT}
    )
    app = create_app(settings, engine=world.engine, clock=world.clock)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Small(world, app, client)


def file_headers(world: World, key: str | None = None) -> dict[str, str]:
    headers = {**world.actors["issuer_a"].headers, "Content-Type": "text/csv"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def budget_remaining(world: World) -> int:
    response = world.client.get(
        f"{ISS}/programs/{world.programs['a']}/budgets/2026",
        headers=world.actors["issuer_a"].headers,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["remaining"])


@SQLITE_ONLY
def test_the_api_refuses_a_file_over_the_row_cap_as_csv_invalid(world: World) -> None:
    """Once through the API (SQLite: the same check runs on both databases above)."""
    program = world.programs["a"]
    resident = world.fresh_resident().id
    data = rows_file(resident, ROWS_MAX + 1, prefix="API")
    # Refused for its rows, not its bytes.
    assert len(data) < world.app.state.services.settings.max_upload_bytes
    remaining = budget_remaining(world)
    snapshot = world.snapshot()

    response = world.client.post(
        f"{ISS}/programs/{program}/award-uploads",
        headers=file_headers(world, "too-many-rows"),
        content=data,
    )

    body = assert_problem(response, 422, "csv_invalid")
    assert body["errors"] == [{"line": ROWS_MAX + 2, "column": "", "reason": SIZE_REASON}]
    assert body["error_count"] == 1
    assert str(ROWS_MAX) in body["detail"]
    assert body["detail"].startswith("the file has 1 problem(s); nothing was awarded.")
    assert world.snapshot() == snapshot
    assert budget_remaining(world) == remaining


def world_rows(world: World, count: int, prefix: str) -> list[str]:
    resident = world.fresh_resident().id
    return [HEADER, *(f"{resident},{prefix}-{n:03d}" for n in range(count))]


def test_an_upload_over_max_upload_bytes_is_413_and_writes_nothing(small: Small) -> None:
    world, client = small.world, small.client
    program = world.programs["a"]
    lines = world_rows(world, 60, "BYTES")
    over, exact = padded(lines, UPLOAD_LIMIT + 1), padded(lines, UPLOAD_LIMIT)
    assert (len(over), len(exact)) == (UPLOAD_LIMIT + 1, UPLOAD_LIMIT)
    upload = f"{ISS}/programs/{program}/award-uploads"
    remaining = budget_remaining(world)
    snapshot = world.snapshot()

    with_length = client.post(upload, headers=file_headers(world, "over"), content=over)
    checked = client.post(f"{upload}/check", headers=file_headers(world), content=over)

    def chunks() -> Iterator[bytes]:
        yield over[:1000]
        yield over[1000:]

    chunked = client.post(upload, headers=file_headers(world, "over-chunked"), content=chunks())

    assert "content-length" in with_length.request.headers
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    for response in (with_length, checked, chunked):
        body = assert_problem(response, 413, "request_too_large")
        assert body["detail"] == f"the body is limited to {UPLOAD_LIMIT} bytes"
    assert world.snapshot() == snapshot
    assert budget_remaining(world) == remaining

    # The limit is inclusive: the same rows in a file one byte shorter are checked and awarded.
    ok = client.post(f"{upload}/check", headers=file_headers(world), content=exact)
    created = client.post(upload, headers=file_headers(world, "exact"), content=exact)

    assert ok.status_code == 200, ok.text
    assert (ok.json()["ok"], ok.json()["to_award"]) == (True, 60)
    assert created.status_code == 201, created.text
    assert (created.json()["rows"], created.json()["awarded"]) == (60, 60)
    assert budget_remaining(world) == remaining - 60 * 100


def test_a_chunked_upload_at_the_limit_is_accepted(small: Small) -> None:
    world, client = small.world, small.client
    upload = f"{ISS}/programs/{world.programs['a']}/award-uploads"
    exact = padded(world_rows(world, 40, "CHUNKED"), UPLOAD_LIMIT)

    def chunks() -> Iterator[bytes]:
        yield from (exact[start : start + 700] for start in range(0, len(exact), 700))

    created = client.post(upload, headers=file_headers(world, "chunked"), content=chunks())

    assert "content-length" not in created.request.headers
    assert created.status_code == 201, created.text
    assert created.json()["awarded"] == 40


async def asgi_post(
    app: FastAPI, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """POST ``chunks`` to the app as separate ASGI messages, without a Content-Length (the
    test client hands the app a streamed body as one message)."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
        for n, chunk in enumerate(chunks)
    ]
    done = anyio.Event()
    status = 0
    response_headers: dict[str, str] = {}
    body = bytearray()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(
                (key.decode("latin-1").lower(), value.decode("latin-1"))
                for key, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)  # type: ignore[arg-type]
    return status, response_headers, bytes(body)


def test_the_upload_limit_counts_every_message_of_a_streamed_body(small: Small) -> None:
    """Each message is under the limit; their sum is what counts."""
    world = small.world
    check = f"{ISS}/programs/{world.programs['a']}/award-uploads/check"
    lines = world_rows(world, 20, "STREAM")
    over, exact = padded(lines, UPLOAD_LIMIT + 1), padded(lines, UPLOAD_LIMIT)
    headers = file_headers(world)
    snapshot = world.snapshot()

    def pieces(data: bytes) -> list[bytes]:
        return [data[start : start + 512] for start in range(0, len(data), 512)]

    assert len(pieces(over)) == 9 and all(len(piece) <= 512 for piece in pieces(over))
    refused = anyio.run(asgi_post, small.app, check, headers, pieces(over))
    accepted = anyio.run(asgi_post, small.app, check, headers, pieces(exact))

    status, response_headers, body = refused
    assert status == 413, body
    assert response_headers["content-type"].startswith("application/problem+json")
    assert b'"code":"request_too_large"' in body.replace(b" ", b"")
    assert f"limited to {UPLOAD_LIMIT} bytes".encode() in body
    status, _, body = accepted
    assert status == 200, body
    assert b'"ok":true' in body.replace(b" ", b"")
    assert world.snapshot() == snapshot


def test_other_endpoints_keep_the_smaller_body_limit(small: Small) -> None:
    world, client = small.world, small.client
    program = world.programs["a"]
    resident = world.fresh_resident().id
    award = {"resident_id": resident, "record_id": "BODY-1", "details": {}}
    headers = {**world.actors["issuer_a"].headers, "Idempotency-Key": "body"}
    # A JSON body between the two limits: too large for an award, small enough for a file.
    large = {**award, "details": {"note": "x" * (2 * BODY_LIMIT)}}
    between = padded(world_rows(world, 5, "LIKE"), 2 * BODY_LIMIT)
    remaining = budget_remaining(world)
    snapshot = world.snapshot()

    too_large = client.post(f"{ISS}/programs/{program}/awards", headers=headers, json=large)
    # A path that merely starts like an upload path is no upload path.
    upload_like = client.post(
        f"{ISS}/award-uploads/upl_nosuchupload",
        headers=file_headers(world),
        content=between,
    )

    body = assert_problem(too_large, 413, "request_too_large")
    assert body["detail"] == f"the body is limited to {BODY_LIMIT} bytes"
    body = assert_problem(upload_like, 413, "request_too_large")
    assert body["detail"] == f"the body is limited to {BODY_LIMIT} bytes"
    assert world.snapshot() == snapshot
    small_award = client.post(f"{ISS}/programs/{program}/awards", headers=headers, json=award)
    assert small_award.status_code == 201, small_award.text
    assert budget_remaining(world) == remaining - 100


# The limits a file meets on its way in ----------------------------------------------------


def test_a_field_beyond_the_csv_readers_limit_breaks_the_file_there(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    limit = csv.field_size_limit()
    at_limit = encode([HEADER, f"{d.resident},R-1", f"{d.resident},{'x' * limit}"])
    over = encode(
        [HEADER, f"{d.resident},R-1", f"{d.resident},{'x' * (limit + 1)}", "nonsense,R 3"]
    )

    # At the reader's limit the field is read, and refused as a record id.
    plan, errors = d.check(at_limit)
    assert plan is not None and (plan.rows, len(plan.to_award)) == (2, 1)
    assert errors == [
        RowError(
            3,
            "record_id",
            f"record_id is 1 to {RECORD_ID_MAX_LENGTH} printable ASCII characters, no spaces",
        )
    ]
    # One character more and the file is broken at that line; nothing after it is read.
    refusal = d.refusal(over)
    assert refusal.errors == [
        RowError(
            3,
            "",
            f"the CSV is broken here (field larger than field limit ({limit})); a stray quote?",
        )
    ]


def test_resident_ids_and_record_ids_have_a_maximum_length(
    engine: Engine, clock: FakeClock
) -> None:
    d = desk(engine, clock)
    longest_resident = "res_" + "a" * 28
    too_long_resident = "res_" + "a" * 29
    longest_record = "L" * RECORD_ID_MAX_LENGTH
    too_long_record = "L" * (RECORD_ID_MAX_LENGTH + 1)
    data = encode(
        [
            HEADER,
            f"{longest_resident},R-1",  # a resident id, of no resident
            f"{too_long_resident},R-2",
            f"{d.resident},{longest_record}",  # fine
            f"{d.resident},{too_long_record}",
        ]
    )

    refusal = d.refusal(data)

    assert refusal.errors == [
        RowError(2, "resident_id", "no such resident"),
        RowError(3, "resident_id", f"not a resident id: {too_long_resident!r}"),
        RowError(
            5,
            "record_id",
            f"record_id is 1 to {RECORD_ID_MAX_LENGTH} printable ASCII characters, no spaces",
        ),
    ]
    good = d.upload(encode([HEADER, f"{d.resident},{longest_record}"]))
    assert good.upload.awarded == 1
    assert [a.record_id for a in d.earning.awards_of(d.program)] == [longest_record]


def test_a_long_filename_is_kept_to_200_characters(engine: Engine, clock: FakeClock) -> None:
    d = desk(engine, clock)
    name = "健診受診者一覧" * 40  # 280 characters, 840 bytes in UTF-8

    result = d.upload(rows_file(d.resident, 2), filename=name)

    assert result.upload.filename == name[:200]
    stored = d.earning.read(
        lambda s: bulk.get_upload(s, result.upload.id, department_id=None).filename
    )
    assert stored == name[:200]


def test_the_api_refuses_a_filename_over_200_characters_or_with_control_characters(
    world: World,
) -> None:
    program = world.programs["a"]
    lines = world_rows(world, 3, "NAME")
    upload = f"{ISS}/programs/{program}/award-uploads"
    snapshot = world.snapshot()

    refused = [
        world.client.post(
            upload,
            headers=file_headers(world, f"name-{n}"),
            content=encode(lines),
            params={"filename": name},
        )
        for n, name in enumerate(("名" * 201, "a\x07.csv", "line\nbreak.csv"))
    ]

    for response in refused:
        assert_problem(response, 422, "validation_error")
    assert world.snapshot() == snapshot
    name = "名" * 200
    created = world.client.post(
        upload,
        headers=file_headers(world, "name-ok"),
        content=encode(lines),
        params={"filename": name},
    )
    assert created.status_code == 201, created.text
    assert created.json()["filename"] == name
