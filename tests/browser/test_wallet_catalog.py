"""Exchanging points for goods in the wallet app, in Chromium against a live ``points serve`` on
SQLite and PostgreSQL: the items a city counter offers (with a picture, the stock left, one out
of stock, one with a limit per resident), the confirmation with its quantity, the receipt to show
at the counter and its printable page, the balance going down, refusals as plain sentences in
Japanese and English, an answer the network lost (sent again with the same key), and axe-core on
the new screens at a phone's and a desktop's size."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Page, Request, Route, expect
from sqlmodel import Session

from ledger.service import system_clock
from points.registry import MerchantKind
from redemption import catalog

from .live import (
    POINT_TYPE,
    SYSTEM,
    City,
    Resident,
    call,
    expect_status,
    item_of,
    merchant_taking_pt,
)
from .test_wallet_access import axe_each_size, check_large_text
from .wallet import check_error, enrol, expect_balance, go_home, japanese_in, on_screen, points

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]
EXCHANGES = "**/api/v1/me/exchanges"
COUNTER_JA = "市役所 交換窓口"
COUNTER_EN = "City hall exchange counter"
BAG_JA = "コーヒー麻袋のエコバッグ"
BAG_EN = "Eco bag sewn from a coffee sack"
TOWEL_JA = "狛江の手ぬぐい"
TOWEL_EN = "Komae tenugui towel"
SEEDS_JA = "野菜の種セット"
SEEDS_EN = "Vegetable seed set"


@dataclass(frozen=True)
class Catalog:
    counter_id: str
    #: 500 pt, plenty in stock, with a picture.
    bag: str
    #: 300 pt, out of stock.
    towel: str
    #: 200 pt, at most 2 per resident and fiscal year.
    seeds: str


def picture() -> bytes:
    """A small PNG of a bag (what an admin uploads)."""
    image = Image.new("RGB", (320, 240), (238, 245, 241))
    draw = ImageDraw.Draw(image)
    draw.rectangle((95, 80, 225, 215), fill=(176, 137, 90), outline=(90, 60, 30), width=4)
    draw.arc((125, 30, 195, 120), 180, 360, fill=(90, 60, 30), width=8)
    draw.text((128, 140), "KOMAE", fill=(60, 40, 20))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def goods(city: City) -> Catalog:
    """A city counter taking ``pt`` with three items, made through the services an admin's
    requests use."""
    now = system_clock()

    def work(session: Session) -> Catalog:
        counter = merchant_taking_pt(
            session, now, COUNTER_JA, COUNTER_EN, "city", MerchantKind.COUNTER
        )

        def item(name_ja: str, name_en: str, points: int, stock: int, **more: Any) -> str:
            return item_of(
                session, now, counter.id, name_ja, name_en, points=points, stock=stock, **more
            )

        bag = item(BAG_JA, BAG_EN, 500, 40)
        catalog.set_image(session, SYSTEM, now, bag, picture())
        towel = item(TOWEL_JA, TOWEL_EN, 300, 0)
        seeds = item(SEEDS_JA, SEEDS_EN, 200, 40, per_resident_limit=2)
        return Catalog(counter.id, bag, towel, seeds)

    return city.write(work)


def exchange_by_api(city: City, resident: Resident, item_id: str, quantity: int) -> Any:
    """An exchange the resident makes elsewhere (another phone), with a bearer token."""
    answer = call(
        city.server.url,
        "POST",
        "/api/v1/me/exchanges",
        body={"item_id": item_id, "quantity": quantity},
        token=resident.token,
        idempotent=True,
    )
    return expect_status(answer, 201, "an exchange")


def offered(city: City, resident: Resident) -> dict[str, Any]:
    answer = call(city.server.url, "GET", "/api/v1/me/catalog", token=resident.token)
    return {item["id"]: item for item in expect_status(answer, 200, "the catalog")}


def open_catalog(page: Page) -> Any:
    on_screen(page, "home")
    page.locator("#go-exchange").click()
    shown = on_screen(page, "exchange")
    expect(shown.locator("#catalog")).to_be_visible()
    return shown


def card(page: Page, item_id: str) -> Any:
    return page.locator(f'#catalog li[data-item="{item_id}"]')


def test_exchange_two_bags_and_show_the_receipt(
    page: Page, city: City, goods: Catalog, shoot: Shoot
) -> None:
    resident = city.new_resident(1_500)
    stock_before = offered(city, resident)[goods.bag]["stock"]
    enrol(page, resident.counter_code)

    home = on_screen(page, "home")
    go = home.locator("#go-exchange")
    expect(go).to_have_text("ポイントを品物と交換する")
    box = go.bounding_box()
    assert box is not None and box["height"] >= 56, box
    shoot(page, "home")

    shown = open_catalog(page)
    expect(shown.locator("#exchange-balance")).to_contain_text(points(1_500))
    bag = card(page, goods.bag)
    expect(bag.locator("h2")).to_have_text(BAG_JA)
    expect(bag).to_contain_text(points(500))
    expect(bag).to_contain_text(f"残り {stock_before} 個")
    image = bag.locator("img")
    expect(image).to_have_attribute("alt", BAG_JA)
    # The picture arrives after the card: wait for it rather than read it mid-load.
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    assert image.evaluate("img => img.naturalWidth") == 320
    towel = card(page, goods.towel)
    expect(towel).to_contain_text("品切れ")
    expect(towel.locator("button")).to_be_disabled()
    expect(towel.locator("img")).to_have_count(0)
    expect(card(page, goods.seeds)).to_contain_text("1人 1年度に 2 個まで")
    shoot(page, "catalog")
    shoot(page.locator("#catalog"), "catalog-full")

    bag.locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    expect(confirm.locator("#item-name")).to_have_text(BAG_JA)
    expect(confirm.locator("#quantity")).to_have_text("1 個")
    expect(confirm.locator("#fewer")).to_be_disabled()
    expect(confirm.locator("#total")).to_have_text(points(500))
    expect(confirm.locator("#balance-after")).to_have_text(points(1_000))
    confirm.locator("#more-items").click()
    expect(confirm.locator("#quantity")).to_have_text("2 個")
    expect(confirm.locator("#total")).to_have_text(points(1_000))
    expect(confirm.locator("#balance-after")).to_have_text(points(500))
    expect(confirm.locator("#exchange")).to_have_text("交換する")
    shoot(page, "confirm")

    sent: list[Request] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request)
            if request.method == "POST" and request.url.endswith("/api/v1/me/exchanges")
            else None
        ),
    )
    confirm.locator("#exchange").dblclick()  # a double tap exchanges once
    done = on_screen(page, "exchanged")
    expect(done.locator("h1")).to_contain_text("交換しました")
    expect(done.locator("#receipt-item")).to_have_text(BAG_JA)
    expect(done.locator("#receipt-quantity")).to_have_text("2 個")
    expect(done.locator("#receipt-points")).to_have_text(points(1_000))
    expect(done.locator("#receipt-counter")).to_have_text(COUNTER_JA)
    today = system_clock()
    expect(done.locator("#receipt-at")).to_contain_text(
        re.compile(r"\d{4}年\d{1,2}月\d{1,2}日 \d\d:\d\d")
    )
    expect(done).to_contain_text("この画面を窓口で見せてください")
    expect(done.locator("#receipt-balance")).to_have_text(points(500))
    printable = done.locator("#receipt-print")
    expect(printable).to_have_attribute("href", re.compile(r"^/api/v1/me/exchanges/[^/]+/receipt$"))
    shoot(page, "receipt")
    assert len(sent) == 1, [request.url for request in sent]
    assert city.balance(resident) == 500
    assert offered(city, resident)[goods.bag]["stock"] == stock_before - 2

    # The printable receipt, with the session cookie, in Japanese first.
    printable.click()
    expect(page.locator("h1")).to_contain_text("ポイント交換の控え")
    expect(page.locator("table")).to_contain_text(BAG_JA)
    expect(page.locator("table")).to_contain_text("1,000")
    assert str(today.year) in page.locator("table").inner_text()
    shoot(page, "receipt-printable")
    # Back from it: the receipt screen again (not the confirmation); reloaded, the same.
    page.go_back()
    again = on_screen(page, "exchanged")
    expect(again.locator("#receipt-quantity")).to_have_text("2 個")
    page.reload()
    expect(on_screen(page, "exchanged").locator("#receipt-balance")).to_have_text(points(500))
    page.go_back()
    shown = on_screen(page, "exchange")
    expect(shown.locator("#exchange-balance")).to_contain_text(points(500))
    go_home(page)
    expect_balance(page, 500)
    page.locator("#go-history").click()
    on_screen(page, "history")
    expect(page.locator("#history li").first).to_contain_text(COUNTER_JA)


def test_refusals_are_sentences_saying_what_to_do(
    page: Page, city: City, goods: Catalog, shoot: Shoot
) -> None:
    resident = city.new_resident(1_000)
    exchange_by_api(city, resident, goods.seeds, 1)  # one of two this fiscal year, elsewhere
    enrol(page, resident.counter_code)
    expect_balance(page, 800)
    open_catalog(page)

    # Over the limit per resident: how many are left this fiscal year.
    card(page, goods.seeds).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    confirm.locator("#more-items").click()
    expect(confirm.locator("#more-items")).to_be_disabled()  # 2: the most one person may take
    confirm.locator("#exchange").click()
    text = check_error(page)
    assert "あと 1 個" in text and "今年度" in text, text
    expect(confirm.locator("#exchange")).to_be_enabled()
    shoot(page, "limit")
    assert city.balance(resident) == 800

    # Fewer is fine.
    confirm.locator("#fewer").click()
    expect(page.locator("#error")).to_be_hidden()
    confirm.locator("#exchange").click()
    on_screen(page, "exchanged")
    expect(page.locator("#receipt-points")).to_have_text(points(200))
    assert city.balance(resident) == 600

    # More than the balance: how many points there are, before anything is sent.
    go_home(page)
    open_catalog(page)
    card(page, goods.bag).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    confirm.locator("#more-items").click()
    expect(confirm.locator("#balance-after")).to_have_text(re.compile(r"^-400\s*pt$"))
    confirm.locator("#exchange").click()
    text = check_error(page)
    assert "残高が足りません" in text and "600 pt" in text, text
    shoot(page, "balance")

    # Both of this fiscal year taken (one elsewhere, one here): none left.
    go_home(page)
    open_catalog(page)
    card(page, goods.seeds).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    confirm.locator("#exchange").click()
    text = check_error(page)
    assert "上限" in text and "ほかの品物" in text, text

    # An item no longer offered (retired by an admin after the list was shown).
    retired = city.write(
        lambda session: (
            catalog.create_item(
                session,
                SYSTEM,
                system_clock(),
                catalog.NewItem(
                    merchant_id=goods.counter_id,
                    point_type=POINT_TYPE,
                    name_ja=f"限定品 {uuid.uuid4().hex[:4]}",
                    name_en="A limited item",
                    points=100,
                    stock=5,
                ),
            ).id
        )
    )
    go_home(page)
    open_catalog(page)
    card(page, retired).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    city.write(
        lambda session: catalog.change_item(
            session,
            SYSTEM,
            system_clock(),
            retired,
            catalog.ItemChange(status=catalog.ItemStatus.RETIRED),
        )
    )
    confirm.locator("#exchange").click()
    text = check_error(page)
    assert "終わりました" in text and "ほかの品物" in text, text
    confirm.locator("#cancel").click()
    shown = on_screen(page, "exchange")
    expect(shown.locator("#catalog")).to_be_visible()
    expect(card(page, retired)).to_have_count(0)
    assert city.balance(resident) == 600


def test_an_exchange_whose_answer_was_lost_is_sent_again_once(
    page: Page, city: City, goods: Catalog
) -> None:
    resident = city.new_resident(1_000)
    enrol(page, resident.counter_code)
    open_catalog(page)
    card(page, goods.bag).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")

    sent: list[Request] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request)
            if request.method == "POST" and request.url.endswith("/api/v1/me/exchanges")
            else None
        ),
    )
    reached: list[int] = []

    def cut(route: Route) -> None:
        if reached:
            route.continue_()
            return
        reached.append(route.fetch().status)  # the server exchanged...
        route.abort()  # ...and the phone never heard of it

    page.route(EXCHANGES, cut)
    confirm.locator("#exchange").click()
    check_error(page)
    assert reached == [201]
    retry = confirm.locator("#exchange")
    expect(retry).to_have_text("もう一度送る")
    # The quantity is what was sent: it cannot change until the answer is known.
    expect(confirm.locator("#more-items")).to_be_disabled()
    page.unroute(EXCHANGES, cut)
    retry.click()
    on_screen(page, "exchanged")
    expect(page.locator("#receipt-points")).to_have_text(points(500))

    keys = [request.headers.get("idempotency-key") for request in sent]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    assert city.balance(resident) == 500


def test_in_english(page: Page, city: City, goods: Catalog, shoot: Shoot) -> None:
    resident = city.new_resident(900)
    exchange_by_api(city, resident, goods.seeds, 1)
    enrol(page, resident.counter_code)
    page.locator("#lang").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#go-exchange")).to_have_text("Exchange points for goods")

    shown = open_catalog(page)
    expect(shown.locator("h1")).to_have_text("Exchange for goods")
    expect(shown.locator("#exchange-balance")).to_contain_text(points(700))
    bag = card(page, goods.bag)
    expect(bag.locator("h2")).to_have_text(BAG_EN)
    expect(bag.locator("img")).to_have_attribute("alt", BAG_EN)
    expect(bag.locator(".stock")).to_have_text(re.compile(r"^\d+ left$"))
    expect(card(page, goods.towel)).to_contain_text("Out of stock")
    expect(card(page, goods.towel).locator("button")).to_be_disabled()
    expect(card(page, goods.seeds)).to_contain_text("Up to 2 per person each fiscal year")
    assert not japanese_in(shown.inner_text()), shown.inner_text()
    shoot(page, "catalog-en")

    # Over the limit: a sentence in English saying how many are left.
    card(page, goods.seeds).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    confirm.locator("#more-items").click()
    confirm.locator("#exchange").click()
    text = check_error(page, japanese=False)
    assert "1 more this fiscal year" in text, text
    assert not japanese_in(text), text
    shoot(page, "limit-en")

    confirm.locator("#cancel").click()
    open_again = on_screen(page, "exchange")
    expect(open_again.locator("#catalog")).to_be_visible()
    card(page, goods.bag).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    expect(confirm.locator("#exchange")).to_have_text("Exchange")
    confirm.locator("#exchange").click()
    done = on_screen(page, "exchanged")
    expect(done.locator("h1")).to_contain_text("Exchanged")
    expect(done.locator("#receipt-item")).to_have_text(BAG_EN)
    expect(done.locator("#receipt-quantity")).to_have_text("1")
    expect(done.locator("#receipt-counter")).to_have_text(COUNTER_EN)
    expect(done).to_contain_text("Show this screen at the counter")
    expect(done.locator("#receipt-at")).to_contain_text(
        re.compile(r"\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d")
    )
    expect(done.locator("#receipt-balance")).to_have_text(points(200))
    assert not japanese_in(done.inner_text()), done.inner_text()
    shoot(page, "receipt-en")
    done.locator("#done").click()
    expect_balance(page, 200)


@pytest.fixture
def sqlite_only(city: City) -> None:
    if city.server.backend != "sqlite":
        pytest.skip("the same on every database: SQLite only")


def test_the_exchange_screens_for_everyone(
    sqlite_only: None, page: Page, city: City, goods: Catalog, shoot: Shoot
) -> None:
    resident = city.new_resident(2_000)
    enrol(page, resident.counter_code)
    axe_each_size(page, "home", shoot)
    open_catalog(page)
    axe_each_size(page, "catalog", shoot)
    check_large_text(page, "catalog")

    # By keyboard: choose, one more, exchange.
    card(page, goods.bag).locator("button").focus()
    page.keyboard.press("Enter")
    confirm = on_screen(page, "exchange-confirm")
    axe_each_size(page, "confirm", shoot)
    check_large_text(page, "confirm")
    confirm.locator("#more-items").focus()
    page.keyboard.press("Enter")
    expect(confirm.locator("#quantity")).to_have_text("2 個")
    page.keyboard.press("Enter")  # the focus stayed on the stepper
    expect(confirm.locator("#quantity")).to_have_text("3 個")
    confirm.locator("#fewer").click()
    confirm.locator("#exchange").focus()
    page.keyboard.press("Enter")
    on_screen(page, "exchanged")
    expect(page.locator("#receipt-balance")).to_have_text(points(1_000))
    axe_each_size(page, "receipt", shoot)
    check_large_text(page, "receipt")

    # A refusal on screen (the limit per resident, in English too).
    go_home(page)
    open_catalog(page)
    card(page, goods.seeds).locator("button").click()
    confirm = on_screen(page, "exchange-confirm")
    exchange_by_api(city, resident, goods.seeds, 2)
    confirm.locator("#exchange").click()
    check_error(page)
    axe_each_size(page, "refused", shoot)
    page.locator("#lang").click()
    on_screen(page, "exchange-confirm")
    go_home(page)
    open_catalog(page)
    axe_each_size(page, "catalog-en", shoot)
