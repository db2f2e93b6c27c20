"""The office PCs' frame: a device code of counter, department (issuer), finance or admin staff
enrols a PC whose role's menu sits beside the screen at 1280x800; the menu follows the language
and the settings screen keeps it; signing out takes it away."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from points.registry import StaffRole

from .desk import desk_of, open_menu
from .live import City
from .wallet import axe, on_screen

pytestmark = pytest.mark.browser

HOMES = {
    StaffRole.COUNTER: "counter-home",
    StaffRole.ISSUER: "department-home",
    StaffRole.FINANCE: "finance-home",
    StaffRole.ADMIN: "admin-home",
}


@pytest.mark.parametrize("role", list(HOMES), ids=str)
def test_each_office_role_gets_its_menu_and_home(
    browser: Browser, city: City, role: StaffRole
) -> None:
    with desk_of(browser, city, role, HOMES[role]) as (page, _):
        nav = page.locator("#desk-nav")
        expect(nav).to_be_visible()
        expect(nav.locator('[aria-current="page"]')).to_have_count(1)
        expect(page.locator("body")).to_have_class("desk")
        axe(page, f"{role} home")
        settings = open_menu(page, "settings", "settings")
        expect(nav.locator("#menu-settings")).to_have_attribute("aria-current", "page")
        settings.locator("#lang-en").click()
        expect(nav.locator("#menu-settings")).to_have_text("Settings")
        settings.locator("#lang-ja").click()
        settings.locator("#signout").click()
        settings.locator("#signout-confirm").click()
        on_screen(page, "enrol")
        expect(nav).to_be_hidden()
