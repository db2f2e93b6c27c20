"""The wallet app for everyone and against other sites (SQLite only: nothing here depends on
the database): axe-core on every screen at a phone's and a desktop's size, the main buttons by
keyboard alone, text at 200 % without horizontal scrolling or cut-off text, and a page of
another site that tries to change the resident's pay-code limit, or sign the resident out, with
the resident's cookie."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .camera import FakeCamera
from .live import City, Server, free_port
from .wallet import axe, enrol, go_home, on_screen, scan

pytestmark = pytest.mark.browser
Shoot = Callable[..., Path]

SIZES = [{"width": 360, "height": 640}, {"width": 1280, "height": 800}]
#: Elements whose text is wider than their box (ignoring the QR code's SVG and text for
#: screen readers only).
CUT_OFF = """() => {
  const cut = [];
  for (const element of document.querySelectorAll('#view *, header *')) {
    if (element.closest('svg')) continue;
    const ownText = [...element.childNodes].some(
      node => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
    if (!ownText || element.clientWidth === 0) continue;
    // Text for screen readers only (1 px, clipped) is meant to be invisible.
    const style = getComputedStyle(element);
    if (element.clientWidth <= 1 || style.clip.startsWith('rect') || style.clipPath !== 'none') {
      continue;
    }
    if (element.scrollWidth > element.clientWidth + 1) {
      cut.push(`${element.tagName.toLowerCase()}#${element.id}: ${element.textContent.trim()}`
        + ` (${element.scrollWidth} > ${element.clientWidth})`);
    }
  }
  return cut;
}"""
HORIZONTAL_SCROLL = "() => [document.documentElement.scrollWidth, window.innerWidth]"


@pytest.fixture
def sqlite_only(live: Server) -> None:
    if live.backend != "sqlite":
        pytest.skip("the same on every database: SQLite only")


def axe_each_size(page: Page, label: str, shoot: Shoot) -> None:
    """axe at each size, and a screenshot of the screen at each (artifacts/)."""
    for size in SIZES:
        page.set_viewport_size(size)
        axe(page, f"{label} at {size['width']}x{size['height']}")
        shoot(page, f"{label}-{size['width']}")
    page.set_viewport_size(SIZES[0])


def tab_to(page: Page, element_id: str, presses: int = 40) -> None:
    """Press Tab until ``#element_id`` has the focus (from wherever the focus is)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement && document.activeElement.id") == (
            element_id
        ):
            return
    raise AssertionError(f"Tab never reaches #{element_id}")


def check_large_text(page: Page, label: str) -> None:
    page.evaluate("() => { document.documentElement.style.fontSize = '200%'; }")
    try:
        scroll_width, inner_width = page.evaluate(HORIZONTAL_SCROLL)
        assert scroll_width <= inner_width, f"{label} at 200 %: scrolls sideways"
        cut = page.evaluate(CUT_OFF)
        assert not cut, f"{label} at 200 %: text cut off: {cut}"
    finally:
        page.evaluate("() => { document.documentElement.style.fontSize = ''; }")


