"""The shop's live payment events (server-sent events) against a real ``points serve``, on SQLite
and PostgreSQL: the test client does not stream, so these tests talk HTTP to a server process.

One server per backend for the module, on a database from conftest's migrated templates, seeded
through the services before it starts (an admin, a resident with points: ``api_world``'s
principals); each test opens shops of its own through the server's admin API (a merchant, its
settings, a till with its token and printed store QR), so that no test sees another's events.
The server's streams last ``STREAM_SECONDS`` (``POINTS_EVENT_STREAM_SECONDS``) instead of 55, so
that waiting for one to end keeps the run short; at the end the server is stopped with SIGTERM
and must have logged no error.

The client reads the stream the way a device with a bearer token does (``fetch()``, since an
``EventSource`` cannot send the header): ``httpx`` streaming, the event stream parsed by hand
(``messages``) so that what the server sends is checked, not what a library makes of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from api_world import POINT_TYPE_CODE, Actor, _populate, _program, assert_problem
from conftest import BACKENDS, new_database_url
from payment_helpers import Shop, key
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session
from test_job_schedules import launched, points_env, stop

import api
import ledger
from issuers import awards
from ledger.service import system_clock
from points import access, pointtypes
from points.auth import Role
from points.calendar import fiscal_year, tokyo_date
from points.pointtypes import NewPointType
from points.settings import Settings
from points.uow import unit_of_work

#: How long the server's streams last (POINTS_EVENT_STREAM_SECONDS): long enough for a test to
#: pay while a stream is open (a payment and its event take well under a second), short enough
#: to wait for one to end.
STREAM_SECONDS = 3
#: Nothing here should take this long; a stream still open after it is a failure, not a hang.
GUARD_SECONDS = 30
STREAM = "/api/v1/merchant/payment-events/stream"
POLL = "/api/v1/merchant/payment-events"
RESIDENT_POINTS = 1_000_000
#: The checkout whose code these tests import; the server runs it too.
CHECKOUT = Path(api.__file__).resolve().parents[1]


# The server -----------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    engine: Engine
    client: httpx.Client
    admin: Actor
    resident: Actor

    def open_shop(self, **settings: Any) -> Shop:
        """A new merchant accepting the point type, with ``settings`` and a till, through the
        admin API of the running server (which signs the store QR with its own key)."""
        admin = self.admin.headers
        made = self.client.post(
            "/api/v1/admin/merchants",
            json={"name_ja": "配信テスト店", "name_en": "Stream shop", "category": "cafe"},
            headers=admin,
        )
        assert made.status_code == 201, made.text
        merchant_id = made.json()["id"]
        changed = self.client.patch(
            f"/api/v1/admin/merchants/{merchant_id}/settings",
            json={"accepted_point_types": [POINT_TYPE_CODE], "reason": "stream test", **settings},
            headers=admin,
        )
        assert changed.status_code == 200, changed.text
        till = self.client.post(
            f"/api/v1/admin/merchants/{merchant_id}/tills", json={"name": "レジ1"}, headers=admin
        )
        assert till.status_code == 201, till.text
        body = till.json()
        actor = Actor(
            "till", Role.MERCHANT, body["staff_id"], body["token"], "", merchant_id=merchant_id
        )
        return Shop(merchant_id, actor, body["id"], body["store_qr"])

    # The three ways to pay, as the till and the resident's wallet call them ------------------

    def pay_qr(self, shop: Shop, amount: int) -> dict[str, Any]:
        """The till shows a payment QR; the resident pays it: posted."""
        request = self.client.post(
            "/api/v1/merchant/payment-requests", json={"amount": amount}, headers=shop.headers
        )
        assert request.status_code == 201, request.text
        return self.pay(request.json()["token"])

    def pay(self, token: str, **fields: Any) -> dict[str, Any]:
        paid = self.client.post(
            "/api/v1/me/payments",
            json={"token": token, **fields},
            headers={**self.resident.headers, **key("pay")},
        )
        assert paid.status_code == 201, paid.text
        return dict(paid.json())

    def pay_store(self, shop: Shop, amount: int) -> dict[str, Any]:
        """The resident scans the till's printed QR and types the amount: pending."""
        return self.pay(shop.store_qr, amount=amount)

    def pay_by_code(self, shop: Shop, amount: int) -> dict[str, Any]:
        code = self.client.post("/api/v1/me/pay-codes", json={}, headers=self.resident.headers)
        assert code.status_code == 201, code.text
        paid = self.client.post(
            "/api/v1/merchant/pay-code-payments",
            json={"token": code.json()["token"], "amount": amount},
            headers={**shop.headers, **key("code")},
        )
        assert paid.status_code == 201, paid.text
        return dict(paid.json())

    def resolve(self, shop: Shop, payment_id: str, act: str) -> dict[str, Any]:
        """``confirm`` or ``decline`` a pending payment, as the shop."""
        done = self.client.post(
            f"/api/v1/merchant/payments/{payment_id}/{act}",
            headers={**shop.headers, **key(act)},
        )
        assert done.status_code == 200, done.text
        return dict(done.json())

    def refund(self, shop: Shop, payment_id: str, amount: int) -> dict[str, Any]:
        done = self.client.post(
            f"/api/v1/merchant/payments/{payment_id}/refunds",
            json={"amount": amount},
            headers={**shop.headers, **key("refund")},
        )
        assert done.status_code == 201, done.text
        return dict(done.json())

    def poll(self, shop: Shop, after: int | None) -> dict[str, Any]:
        params = {"after": after} if after is not None else {}
        polled = self.client.get(POLL, params=params, headers=shop.headers)
        assert polled.status_code == 200, polled.text
        return dict(polled.json())


