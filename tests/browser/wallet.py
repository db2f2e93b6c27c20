"""Steps of a resident in the wallet app, against its DOM contract (screens are
``<section data-screen="NAME">`` inside ``<main id="view">``; see the test modules)."""

from __future__ import annotations

import re
from datetime import date

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page, expect

from .camera import FakeCamera

#: Japanese script (kana, kanji, full-width forms and CJK punctuation).
JAPANESE = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")
#: ASCII words a Japanese error may hold.
ALLOWED_ASCII_WORDS = {"pt", "qr"}
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa"]},
    "resultTypes": ["violations"],
}
_axe = Axe()


def screen(page: Page, name: str) -> Locator:
    return page.locator(f'#view [data-screen="{name}"]')


def on_screen(page: Page, name: str) -> Locator:
    """Wait until screen ``name`` is the one shown; returns it."""
    shown = screen(page, name)
    expect(shown).to_be_visible()
    return shown


def points(amount: int) -> re.Pattern[str]:
    """``1,200 pt`` (whatever spaces around)."""
    return re.compile(rf"(^|[^\d,]){amount:,}\s*pt\b")


def japanese_date(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def enrol(page: Page, counter_code: str) -> None:
    """From the enrol screen to home with a counter code (through the welcome screen)."""
    page.goto("/app/#/enrol")
    on_screen(page, "enrol")
    page.locator("#code").fill(counter_code)
    page.locator("#enrol-code").click()
    on_screen(page, "welcome")
    page.locator("#to-home").click()
    on_screen(page, "home")


def go_home(page: Page) -> Locator:
    page.goto("/app/#/home")
    return on_screen(page, "home")


def scan(page: Page, camera: FakeCamera, text: str | None) -> None:
    """Show ``text`` to the camera and press Scan on home (the app moves on by itself)."""
    camera.show(text)
    on_screen(page, "home")
    page.locator("#go-scan").click()


def expect_balance(page: Page, amount: int) -> None:
    on_screen(page, "home")
    expect(page.locator("#balance")).to_have_text(points(amount))


def check_error(page: Page, *, japanese: bool = True) -> str:
    """The screen's one error: role=alert, a plain sentence (no error code; on a Japanese
    screen no ASCII word but pt and QR). Returns its text."""
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_count(1)
    expect(error).to_have_attribute("role", "alert")
    text = error.inner_text().strip()
    assert text, "the error is empty"
    assert not re.search(r"[a-z]+_[a-z_]+", text), f"an error code shows: {text!r}"
    if japanese:
        words = {word.lower() for word in re.findall(r"[A-Za-z]+", text)}
        assert words <= ALLOWED_ASCII_WORDS, f"ASCII words in a Japanese error: {text!r}"
    return text


def axe(page: Page, label: str = "") -> None:
    """axe-core (WCAG 2 A and AA): no serious or critical violation."""
    results = _axe.run(page, options=AXE_OPTIONS)
    bad = [
        violation
        for violation in results.response["violations"]
        if violation.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"axe on {label or page.url}:\n{results.generate_report()}"


def japanese_in(text: str) -> list[str]:
    return JAPANESE.findall(text)
