"""Steps of a shop's staff in the staff app's till screens (``/staff/``), against its DOM
contract: screens are ``<section data-screen="NAME">`` inside ``<main id="view">`` as in the
wallet (``wallet.py`` has the shared helpers: ``on_screen``, ``check_error``, ``axe``)."""

from __future__ import annotations

import io
import re

import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from .live import SHOP_NAME_JA, TILL_NAME, City
from .wallet import on_screen

#: The till's home heading, in Japanese.
TILL_OF = f"{SHOP_NAME_JA}のレジ「{TILL_NAME}」"
PHONE = {"width": 360, "height": 640}
TABLET = {"width": 768, "height": 1024}
#: As the wallet's fixtures (conftest.py): an expect waits this long (ms).
EXPECT_TIMEOUT = 10_000


def new_device(browser: Browser, city: City, viewport: dict[str, int] | None = None) -> Page:
    """A browser context of its own (its own cookie: its own session), as the wallet's ``page``
    fixture makes them; closed with its context by the caller (``page.context.close()``)."""
    context: BrowserContext = browser.new_context(
        viewport=viewport or PHONE, locale="ja-JP", base_url=city.server.url
    )
    context.set_default_timeout(EXPECT_TIMEOUT)
    return context.new_page()


def enrol_till(page: Page, code: str, till_of: str = TILL_OF) -> Locator:
    """Type the device code on the enrolment screen; the till's home."""
    page.goto("/staff/#/enrol")
    enrol = on_screen(page, "enrol")
    enrol.locator("#code").fill(code)
    enrol.locator("#enrol-code").click()
    home = on_screen(page, "home")
    expect(home.locator("#till-of")).to_have_text(till_of)
    return home


def key_in(scope: Locator, digits: str) -> None:
    """Press the keypad's keys one by one."""
    for digit in digits:
        scope.locator(f'.keypad [data-key="{digit}"]').click()


def till_home(page: Page) -> Locator:
    page.goto("/staff/#/home")
    return on_screen(page, "home")


def qr_text(target: Locator) -> str:
    """The text of the QR code shown in ``target`` (zxing-cpp on a screenshot)."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(target.screenshot())))
    assert found, "zxing-cpp finds no QR code"
    return str(found[0].text)


def sound(page: Page) -> str | None:
    """The last sound the staff app played (its name), if any."""
    value = page.evaluate("() => document.documentElement.dataset.sound || null")
    return None if value is None else str(value)


def expect_sound(page: Page, name: str) -> None:
    expect(page.locator("html")).to_have_attribute("data-sound", name)


def no_digits(text: str) -> bool:
    return re.search(r"[0-9]", text) is None
