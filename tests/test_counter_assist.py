"""Acting for a resident without a phone, on SQLite and PostgreSQL (issue 19 parts 5 and 8):
the counter finds the resident by card, card number, address number or id, reads the wallets,
prints the expiry notice the letters carry, and pays a shop on the resident's behalf only with
the PIN the resident types (counted first, 10 wrong an hour per member of staff, audited with
the member of staff, the resident and the reason, never the PIN); an organizer checks a card
holder in at an event, once, also when two devices scan the card at the same moment.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from api_world import POINT_TYPE_CODE, Actor, World, assert_problem, open_world
from concurrency import run_together
from conftest import FakeClock
from fastapi.testclient import TestClient
from payment_helpers import Shop, balance, funded_resident, give, key, open_shop
from sqlalchemy.engine import Engine
from sqlmodel import select
from test_cards import PIN, attempts, card_pay, card_row, issue

import ledger
from api import notice_page
from issuers import events
from issuers.events import EventAttendance
from points.idempotency import IdempotencyRecord
from points.registry import StaffRole
from redemption.cards import STAFF_WRONG_PINS_PER_HOUR
from redemption.payments import Payment

C = "/api/v1/counter"
FIND = f"{C}/residents/find"
ASSISTED = f"{C}/assisted-payments"
WRONG = "9157"


@pytest.fixture
def engine(database_url: str, backend: str) -> Iterator[Engine]:
    """A pool with room for the races' racers."""
    built = ledger.create_engine(database_url, pool_size=10, max_overflow=40)
    yield built
    built.dispose()


@pytest.fixture
def world(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[World]:
    with open_world(engine, clock, database_url, record_verify_run=False) as built:
        yield built


def find(world: World, *, by: Actor | None = None, **named: str) -> Any:
    return world.client.post(FIND, json=named, headers=(by or world.counter).headers)


def months_later(world: World, clock: FakeClock, days: int) -> Actor:
    """The clock ``days`` on, and a member of counter staff with a token of then (a staff token
    lives 90 days)."""
    clock.advance(days=days)
    return world.fresh_staff(StaffRole.COUNTER)


def assisted(
    world: World,
    shop: Shop,
    card: dict[str, Any],
    amount: int,
    pin: str = PIN,
    *,
    by: str = "qr",
    reason: str = "the resident has no phone",
    headers: dict[str, str] | None = None,
) -> Any:
    named = {"card_qr": card["qr"]} if by == "qr" else {"card_number": card["number"]}
    return world.client.post(
        ASSISTED,
        json={**named, "merchant_id": shop.merchant_id, "amount": amount, "pin": pin,
              "reason": reason},
        headers=headers or {**world.counter.headers, **key("assist")},
    )  # fmt: skip


def audit_rows(world: World, action: str) -> list[dict[str, Any]]:
    with world.engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT actor_role, actor_id, action, object_id, reason, details FROM audit_event"
                " WHERE action = :action ORDER BY sequence"
            ),
            {"action": action},
        ).mappings()
        return [dict(row) for row in rows]


def payments_of(world: World, resident_id: str) -> list[Payment]:
    return world.read(
        lambda session: list(
            session.exec(select(Payment).where(Payment.resident_id == resident_id))
        )
    )


# Finding the resident -------------------------------------------------------------------------


def test_the_counter_finds_the_resident_by_each_key(world: World) -> None:
    resident = funded_resident(world, 1_500)
    card = issue(world, resident.id)
    record = world.client.get(f"{C}/residents/{resident.id}", headers=world.counter.headers)
    address_number = record.json()["address_number"]
    digits = card["number"].replace(" ", "")
    for named in (
        {"card_qr": card["qr"]},
        {"card_number": digits},
        {"card_number": card["number"]},
        {"address_number": address_number},
        {"resident_id": resident.id},
    ):
        found = find(world, **named)
        assert found.status_code == 200, (named, found.text)
        body = found.json()
        assert body["resident"]["id"] == resident.id
        assert body["resident"]["address_number"] == address_number
        assert body["card"]["id"] == card["id"] and not {"pin", "pin_hash"} & set(body["card"])
        [wallet] = body["wallets"]
        assert (wallet["point_type"], wallet["balance"]) == (POINT_TYPE_CODE, 1_500)
        assert sum(line["amount"] for line in wallet["by_expiry"]) == 1_500


