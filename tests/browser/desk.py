"""Steps of the city's office PCs in the staff app (``/staff/``): counter, department, finance and
admin, each enrolled with a device code of a member of staff of that role (``City.new_staff`` and
``City.device_code(staff_id=...)``), at 1280x800 (``DESK``). Screens are ``<section
data-screen="NAME">`` inside ``<main id="view">``; the role's menu is ``<nav id="desk-nav">`` with
links ``#menu-<route>``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, Locator, Page

from points.registry import StaffRole

from .live import City
from .till import new_device
from .wallet import axe, check_error, on_screen

DESK = {"width": 1280, "height": 800}


def new_desk(browser: Browser, city: City) -> Page:
    """A new browser context at 1280x800 in Japanese (its own cookie); close its context after."""
    return new_device(browser, city, DESK)


def enrol_desk(page: Page, city: City, role: StaffRole, home: str) -> tuple[str, Locator]:
    """A new member of staff of ``role``, this browser enrolled as their PC with a device code:
    their staff id and the role's home screen (``data-screen=home``)."""
    staff_id = city.new_staff(role)
    code = city.device_code(staff_id=staff_id)
    page.goto("/staff/#/enrol")
    enrol = on_screen(page, "enrol")
    enrol.locator("#code").fill(code)
    enrol.locator("#enrol-code").click()
    return staff_id, on_screen(page, home)


@contextmanager
def desk_of(
    browser: Browser, city: City, role: StaffRole, home: str
) -> Iterator[tuple[Page, Locator]]:
    """A new desk (``new_desk``) enrolled as a PC of a new member of staff of ``role``
    (``enrol_desk``): the page and the role's home screen; its context closed after."""
    page = new_desk(browser, city)
    try:
        _, screen = enrol_desk(page, city, role, home)
        yield page, screen
    finally:
        page.context.close()


def open_menu(page: Page, route: str, screen: str) -> Locator:
    """Click the menu item ``route``: the screen ``screen``."""
    page.locator(f"#desk-nav #menu-{route}").click()
    return on_screen(page, screen)


def refused_first(
    page: Page, screen: Locator, go: str, fills: dict[str, str], *, check: str = ""
) -> str:
    """Click ``#go`` on ``screen`` with its form as it is (empty, or wrong): the screen's error
    line says why (that sentence is returned, nothing is done); then each ``#id`` of ``fills`` is
    filled with its value, axe checks the page as ``check`` (when given) and ``#go`` is clicked
    again."""
    screen.locator(f"#{go}").click()
    sentence = check_error(page)
    for field, value in fills.items():
        screen.locator(f"#{field}").fill(value)
    if check:
        axe(page, check)
    screen.locator(f"#{go}").click()
    return sentence
