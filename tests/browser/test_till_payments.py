"""The till taking payments in Chromium, with a resident's wallet in a second browser context
against the same ``points serve`` (SQLite and PostgreSQL): a payment QR the wallet scans through
the fake camera turns "paid" on the till by itself (server-sent events); a payment QR cancelled,
one expired and made again; store-QR payments confirmed (a double tap confirming once) and
declined at the till; a pay code and a card with its PIN pad (a wrong PIN first, a locked card);
a partial refund the resident's history shows; today's totals."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Request, Route, expect

from .camera import FakeCamera
from .live import SHOP_NAME_JA, City, call, expect_status
from .till import enrol_till, expect_sound, key_in, new_device, qr_text
from .wallet import check_error, enrol, expect_balance, japanese_date, on_screen, points, scan

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]
PIN = "4826"


@pytest.fixture
def till(page: Page, city: City) -> Page:
    """The till (the ``page`` fixture's context, 360x640), enrolled with a fresh device code."""
    enrol_till(page, city.device_code())
    return page


@pytest.fixture
def wallet(browser: Browser, city: City) -> Iterator[Page]:
    """A resident's phone: another browser context on the same server."""
    phone = new_device(browser, city)
    yield phone
    phone.context.close()


def requests_to(page: Page, method: str, pattern: str) -> list[Request]:
    seen: list[Request] = []
    page.on(
        "request",
        lambda request: (
            seen.append(request)
            if request.method == method and re.search(pattern, request.url)
            else None
        ),
    )
    return seen


def test_a_payment_qr_paid_in_the_wallet_turns_paid_on_the_till(
    till: Page, wallet: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(2_000)
    streams = requests_to(till, "GET", r"/payment-events/stream")
    till.reload()  # the listener sees the stream open
    home = on_screen(till, "home")
    expect(home.locator("#live-status")).to_contain_text("受け取っています")
    assert streams, "the till opened no event stream"

    home.locator("#go-charge").click()
    charge = on_screen(till, "charge")
    key_in(charge, "1230")
    charge.locator('[data-key="back"]').click()
    charge.locator('[data-key="back"]').click()
    key_in(charge, "00")
    expect(charge.locator("#amount")).to_have_text(points(1_200))
    shoot(till, "charge")
    charge.locator("#make-qr").click()
    qr = on_screen(till, "qr")
    expect(qr.locator("#qr-amount")).to_have_text(points(1_200))
    expect(qr.locator("#countdown")).to_have_text(re.compile(r"\d"))
    text = qr_text(qr.locator("#payment-qr"))
    assert text.startswith(city.server.url.upper() + "/Q/"), text
    shoot(till, "qr")
    till.evaluate("() => { window.stayed = true; }")

    # The resident scans the till's QR with the wallet and pays.
    enrol(wallet, resident.counter_code)
    scan(wallet, camera, text)
    preview = on_screen(wallet, "preview")
    expect(preview.locator("#amount")).to_have_text(points(1_200))
    expect(preview.locator("#shop")).to_contain_text(SHOP_NAME_JA)
    preview.locator("#pay").click()
    on_screen(wallet, "paid")

    # The till turns "paid" by itself, with its sound, on the same page (no reload).
    paid = on_screen(till, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(1_200))
    expect_sound(till, "paid")
    assert till.evaluate("() => window.stayed === true")
    shoot(till, "paid")
    assert city.balance(resident) == 800


def test_a_payment_qr_cancelled_and_one_expired_made_again(
    till: Page, city: City, shoot: Shoot
) -> None:
    till.locator("#go-charge").click()
    charge = on_screen(till, "charge")
    # No amount: said, not sent.
    charge.locator("#make-qr").click()
    check_error(till)
    key_in(charge, "500")
    charge.locator("#make-qr").click()
    qr = on_screen(till, "qr")
    qr.locator("#qr-cancel").click()
    cancelled = on_screen(till, "cancelled")
    expect(cancelled.locator("#cancelled-amount")).to_have_text(points(500))
    shoot(till, "cancelled")

    cancelled.locator("#next-charge").click()
    key_in(on_screen(till, "charge"), "300")
    till.locator("#make-qr").click()
    on_screen(till, "qr")
    request_id = till.url.rsplit("/", 1)[1]

    # Its two minutes are up (the server's answer says expired): the till offers a new QR.
    def expired(route: Route) -> None:
        answer = route.fetch()
        body = answer.json()
        body["state"] = "expired"
        route.fulfill(response=answer, body=json.dumps(body))

    pattern = f"**/api/v1/merchant/payment-requests/{request_id}"
    till.route(pattern, expired)
    till.reload()
    gone = on_screen(till, "expired")
    expect(gone.locator("#expired-amount")).to_have_text(points(300))
    shoot(till, "expired")
    till.unroute(pattern, expired)
    gone.locator("#again").click()
    again = on_screen(till, "qr")
    expect(again.locator("#qr-amount")).to_have_text(points(300))
    assert till.url.rsplit("/", 1)[1] != request_id
    assert qr_text(again.locator("#payment-qr")).startswith(city.server.url.upper() + "/Q/")


def test_store_qr_payments_confirmed_and_declined_at_the_till(
    till: Page, wallet: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(1_000)
    enrol(wallet, resident.counter_code)
    confirms = requests_to(till, "POST", r"/payments/[^/]+/confirm$")

    # The resident pays 350 with the till's printed store QR and waits for the shop.
    scan(wallet, camera, city.store_qr)
    on_screen(wallet, "store").locator("#store-ok").click()
    keypad = on_screen(wallet, "amount")
    for key in "350":
        keypad.locator(f'[data-key="{key}"]').click()
    keypad.locator("#amount-next").click()
    on_screen(wallet, "confirm").locator("#pay").click()
    on_screen(wallet, "waiting")

    # The till hears of it on its home screen: a sound and a line to tap.
    banner = till.locator("#banner-link")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("1 件")
    expect_sound(till, "incoming")
    shoot(till, "banner")
    banner.click()
    incoming = on_screen(till, "incoming")
    item = incoming.locator(".incoming-item")
    expect(item).to_have_count(1)
    expect(item.locator(".incoming-amount")).to_have_text(points(350))
    shoot(till, "incoming")
    # A double tap confirms once.
    item.locator("button.confirm").dblclick()
    expect(incoming.locator("#resolved")).to_contain_text(points(350))
    expect(incoming.locator("#incoming-empty")).to_be_visible()
    assert len(confirms) == 1, [request.url for request in confirms]
    paid = on_screen(wallet, "paid")
    expect(paid.locator("#paid-amount")).to_have_text(points(350))
    assert city.balance(resident) == 650

    # Another, paid from the resident's phone through the API: declined, the points stay.
    pending = expect_status(
        call(
            city.server.url,
            "POST",
            "/api/v1/me/payments",
            body={"token": city.store_qr, "amount": 120},
            token=resident.token,
            idempotent=True,
        ),
        201,
        "a store-QR payment",
    )
    item = incoming.locator(f'.incoming-item[data-payment="{pending["id"]}"]')
    expect(item.locator(".incoming-amount")).to_have_text(points(120))
    item.locator("button.decline").click()
    expect(incoming.locator("#resolved")).to_contain_text("取り消しました")
    assert city.balance(resident) == 650
    states = {p["id"]: p["state"] for p in city.resident_payments(resident)}
    assert states[pending["id"]] == "voided"


def test_a_pay_code_scanned_at_the_till(
    till: Page, wallet: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(1_000)
    enrol(wallet, resident.counter_code)
    wallet.locator("#go-paycode").click()
    shown = on_screen(wallet, "paycode").locator("#paycode-qr")
    expect(shown.locator("svg")).to_be_visible()
    code = qr_text(shown)

    camera.show(code)
    till.locator("#go-take").click()
    amount = on_screen(till, "take-amount")
    expect(amount.locator("#taking-by")).to_contain_text("支払いコード")
    key_in(amount, "250")
    shoot(till, "take-amount")
    amount.locator("#take-next").click()
    taken = on_screen(till, "taken")
    expect(taken.locator("#taken-amount")).to_have_text(points(250))
    expect_sound(till, "paid")
    on_screen(wallet, "paid")
    assert city.balance(resident) == 750

    # The same code again: used, said in a sentence.
    camera.show(code)
    taken.locator("#next-take").click()
    again = on_screen(till, "take-amount")
    key_in(again, "100")
    again.locator("#take-next").click()
    assert "もう使われています" in check_error(till)
    assert city.balance(resident) == 750


def test_a_card_and_its_pin_one_wrong_first_and_a_locked_card(
    till: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    # 500 pt expire at the end of this month: paying 300 takes them first (earliest expiry).
    resident = city.new_resident(1_000, expiring=500)
    expiring = next(line for line in city.wallet(resident)["by_expiry"] if line["amount"] == 500)
    card = city.new_card(resident, PIN)

    camera.show(card.text)
    till.locator("#go-take").click()
    amount = on_screen(till, "take-amount")
    expect(amount.locator("#taking-by")).to_contain_text("カード")
    key_in(amount, "300")
    amount.locator("#take-next").click()

    # The customer's pad: large keys, dots only, never a digit of the PIN on the page.
    pin = on_screen(till, "pin")
    expect(pin.locator("#hand-over")).to_be_visible()
    expect(pin.locator("#pin-for")).to_contain_text(points(300))
    key_in(pin, "1357")
    expect(pin.locator("#pin-dots .dots")).to_have_text("●●●●")
    assert "1357" not in till.locator("#view").inner_text()
    shoot(till, "pin")
    pin.locator("#pin-pay").click()
    wrong = check_error(till)
    assert "あと 4 回" in wrong, wrong
    expect(pin.locator("#pin-dots .dots")).not_to_have_text("●●●●")
    shoot(till, "pin-wrong")

    key_in(pin, PIN)
    assert PIN not in till.locator("#view").inner_text()
    pin.locator("#pin-pay").click()
    taken = on_screen(till, "taken")
    expect(taken.locator("#taken-amount")).to_have_text(points(300))
    expect(taken.locator("#receipt")).to_contain_text(card.last4)
    expect(taken.locator("#receipt-balance")).to_contain_text(points(1_200))
    expect(taken.locator("#receipt-expiry")).to_contain_text(points(200))
    expect(taken.locator("#receipt-expiry")).to_contain_text(
        japanese_date(date.fromisoformat(expiring["valid_until"]))
    )
    shoot(till, "taken")
    assert city.balance(resident) == 1_200

    # A card with one try left, its number typed: a wrong PIN locks it; the customer is sent to
    # the city counter.
    other = city.new_resident(800)
    locked = city.new_card(other, PIN, attempts_left=1)
    camera.show(None)
    taken.locator("#next-take").click()
    on_screen(till, "take").locator("#type-card").click()
    typed = on_screen(till, "card-number")
    typed.locator("#card-number").fill("1234 5678")
    typed.locator("#card-next").click()
    check_error(till)
    shoot(till, "card-number")
    grouped = " ".join(locked.number[i : i + 4] for i in range(0, 16, 4))
    typed.locator("#card-number").fill(grouped)
    typed.locator("#card-next").click()
    amount = on_screen(till, "take-amount")
    expect(amount.locator("#taking-by")).to_contain_text(locked.number[-4:])
    key_in(amount, "100")
    amount.locator("#take-next").click()
    pin = on_screen(till, "pin")
    key_in(pin, "9753")
    pin.locator("#pin-pay").click()
    gone = on_screen(till, "locked")
    expect(gone.locator("#locked-help")).to_contain_text("市役所窓口")
    shoot(till, "locked")
    assert city.balance(other) == 800


def test_a_partial_refund_shows_in_the_residents_history(
    till: Page, wallet: Page, city: City, shoot: Shoot
) -> None:
    resident = city.new_resident(2_000)
    paid = expect_status(
        call(
            city.server.url,
            "POST",
            "/api/v1/me/payments",
            body={"token": city.payment_request(1_000, reference="R-77")},
            token=resident.token,
            idempotent=True,
        ),
        201,
        "paying",
    )
    refunds = requests_to(till, "POST", r"/refunds$")

    till.locator("#go-payments").click()
    listed = on_screen(till, "payments")
    expect(listed.locator("#total-amount")).to_have_text(points_re_any())
    row = listed.locator(f'a[data-payment="{paid["id"]}"]')
    expect(row).to_contain_text(points(1_000))
    expect(row).to_contain_text("確定")
    before = money_of(listed.locator("#total-refunded").inner_text())
    shoot(till, "payments")
    row.click()
    detail = on_screen(till, "payment")
    expect(detail.locator("#payment-amount")).to_have_text(points(1_000))
    expect(detail.locator("#refundable")).to_contain_text(points(1_000))
    shoot(till, "payment")
    detail.locator("#refund-part").click()
    amount = on_screen(till, "refund-amount")
    key_in(amount, "1500")
    amount.locator("#refund-next").click()
    check_error(till)  # more than was paid: said before anything is sent
    amount.locator('[data-key="clear"]').click()
    key_in(amount, "300")
    shoot(till, "refund-amount")
    amount.locator("#refund-next").click()
    confirm = on_screen(till, "refund-confirm")
    expect(confirm.locator("#refund-amount")).to_have_text(points(300))
    shoot(till, "refund-confirm")
    confirm.locator("#refund-do").dblclick()
    done = on_screen(till, "refunded")
    expect(done.locator("#payment-state")).to_contain_text("一部返還")
    shoot(till, "refunded")
    assert len(refunds) == 1
    assert city.balance(resident) == 1_300

    done.locator("#to-payments").click()
    listed = on_screen(till, "payments")
    expect(listed.locator(f'a[data-payment="{paid["id"]}"]')).to_contain_text(points(300))
    expect(listed.locator("#total-refunded")).to_have_text(points(before + 300))

    # The resident sees the refund in the wallet's history.
    enrol(wallet, resident.counter_code)
    expect_balance(wallet, 1_300)
    wallet.locator("#go-history").click()
    history = on_screen(wallet, "history").locator("#history li")
    expect(history.first).to_contain_text("返還")
    expect(history.first).to_contain_text("+300")


def points_re_any() -> re.Pattern[str]:
    return re.compile(r"^[\d,]+\s*pt$")


def money_of(text: str) -> int:
    return int(re.sub(r"[^\d]", "", text))


def test_monthly_statements_to_open_and_print(till: Page, city: City, shoot: Shoot) -> None:
    resident = city.new_resident(1_000, expiring=500)
    # Last month is settled once per server: another test may have settled it first.
    period = city.statement_of_last_month(resident, 700)
    year, month = (int(part) for part in period.split("-"))
    made = expect_status(
        call(city.server.url, "GET", "/api/v1/merchant/statements", token=city.till_token),
        200,
        "the shop's statements",
    )["items"][0]
    assert made["period"] == period

    till.locator("#go-statements").click()
    listed = on_screen(till, "statements")
    statement = listed.locator(".statement").first
    expect(statement.locator("h2")).to_have_text(f"{year}年{month}月分")
    expect(statement).to_contain_text(points(made["settle_points"]))
    expect(statement).to_contain_text("円")
    shoot(till, "statements")
    # Opened in a tab of its own with the device's session: the statement to print.
    with till.context.expect_page() as opened:
        statement.locator('a[href$="/print"]').click()
    printed = opened.value
    printed.wait_for_load_state()
    expect(printed.locator("body")).to_contain_text("精算書")
    expect(printed.locator("body")).to_contain_text(SHOP_NAME_JA)
    printed.close()
