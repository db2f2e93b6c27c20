"""Fixtures of the wallet app's browser tests: a live ``points serve`` per database, a city
seeded in it, Debian's Chromium with a fake camera, and a fresh browser context per test.

Run them alone with ``.venv/bin/pytest tests/browser`` (``-m browser`` selects them from the
whole suite; PostgreSQL too when ``POINTS_TEST_POSTGRES_URL`` is set). Screenshots go to
``tests/browser/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from .camera import FakeCamera
from .live import City, Server, seed_city, serving

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BACKENDS = ["sqlite", "postgresql"]
#: How long an ``expect`` waits (ms): a screen appears in well under a second; the margin is
#: for a loaded machine, not for sleeping.
EXPECT_TIMEOUT = 10_000
VIEWPORT = {"width": 360, "height": 640}


def chromium_executable() -> str | None:
    """The real binary of Debian's chromium package (the ``chromium`` on PATH is a wrapper
    script adding flags of its own)."""
    try:
        listed = subprocess.run(
            ["dpkg", "-L", "chromium"], capture_output=True, text=True, check=False
        ).stdout.splitlines()
    except OSError:
        listed = []
    for line in listed:
        if line.endswith("lib/chromium/chromium") and os.access(line, os.X_OK):
            return line
    return shutil.which("chromium")


@pytest.fixture(scope="package", params=BACKENDS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``points serve`` on a fresh database of each backend, for all the browser tests."""
    backend = str(request.param)
    if backend == "postgresql" and not os.environ.get("POINTS_TEST_POSTGRES_URL"):
        pytest.skip("POINTS_TEST_POSTGRES_URL is not set")
    with serving(backend, request, tmp_path_factory.mktemp(f"live-{backend}")) as server:
        yield server


@pytest.fixture(scope="package")
def city(live: Server) -> City:
    return seed_city(live)


# Package scope, not session: Playwright's sync API keeps an asyncio loop marked as running in
# this thread while it is open, and tests outside this package that call anyio.run would fail.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as instance:
        expect.set_options(timeout=EXPECT_TIMEOUT)
        yield instance


@pytest.fixture(scope="package")
def camera(tmp_path_factory: pytest.TempPathFactory) -> FakeCamera:
    """``camera.show(text)``: what the fake camera shows the next time a page opens it."""
    return FakeCamera(tmp_path_factory.mktemp("camera") / "camera.y4m")


@pytest.fixture(scope="package")
def browser(playwright: Playwright, camera: FakeCamera) -> Iterator[Browser]:
    executable = chromium_executable()
    if executable is None:
        # CI installs it (.ci/run) and says the browser tests must run; a laptop without it skips.
        if os.environ.get("POINTS_TEST_BROWSER") == "required":
            pytest.fail("POINTS_TEST_BROWSER=required but Debian's chromium is not installed")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium fonts-noto-cjk)")
    launched = playwright.chromium.launch(
        executable_path=executable,
        args=[
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera.path}",
        ],
    )
    yield launched
    launched.close()


@pytest.fixture
def page(browser: Browser, city: City) -> Iterator[Page]:
    """A new context (its own cookies: its own session) at 360x640 in Japanese, on the live
    server of this test's backend."""
    context = browser.new_context(viewport=VIEWPORT, locale="ja-JP", base_url=city.server.url)
    context.set_default_timeout(EXPECT_TIMEOUT)
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture
def shoot(live: Server, request: pytest.FixtureRequest) -> Callable[..., Path]:
    """``shoot(page, "home")`` (or ``shoot(locator, name)``): a screenshot in artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    test = request.node.originalname

    def take(target: object, name: str) -> Path:
        path = ARTIFACTS / f"{test}-{name}-{live.backend}.png"
        target.screenshot(path=str(path))  # type: ignore[attr-defined]
        return path

    return take