def test_every_screen_for_everyone(
    sqlite_only: None, page: Page, city: City, camera: FakeCamera, shoot: Shoot
) -> None:
    resident = city.new_resident(1_500, expiring=300)
    page.goto("/app/#/enrol")
    on_screen(page, "enrol")
    axe_each_size(page, "enrol", shoot)
    page.locator("#code").fill(resident.counter_code)
    page.locator("#enrol-code").click()
    on_screen(page, "welcome")
    axe_each_size(page, "welcome", shoot)
    page.locator("#to-home").click()
    on_screen(page, "home")
    axe_each_size(page, "home", shoot)
    check_large_text(page, "home")

    for link, name in (
        ("#go-balance", "balance"),
        ("#go-history", "history"),
        ("#go-settings", "settings"),
        ("#go-paycode", "paycode"),
    ):
        go_home(page)
        page.locator(link).click()
        on_screen(page, name)
        axe_each_size(page, name, shoot)
        if name == "paycode":
            check_large_text(page, "paycode")

    # The scan screen (the camera sees nothing), then a preview and the paid screen.
    go_home(page)
    scan(page, camera, None)
    on_screen(page, "scan")
    expect(page.locator("video#camera")).to_be_visible()
    axe_each_size(page, "scan", shoot)
    page.locator("#cancel").click()
    on_screen(page, "home")

    # By keyboard alone: Scan, Pay, Done.
    camera.show(city.payment_request(100))
    tab_to(page, "go-scan")
    page.keyboard.press("Enter")
    on_screen(page, "preview")
    axe_each_size(page, "preview", shoot)
    check_large_text(page, "preview")
    tab_to(page, "pay")
    page.keyboard.press("Enter")
    on_screen(page, "paid")
    axe_each_size(page, "paid", shoot)
    tab_to(page, "done")
    page.keyboard.press("Enter")
    on_screen(page, "home")
    for element_id, name in (
        ("go-history", "history"),
        ("go-balance", "balance"),
        ("go-settings", "settings"),
        ("go-paycode", "paycode"),
    ):
        go_home(page)
        tab_to(page, element_id)
        page.keyboard.press("Enter")
        on_screen(page, name)
    assert city.balance(resident) == 1_700


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[str]:
    """A tiny web server of another site: ``http://localhost:PORT`` (127.0.0.1 is the app's)."""
    port = free_port()
    handler = functools.partial(_Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


FORGERY = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>win a prize</title></head><body>
<iframe name="sink" title="sink"></iframe>
<iframe name="sink2" title="sink2"></iframe>
<form id="forged" method="POST" action="{target}" enctype="text/plain" target="sink">
<input type="hidden" name='{{"pay_code_limit": 1, "x": "' value='"}}'>
</form>
<form id="signout" method="POST" action="{signout}" target="sink2"></form>
<script>
const target = "{target}";
const body = JSON.stringify({{pay_code_limit: 1}});
const loaded = name => new Promise(resolve => document.querySelector(`iframe[name=${{name}}]`)
  .addEventListener('load', resolve, {{once: true}}));
const formDone = loaded('sink');
const signoutDone = loaded('sink2');
document.getElementById('forged').submit();
document.getElementById('signout').submit();
Promise.allSettled([
  formDone,
  signoutDone,
  fetch("{signout}", {{method: 'POST', credentials: 'include',
    headers: {{'X-Points-Client': 'wallet'}}}}),
  fetch(target, {{method: 'PUT', credentials: 'include', body,
    headers: {{'Content-Type': 'application/json', 'X-Points-Client': 'wallet'}}}}),
  fetch(target, {{method: 'PUT', credentials: 'include', body}}),
  fetch(target, {{method: 'POST', mode: 'no-cors', credentials: 'include', body,
    headers: {{'Content-Type': 'text/plain'}}}}),
]).then(() => {{ document.title = 'done'; }});
</script></body></html>
"""


def test_another_site_cannot_change_the_pay_code_limit_or_sign_out(
    sqlite_only: None, page: Page, city: City, other_site: str, tmp_path: Path
) -> None:
    resident = city.new_resident(100)
    enrol(page, resident.counter_code)
    assert any(cookie["name"] == "points_session" for cookie in page.context.cookies())
    target = f"{city.server.url}/api/v1/me/payment-settings"
    signout = f"{city.server.url}/api/v1/sessions/end"
    (tmp_path / "prize.html").write_text(
        FORGERY.format(target=target, signout=signout), encoding="utf-8"
    )

    page.goto(f"{other_site}/prize.html")
    expect(page).to_have_title("done")
    assert city.pay_code_limit(resident) == 5_000

    # Nor sign the resident out: the session still works, and the app itself may change the
    # limit.
    page.goto(f"{city.server.url}/app/#/settings")
    settings = on_screen(page, "settings")
    expect(settings.locator("#limit")).to_have_value("5000")
    settings.locator("#limit").fill("3000")
    settings.locator("#save-limit").click()
    expect(settings.locator("#limit")).to_have_value("3000")
    page.reload()
    expect(on_screen(page, "settings").locator("#limit")).to_have_value("3000")
    assert city.pay_code_limit(resident) == 3_000