def test_finding_needs_exactly_one_key_and_names_nothing_it_did_not_find(world: World) -> None:
    resident = funded_resident(world, 100)
    card = issue(world, resident.id)
    for named in ({}, {"card_qr": card["qr"], "resident_id": resident.id}):
        assert_problem(find(world, **named), 422, "validation_error")
    digits = card["number"].replace(" ", "")
    bad_digit = digits[:-1] + str((int(digits[-1]) + 1) % 10)
    assert_problem(find(world, card_number=bad_digit), 422, "card_number_invalid")
    for named in (
        {"resident_id": "res_nobody"},
        {"resident_id": world.counter.id},
        {"address_number": "9999999999999"},
    ):
        missing = find(world, **named)
        assert_problem(missing, 404, "not_found")
        assert "仮 住民" not in missing.text
    unknown = find(world, unknown="x", resident_id=resident.id)
    assert_problem(unknown, 422, "validation_error")
    for amount_like in (True, 100, 1.5):
        assert_problem(find(world, resident_id=amount_like), 422, "validation_error")  # type: ignore[arg-type]


def test_a_blocked_card_is_found_with_its_status(world: World) -> None:
    resident = funded_resident(world, 100)
    card = issue(world, resident.id)
    blocked = world.client.post(
        f"{C}/cards/{card['id']}/block", json={"reason": "lost"}, headers=world.counter.headers
    )
    assert blocked.status_code == 200
    body = find(world, card_number=card["number"]).json()
    assert (body["resident"]["id"], body["card"]["status"]) == (resident.id, "blocked")
    assert find(world, resident_id=resident.id).json()["card"] is None  # no active card


def test_the_wallet_view_has_the_balance_by_expiry_and_the_coming_expiry(
    world: World, clock: FakeClock
) -> None:
    resident = funded_resident(world, 1_000)
    clock.advance(days=40)
    give(world, resident.id, 500)
    wallet = find(world, resident_id=resident.id).json()["wallets"][0]
    assert wallet["balance"] == 1_500
    lines = wallet["by_expiry"]
    assert [line["amount"] for line in lines] == [1_000, 500], lines
    first = lines[0]["valid_until"]
    assert wallet["expiring_soon"] is None
    clerk = months_later(world, clock, (_day(first) - clock().date()).days - 10)
    wallet = find(world, by=clerk, resident_id=resident.id).json()["wallets"][0]
    assert wallet["expiring_soon"] == {"valid_until": first, "amount": 1_000}
    assert "1,000pt" in wallet["notice_ja"]


def _day(text: str) -> date:
    return date.fromisoformat(text)


# The expiry notice -----------------------------------------------------------------------------


def test_the_notice_page_says_what_the_letter_says(world: World, clock: FakeClock) -> None:
    resident = funded_resident(world, 1_200)
    card = issue(world, resident.id)
    clerk = months_later(world, clock, 100)
    give(world, resident.id, 300)  # expires three months after the first 1,200
    path = f"{C}/residents/{resident.id}/expiry-notice"
    calm = world.client.get(path, headers=clerk.headers)
    assert calm.status_code == 200 and calm.headers["content-type"].startswith("text/html")
    assert "60日以内に失効するポイントはありません" in calm.text

    wallet = find(world, by=clerk, resident_id=resident.id).json()["wallets"][0]
    first = _day(wallet["by_expiry"][0]["valid_until"])
    clerk = months_later(world, clock, (first - clock().date()).days - 20)
    page = world.client.get(path, headers=clerk.headers)
    assert page.status_code == 200, page.text
    text = page.text
    letters = world.client.get(
        f"{C}/expiry-notices?within_days=60", headers=clerk.headers
    ).content.decode("utf-8-sig")
    [line] = [row for row in letters.splitlines() if row.startswith(resident.id)]
    _, number, name, _, expiring, first_date, balance_text, last4 = line.split(",")
    assert (int(expiring), first_date, int(balance_text)) == (1_200, first.isoformat(), 1_500)
    assert last4 == card["last4"]
    assert text.index("ポイントの有効期限のお知らせ") < text.index('lang="en"')
    for shown in (
        f"{name} 様",
        f"宛名番号 {number}",
        f"カード番号の下4桁 {last4}",
        f"Your card ends in {last4}.",
        "狛江ポイント",
        "1,200 pt",
        f"{first.year}年{first.month}月{first.day}日",
        "1,500 pt",
        first.isoformat(),
        "@page { size: A4",
    ):
        assert shown in text, shown
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["content-security-policy"] == notice_page.CSP
    assert "unsafe-inline" not in notice_page.CSP
    narrow = world.client.get(f"{path}?within_days=10", headers=clerk.headers)
    assert "10日以内に失効するポイントはありません" in narrow.text
    missing = world.client.get(f"{C}/residents/res_nobody/expiry-notice", headers=clerk.headers)
    assert_problem(missing, 404, "not_found")