def seed(engine: Engine) -> tuple[Actor, Actor]:
    """``api_world``'s principals (an admin, merchants and their staff, residents with tokens),
    the point type, and RESIDENT_POINTS awarded to the verified resident, today (the server
    runs on the real clock). Returns the admin and the resident."""
    now = system_clock()
    built = unit_of_work(engine, lambda session: _populate(session, now))
    resident: Actor = built["actors"]["resident"]

    def earn(session: Session) -> None:
        point_type = pointtypes.create_point_type(
            session,
            access.SYSTEM,
            now,
            NewPointType(code=POINT_TYPE_CODE, name_ja="狛江ポイント", name_en="Komae points"),
        )
        program = _program(
            session,
            now,
            built["departments"]["a"],
            point_type.id,
            activate=True,
            budget={fiscal_year(tokyo_date(now)): 10 * RESIDENT_POINTS},
            amount=RESIDENT_POINTS,
        )
        awards.award(
            session,
            access.SYSTEM,
            now,
            awards.AwardRequest(program, resident.id, "stream-seed", {}),
            department_id=None,
        )

    unit_of_work(engine, earn)
    return built["actors"]["admin"], resident


@contextmanager
def points_serve(url: str, tmp_path: Path, **settings: str) -> Iterator[subprocess.Popen[bytes]]:
    """``points serve`` on ``url`` (already migrated and seeded), running this checkout's code,
    until its readiness endpoint answers; its output goes to ``serve.out`` and ``serve.err``,
    where ``test_job_schedules.stop`` reads it. Killed afterwards if still running. Its ``port``
    attribute is where it listens."""
    env = points_env(url, **settings)
    # The code under test, not whatever checkout the ``points`` command was installed from.
    env["PYTHONPATH"] = os.pathsep.join(
        [str(CHECKOUT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    with launched(env, tmp_path, ready="/readyz") as process:
        yield process


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("stream")
    urls = new_database_url(str(request.param), request, tmp_path)
    url = next(urls)
    engine = ledger.create_engine(url)
    try:
        admin, resident = seed(engine)
        with (
            points_serve(
                url,
                tmp_path,
                key_dir=str(tmp_path / "keys"),
                jobs_enabled="false",
                event_stream_seconds=str(STREAM_SECONDS),
            ) as process,
            httpx.Client(
                base_url=f"http://127.0.0.1:{process.port}",  # type: ignore[attr-defined]
                timeout=httpx.Timeout(10.0),
            ) as client,
        ):
            yield Server(url, engine, client, admin, resident)
            client.close()
            # Every stream the tests opened is over: a graceful stop, nothing logged as an error.
            status, _lines = stop(process, tmp_path)
            assert status == 0
    finally:
        engine.dispose()
        next(urls, None)  # past its yield: the database is dropped


# Reading the event stream ---------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One message of the stream: an event (``event``, ``id``, ``data``) or only comments."""

    event: str | None = None
    id: str | None = None
    data: str | None = None
    comments: tuple[str, ...] = ()

    @property
    def json(self) -> dict[str, Any]:
        assert self.data is not None, self
        return dict(json.loads(self.data))


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of a text/event-stream body as the HTML standard parses it (fields up to a
    blank line), until the server ends the stream; fails rather than hangs past GUARD_SECONDS."""
    deadline = time.monotonic() + GUARD_SECONDS
    fields: dict[str, list[str]] = {}
    comments: list[str] = []
    for line in response.iter_lines():
        assert time.monotonic() < deadline, "the stream did not end"
        if line == "":
            if fields or comments:
                yield Message(
                    event="\n".join(fields["event"]) if "event" in fields else None,
                    id=fields["id"][-1] if "id" in fields else None,
                    data="\n".join(fields["data"]) if "data" in fields else None,
                    comments=tuple(comments),
                )
            fields, comments = {}, []
        elif line.startswith(":"):
            comments.append(line[1:].removeprefix(" "))
        else:
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
    assert not fields, f"the stream ended inside a message: {fields}"


@contextmanager
def stream(
    server: Server, headers: dict[str, str], **params: int
) -> Iterator[tuple[httpx.Response, Iterator[Message]]]:
    """The stream opened with these headers (the caller's token, a Last-Event-ID) and query
    parameters; the response (checked to be an event stream) and its messages."""
    with server.client.stream("GET", STREAM, headers=headers, params=params) as response:
        assert response.status_code == 200, response.read()
        yield response, messages(response)


def next_events(read: Iterator[Message], count: int) -> list[Message]:
    """The next ``count`` payment events of an open stream; fails if the stream ends first."""
    found: list[Message] = []
    for message in read:
        if message.event is None:
            continue
        assert message.event == "payment", message
        found.append(message)
        if len(found) == count:
            return found
    raise AssertionError(f"the stream ended after {len(found)} of {count} events: {found}")


def the_rest(read: Iterator[Message]) -> list[Message]:
    """Every payment event until the stream ends by itself."""
    return [message for message in read if message.event is not None]


def started_at(read: Iterator[Message]) -> int:
    """A new listener's first message: an id-only message naming the cursor it starts from
    (it sets the client's last event id without an event)."""
    first = next(read)
    assert first.event is None and first.data is None and first.id is not None, first
    return int(first.id)


def summary(events: list[Message]) -> list[tuple[str, str, str]]:
    """(kind, payment id, payment state) of each event, checking that its id: is its data's."""
    for event in events:
        assert event.id == str(event.json["id"]), event
    return [(e.json["kind"], e.json["payment"]["id"], e.json["payment"]["state"]) for e in events]


# The tests --------------------------------------------------------------------------------------


def test_a_payment_made_while_the_stream_is_open_arrives(server: Server) -> None:
    shop = server.open_shop()
    before = server.pay_qr(shop, 100)
    with stream(server, shop.headers) as (response, read):
        assert response.headers["content-type"].split(";")[0] == "text/event-stream"
        assert response.headers["cache-control"] in ("no-store", "no-cache")
        # A new listener starts at the shop's newest event: the payment before is not replayed.
        cursor = started_at(read)
        assert cursor == server.poll(shop, 0)["cursor"] > 0
        paid = server.pay_qr(shop, 300)
        [event] = next_events(read, 1)

    body = event.json
    assert int(event.id or "") == body["id"] > cursor
    assert body["kind"] == "posted"
    assert body["payment"]["id"] == paid["id"] != before["id"]
    assert (body["payment"]["amount"], body["payment"]["state"]) == (300, "posted")
    assert body["payment"]["flow"] == "payment_qr"
    assert body["payment"]["customer"].startswith("cus_")
    assert "resident_id" not in body["payment"]


def test_a_store_qr_payment_is_created_then_posted_when_confirmed(server: Server) -> None:
    shop = server.open_shop()
    with stream(server, shop.headers) as (_response, read):
        started_at(read)
        held = server.pay_store(shop, 250)
        assert held["state"] == "pending"
        [created] = next_events(read, 1)
        server.resolve(shop, held["id"], "confirm")
        [posted] = next_events(read, 1)

    assert summary([created, posted]) == [
        ("created", held["id"], "pending"),
        ("posted", held["id"], "posted"),
    ]
    assert created.json["payment"]["confirm_by"] is not None
    assert int(posted.id or "") > int(created.id or "")


def test_the_stream_ends_by_itself_and_resumes_after_the_last_event_id(server: Server) -> None:
    shop = server.open_shop()
    first = server.pay_qr(shop, 10)
    # The whole stream, until the server ends it: the one event, once.
    with stream(server, shop.headers, after=0) as (_response, read):
        seen = the_rest(read)
    assert [(kind, paid) for kind, paid, _ in summary(seen)] == [("posted", first["id"])]
    last_id = seen[-1].id
    assert last_id is not None

    # Paid while the device was away; it reconnects to the same address (after=0 still in it)
    # with the id of the last event it saw, as a browser does.
    missed = [server.pay_qr(shop, 20), server.pay_store(shop, 30)]
    with stream(server, {**shop.headers, "Last-Event-ID": last_id}, after=0) as (_response, read):
        resumed = the_rest(read)
    assert [(kind, paid) for kind, paid, _ in summary(resumed)] == [
        ("posted", missed[0]["id"]),
        ("created", missed[1]["id"]),
    ]
    assert int(resumed[0].id or "") > int(last_id)

    # From an id in the middle: everything after it, nothing before, none twice.
    middle = resumed[0].id or ""
    with stream(server, {**shop.headers, "Last-Event-ID": middle}) as (_response, read):
        [again] = next_events(read, 1)
    assert (again.id, again.json["payment"]["id"]) == (resumed[1].id, missed[1]["id"])


def test_a_client_that_saw_no_event_resumes_where_its_stream_started(server: Server) -> None:
    """An EventSource (and a fetch() client doing what the API documents) reconnects with the
    last ``id:`` it received, and with no Last-Event-ID if it received none. A stream that
    carried no event must still leave it an id to resume from."""
    shop = server.open_shop()
    server.pay_qr(shop, 10)
    with stream(server, shop.headers) as (_response, read):
        seen = list(read)
    assert not [message for message in seen if message.event is not None]
    last_id = next((message.id for message in reversed(seen) if message.id is not None), None)

    paid = server.pay_qr(shop, 20)  # while the client waits to reconnect
    resume = {"Last-Event-ID": last_id} if last_id is not None else {}
    with stream(server, {**shop.headers, **resume}) as (_response, read):
        [event] = next_events(read, 1)
    assert event.json["payment"]["id"] == paid["id"]


def test_the_stream_refuses_callers_without_a_shop(server: Server) -> None:
    shop = server.open_shop()
    server.pay_qr(shop, 10)
    anonymous = server.client.get(STREAM)
    assert_problem(anonymous, 401)
    # A token never goes in a URL: one there authenticates nothing.
    in_url = server.client.get(STREAM, params={"access_token": shop.till.token, "after": 0})
    assert_problem(in_url, 401)
    wrong = server.client.get(STREAM, headers={"Authorization": "Bearer not-a-token"})
    assert_problem(wrong, 401)
    resident = server.client.get(STREAM, headers=server.resident.headers)
    assert_problem(resident, 403)
    admin = server.client.get(STREAM, headers=server.admin.headers)
    assert_problem(admin, 403)
    bad_id = server.client.get(STREAM, headers={**shop.headers, "Last-Event-ID": "1; DROP"})
    assert_problem(bad_id, 422)


def test_a_shop_never_sees_another_shops_payments(server: Server) -> None:
    a, b = server.open_shop(), server.open_shop()
    with (
        stream(server, a.headers) as (_a_response, a_read),
        stream(server, b.headers) as (_b_response, b_read),
    ):
        started_at(a_read)
        started_at(b_read)
        paid_a = [server.pay_qr(a, 11)]
        paid_b = [server.pay_qr(b, 21), server.pay_store(b, 22)]
        paid_a.append(server.pay_store(a, 12))
        paid_b.append(server.pay_by_code(b, 23))
        # Each stream's last event is its shop's last payment: had the other shop's events
        # leaked into it, they would have come before.
        seen_a = next_events(a_read, 2)
        seen_b = next_events(b_read, 3)

    assert [paid for _, paid, _ in summary(seen_a)] == [paid["id"] for paid in paid_a]
    assert [paid for _, paid, _ in summary(seen_b)] == [paid["id"] for paid in paid_b]
    assert {event.json["payment"]["merchant_id"] for event in seen_a} == {a.merchant_id}
    assert {event.json["payment"]["merchant_id"] for event in seen_b} == {b.merchant_id}
    # The polling twin agrees; the other shop's newest event id as a cursor shows nothing.
    assert [item["payment"]["id"] for item in server.poll(a, 0)["items"]] == [
        paid["id"] for paid in paid_a
    ]
    assert server.poll(a, int(seen_b[-1].id or ""))["items"] == []


def test_the_polling_twin_returns_what_the_stream_sends(server: Server) -> None:
    shop = server.open_shop()
    qr = server.pay_qr(shop, 500)
    confirmed = server.pay_store(shop, 40)
    server.resolve(shop, confirmed["id"], "confirm")
    declined = server.pay_store(shop, 50)
    server.resolve(shop, declined["id"], "decline")
    server.refund(shop, qr["id"], 200)
    by_code = server.pay_by_code(shop, 60)

    polled = server.poll(shop, 0)
    items = polled["items"]
    assert [(item["kind"], item["payment"]["id"]) for item in items] == [
        ("posted", qr["id"]),
        ("created", confirmed["id"]),
        ("posted", confirmed["id"]),
        ("created", declined["id"]),
        ("voided", declined["id"]),
        ("refunded", qr["id"]),
        ("posted", by_code["id"]),
    ]
    assert polled["cursor"] == items[-1]["id"]
    # Each event carries the payment as it is now (the refunded one partly refunded).
    assert {item["payment"]["id"]: item["payment"]["state"] for item in items} == {
        qr["id"]: "partly_refunded",
        confirmed["id"]: "posted",
        declined["id"]: "voided",
        by_code["id"]: "posted",
    }

    with stream(server, shop.headers, after=0) as (_response, read):
        streamed = next_events(read, len(items))
    assert [event.json for event in streamed] == items
    assert [event.id for event in streamed] == [str(item["id"]) for item in items]

    # From a cursor in the middle, both give the rest; polling from the newest gives nothing.
    middle = items[2]["id"]
    with stream(server, {**shop.headers, "Last-Event-ID": str(middle)}) as (_response, read):
        rest = next_events(read, len(items) - 3)
    assert [event.json for event in rest] == server.poll(shop, middle)["items"] == items[3:]
    assert server.poll(shop, polled["cursor"]) == {"items": [], "cursor": polled["cursor"]}
    # Without a cursor the poll answers where to start, as the stream's first comment does.
    assert server.poll(shop, None) == {"items": [], "cursor": polled["cursor"]}
    with stream(server, shop.headers) as (_response, read):
        assert started_at(read) == polled["cursor"]


def test_a_stream_lasts_under_a_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POINTS_EVENT_STREAM_SECONDS", raising=False)
    assert Settings().event_stream_seconds == 55
    monkeypatch.setenv("POINTS_EVENT_STREAM_SECONDS", "1")
    assert Settings().event_stream_seconds == 1
    for seconds in ("0", "56", "600", "-1"):
        monkeypatch.setenv("POINTS_EVENT_STREAM_SECONDS", seconds)
        with pytest.raises(ValidationError, match="event_stream_seconds"):
            Settings()