def test_the_notice_page_escapes_what_the_registry_holds(world: World) -> None:
    resident = world.fresh_resident()
    renamed = world.client.patch(
        f"{C}/residents/{resident.id}",
        json={"name": "<script>x</script> 太郎", "reason": "test"},
        headers=world.counter.headers,
    )
    assert renamed.status_code == 200, renamed.text
    page = world.client.get(
        f"{C}/residents/{resident.id}/expiry-notice", headers=world.counter.headers
    )
    assert "<script>" not in page.text and "&lt;script&gt;x&lt;/script&gt; 太郎 様" in page.text


# Paying on the resident's behalf ---------------------------------------------------------------


def test_staff_pay_a_shop_for_the_resident_only_with_the_right_pin(world: World) -> None:
    resident = funded_resident(world, 2_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    reason = "the resident has no phone; asked us to pay the bakery's order"
    before = world.audit_count()

    wrong = assisted(world, shop, card, 800, pin=WRONG, reason=reason)
    body = assert_problem(wrong, 422, "pin_incorrect")
    assert body["attempts_left"] == 4 and WRONG not in wrong.text
    assert balance(world, resident) == 2_000 and payments_of(world, resident.id) == []
    assert world.audit_count() == before, "nothing but the attempt is written on a wrong PIN"
    assert attempts(world, card["id"]) == ["wrong"]
    assert card_row(world, card["id"]).pin_attempts == 1

    paid = assisted(world, shop, card, 800, reason=reason)
    assert paid.status_code == 201, paid.text
    answer = paid.json()
    assert (answer["flow"], answer["amount"], answer["state"]) == ("card", 800, "posted")
    assert (answer["merchant_id"], answer["resident_id"]) == (shop.merchant_id, resident.id)
    assert answer["reference"] == "city counter" and answer["till_id"] is None
    assert answer["receipt"]["balance"] == 1_200 == balance(world, resident)
    assert answer["receipt"]["card_last4"] == card["last4"]
    assert attempts(world, card["id"]) == ["wrong", "correct"]
    assert card_row(world, card["id"]).pin_attempts == 0
    assert PIN not in paid.text

    [event] = audit_rows(world, "card.assisted_payment")
    details = json.loads(event["details"])
    assert (event["actor_role"], event["actor_id"]) == ("counter", world.counter.id)
    assert (event["object_id"], event["reason"]) == (card["id"], reason)
    assert details["resident_id"] == resident.id and details["payment_id"] == answer["id"]
    assert (details["merchant_id"], details["amount"]) == (shop.merchant_id, 800)
    assert PIN not in json.dumps(event) and WRONG not in json.dumps(event)
    assert "仮 住民" not in json.dumps(event)

    # The shop sees it among its payments, with its own pseudonym of the resident.
    seen = world.client.get(f"/api/v1/merchant/payments/{answer['id']}", headers=shop.headers)
    assert seen.status_code == 200 and seen.json()["customer"].startswith("cus_")


def test_a_retry_spends_no_attempt_and_no_record_holds_the_pin(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    headers = {**world.counter.headers, **key("retry")}
    first = assisted(world, shop, card, 300, headers=headers, by="number")
    second = assisted(world, shop, card, 300, headers=headers, by="number")
    assert first.status_code == second.status_code == 201
    assert second.headers.get("idempotent-replayed") == "true"
    assert first.json()["id"] == second.json()["id"] and balance(world, resident) == 700
    assert attempts(world, card["id"]) == ["correct"]
    records = world.read(lambda session: list(session.exec(select(IdempotencyRecord))))
    assert records and all(PIN not in (record.response_body or "") for record in records)


def test_assisted_payments_meet_the_cards_limits_and_refusals(world: World) -> None:
    resident = funded_resident(world, 20_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    over = assisted(world, shop, card, 10_001)
    assert_problem(over, 422, "card_daily_limit_exceeded")
    assert attempts(world, card["id"]) == ["correct"]  # the PIN was right; the limit refused
    assert balance(world, resident) == 20_000
    without_reason = assisted(world, shop, card, 100, reason=" ")
    assert_problem(without_reason, 422, "validation_error")
    nowhere = world.client.post(
        ASSISTED,
        json={"card_qr": card["qr"], "merchant_id": "mer_nowhere", "amount": 1, "pin": WRONG,
              "reason": "x"},
        headers={**world.counter.headers, **key()},
    )  # fmt: skip
    assert_problem(nowhere, 404, "not_found")
    no_types = Shop(world.fresh_merchant(), shop.till, "", "")  # takes no point type yet
    assert_problem(assisted(world, no_types, card, 1, pin=WRONG), 422, "point_type_not_accepted")
    assert attempts(world, card["id"]) == ["correct"], "a refused shop spends no attempt"
    blocked = world.client.post(
        f"{C}/cards/{card['id']}/block", json={"reason": "lost"}, headers=world.counter.headers
    )
    assert blocked.status_code == 200
    assert_problem(assisted(world, shop, card, 1, pin=WRONG), 409, "card_blocked")
    assert attempts(world, card["id"]) == ["correct"]


def test_only_counter_staff_pay_on_behalf(world: World) -> None:
    resident = funded_resident(world, 1_000)
    shop = open_shop(world)
    card = issue(world, resident.id)
    for actor in (shop.till, world.actors["issuer_a"], world.admin, resident):
        refused = assisted(world, shop, card, 100, headers={**actor.headers, **key()})
        assert_problem(refused, 403, "forbidden")
    assert attempts(world, card["id"]) == [] and balance(world, resident) == 1_000


def test_a_member_of_staff_with_ten_wrong_pins_in_an_hour_waits(
    world: World, clock: FakeClock
) -> None:
    shop = open_shop(world)
    issued = [issue(world, funded_resident(world, 500).id) for _ in range(4)]
    for n in range(STAFF_WRONG_PINS_PER_HOUR):
        wrong = assisted(world, shop, issued[n % 3], 100, pin=WRONG)
        assert_problem(wrong, 422, "pin_incorrect")
        clock.advance(minutes=1)
    throttled = assisted(world, shop, issued[3], 100)
    body = assert_problem(throttled, 429, "pin_attempts_exceeded")
    retry = int(throttled.headers["Retry-After"])
    assert 0 < retry <= 3600 - 9 * 60 + 1 and body["retry_after_seconds"] == retry
    assert attempts(world, issued[3]["id"]) == []
    # Another member of staff, and the tills, count on their own.
    colleague = world.fresh_staff(StaffRole.COUNTER)
    by_colleague = assisted(world, shop, issued[3], 100, headers={**colleague.headers, **key()})
    assert by_colleague.status_code == 201, by_colleague.text
    assert card_pay(world, shop, issued[0], 100).status_code == 201
    # A PIN change with the old PIN at the same counter waits too.
    changed = world.client.post(
        f"{C}/cards/{issued[1]['id']}/pin",
        json={"new_pin": "7392", "old_pin": PIN},
        headers=world.counter.headers,
    )
    assert_problem(changed, 429, "pin_attempts_exceeded")
    clock.advance(seconds=retry)
    assert assisted(world, shop, issued[3], 100).status_code == 201


# Check-in by card ------------------------------------------------------------------------------


ISS = "/api/v1/issuer"


def card_check_in(
    world: World,
    event_id: str,
    named: dict[str, str],
    *,
    issuer: str = "issuer_a",
    client: TestClient | None = None,
) -> Any:
    return (client or world.client).post(
        f"{ISS}/events/{event_id}/card-check-ins",
        json=named,
        headers={**world.actors[issuer].headers, "Idempotency-Key": str(uuid.uuid4())},
    )


def attendance_of(world: World, event_id: str) -> list[str]:
    return world.read(
        lambda session: list(
            session.exec(
                select(EventAttendance.resident_id).where(EventAttendance.event_id == event_id)
            )
        )
    )


def test_an_organizer_checks_a_card_holder_in_once(world: World) -> None:
    event = world.fresh_event()
    resident = world.fresh_resident(with_token=True)
    card = issue(world, resident.id)
    checked = card_check_in(world, event.id, {"card_qr": card["qr"]})
    assert checked.status_code == 201, checked.text
    body = checked.json()
    assert (body["event_id"], body["amount"], body["replayed"]) == (event.id, 100, False)
    assert balance(world, resident) == 100
    again = card_check_in(world, event.id, {"card_number": card["number"]})
    assert again.status_code == 200 and again.json()["replayed"], again.text
    assert again.json()["award_id"] == body["award_id"]
    assert balance(world, resident) == 100 and attendance_of(world, event.id) == [resident.id]
    # The wallet's own scan of the same event answers the same first check-in.
    services = world.app.state.services
    token, _ = events.current_token(
        event, services.keys, world.now(), origin=services.settings.public_origin
    )
    by_phone = world.client.post(
        "/api/v1/me/check-ins",
        json={"token": token},
        headers={**resident.headers, **key("checkin")},
    )
    assert by_phone.status_code == 200 and by_phone.json()["award_id"] == body["award_id"]


def test_a_card_check_in_needs_no_pin_but_an_active_card_and_the_callers_open_event(
    world: World, clock: FakeClock
) -> None:
    event = world.fresh_event()
    other_department = world.fresh_event("b")
    resident = funded_resident(world, 0)
    card = issue(world, resident.id)
    for _ in range(5):  # locked after 5 wrong PINs: a check-in still earns
        assert_problem(card_pay(world, open_shop(world), card, 1, pin=WRONG), 422)
    assert card_row(world, card["id"]).locked
    assert card_check_in(world, event.id, {"card_qr": card["qr"]}).status_code == 201

    hidden = card_check_in(world, other_department.id, {"card_qr": card["qr"]})
    assert_problem(hidden, 404, "not_found")
    assert other_department.name not in hidden.text
    assert attendance_of(world, other_department.id) == []

    moved = funded_resident(world, 0)
    moved_card = issue(world, moved.id)
    status = world.client.post(
        f"/api/v1/admin/residents/{moved.id}/status",
        json={"status": "moved_out", "reason": "moved to Chofu"},
        headers=world.admin.headers,
    )
    assert status.status_code == 200
    assert_problem(
        card_check_in(world, event.id, {"card_qr": moved_card["qr"]}), 409, "card_blocked"
    )
    blocked_holder = funded_resident(world, 0)
    blocked_card = issue(world, blocked_holder.id)
    world.client.post(
        f"{C}/cards/{blocked_card['id']}/block",
        json={"reason": "lost"},
        headers=world.counter.headers,
    )
    assert_problem(
        card_check_in(world, event.id, {"card_number": blocked_card["number"]}), 409, "card_blocked"
    )
    assert_problem(card_check_in(world, event.id, {}), 422, "validation_error")
    assert_problem(card_check_in(world, event.id, {"card_qr": card["qr"], "pin": PIN}), 422)

    closed = world.client.post(
        f"{ISS}/events/{event.id}/close",
        json={"reason": "雨天中止"},
        headers=world.actors["issuer_a"].headers,
    )
    assert closed.status_code == 200
    late = funded_resident(world, 0)
    late_card = issue(world, late.id)
    assert_problem(
        card_check_in(world, event.id, {"card_qr": late_card["qr"]}), 409, "event_closed"
    )
    window = world.fresh_event()
    clock.advance(hours=1)
    assert_problem(
        card_check_in(world, window.id, {"card_qr": late_card["qr"]}),
        409,
        "outside_check_in_window",
    )
    assert attendance_of(world, event.id) == [resident.id]


def test_two_devices_scanning_one_card_at_once_check_in_once(world: World) -> None:
    event = world.fresh_event(capacity=5)
    resident = world.fresh_resident(with_token=True)
    card = issue(world, resident.id)
    clients = [TestClient(world.app, raise_server_exceptions=False) for _ in range(6)]

    def call(client: TestClient, n: int) -> Any:
        named = {"card_qr": card["qr"]} if n % 2 else {"card_number": card["number"]}
        issuer = "issuer_a"
        return lambda: card_check_in(world, event.id, named, issuer=issuer, client=client)

    try:
        outcomes = run_together([call(client, n) for n, client in enumerate(clients)])
    finally:
        for client in clients:
            client.close()
    assert all(status == "ok" for status, _ in outcomes), outcomes[:2]
    replies = [reply for _, reply in outcomes]
    assert sorted(reply.status_code for reply in replies) == [200] * 5 + [201], [
        reply.text for reply in replies
    ]
    assert len({reply.json()["award_id"] for reply in replies}) == 1
    assert attendance_of(world, event.id) == [resident.id]
    assert balance(world, resident) == 100
    attendance = world.client.get(
        f"{ISS}/events/{event.id}/attendance", headers=world.actors["issuer_a"].headers
    )
    assert attendance.json()["attendance"] == 1
