"""The staff devices' app (``mobile_web/staff/``), read as files and served by the API: at
``/staff/`` with the web apps' CSP and no-cache, no inline script or style, every module import a
file (the wallet's shared modules included, never the wallet's own screens), the same words in
both languages, and a plain sentence in each for every refusal the till's API can answer. The app
itself is tested in a real browser in ``tests/browser/test_till_*.py``."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_world import world_settings
from conftest import FakeClock
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.app import create_app
from api.safety import APP_CACHE_CONTROL, WEB_CSP
from mobile_web.static import APP_DIR, STAFF_DIR

ROOT = Path(__file__).resolve().parents[1]
WEB_ROOT = STAFF_DIR.parent
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
#: The staff app's own files (HTML, CSS, JS, manifest), gzipped, at most: the till's screens and
#: the four office PCs' (counter, department, finance, admin). A device loads only its own role's
#: modules (desks.js imports them when needed).
SHELL_LIMIT_BYTES = 160 * 1024
#: The wallet's modules the staff app may import; the wallet's screens (main.js starts the wallet
#: when imported) never.
SHARED = {"api.js", "dom.js", "i18n.js", "qr.js", "strings-ja.js", "strings-en.js"}
IMPORT = re.compile(r'(?:from|import)\s*\(?\s*"(\.{1,2}/[^"]+)"')
#: The refusals of the sessions a device starts (POST /api/v1/sessions/device, …/current) and
#: of any route: the till must say each of them in a sentence.
SESSION_CODES = {
    "enrolment_code_invalid",
    "enrolment_code_used",
    "enrolment_code_expired",
    "session_expired",
    "unauthenticated",
    "csrf_refused",
    "forbidden",
    "not_found",
    "validation_error",
    "rate_limited",
    "request_in_progress",
    "idempotency_key_reused",
    "conflict",
    "unavailable",
    "internal_error",
}


def staff_files() -> list[Path]:
    return sorted(path for path in STAFF_DIR.rglob("*") if path.is_file())


def scripts() -> list[Path]:
    return sorted((STAFF_DIR / "js").glob("*.js"))


# Served ----------------------------------------------------------------------------------------


@pytest.fixture
def client(engine: Engine, clock: FakeClock, database_url: str) -> Iterator[TestClient]:
    app = create_app(world_settings(database_url), engine=engine, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as made:
        yield made


@SQLITE_ONLY
def test_the_staff_app_is_served_with_the_web_policy_and_revalidated(client: TestClient) -> None:
    page = client.get("/staff/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<main id="view"' in page.text
    for path in [
        "/staff/",
        *(f"/staff/{p.relative_to(STAFF_DIR).as_posix()}" for p in staff_files()),
    ]:
        served = client.get(path)
        assert served.status_code == 200, path
        assert served.headers["content-security-policy"] == WEB_CSP, path
        assert served.headers["cache-control"] == APP_CACHE_CONTROL, path
        assert served.headers["x-content-type-options"] == "nosniff", path
    assert "javascript" in client.get("/staff/js/main.js").headers["content-type"]
    # The wallet's modules it imports are served from /app/ under the same policy.
    shared = client.get("/app/js/api.js")
    assert shared.status_code == 200 and shared.headers["content-security-policy"] == WEB_CSP
    assert client.get("/staff/no-such-file.js").status_code == 404
    # The API keeps its own policy.
    assert client.get("/healthz").headers["content-security-policy"] != WEB_CSP


# Files -----------------------------------------------------------------------------------------


def test_no_inline_script_or_style_and_no_third_party_origin() -> None:
    html = (STAFF_DIR / "index.html").read_text("utf-8")
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL):
        assert script.strip() == ""
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    for path in staff_files():
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text("utf-8")
            assert not re.search(r"https?://(?!www\.w3\.org/)", text), path
            assert "innerHTML" not in text and "eval(" not in text, path


def test_every_file_the_page_names_exists() -> None:
    html = (STAFF_DIR / "index.html").read_text("utf-8")
    for target in re.findall(r'(?:href|src)="([^"#]+)"', html):
        assert (STAFF_DIR / target).resolve().is_file(), target
    manifest = json.loads((STAFF_DIR / "manifest.webmanifest").read_text("utf-8"))
    for icon in manifest["icons"]:
        assert (STAFF_DIR / icon["src"]).resolve().is_file(), icon


def imports_of(path: Path) -> list[Path]:
    return [(path.parent / target).resolve() for target in IMPORT.findall(path.read_text("utf-8"))]


def test_every_module_import_resolves_and_only_shared_wallet_modules_are_used() -> None:
    """Relative imports resolve the same on disk and at the URLs (/staff/ and /app/ are the
    folders ``staff`` and ``app`` side by side): every one must be a file, and the closure of
    the staff app's modules holds of the wallet's only the shared ones (its main.js would start
    the wallet on the staff page)."""
    seen: set[Path] = set()
    todo = [STAFF_DIR / "js" / "main.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for target in imports_of(path):
            assert target.is_file(), (path.name, target)
            assert target.is_relative_to(WEB_ROOT), (path.name, target)
            todo.append(target)
    wallet = {path.name for path in seen if path.is_relative_to(APP_DIR)}
    assert wallet <= SHARED, wallet - SHARED
    assert {"api.js", "dom.js", "i18n.js", "qr.js"} <= wallet
    # Every module of the staff app is reached from main.js (none left behind).
    assert set(scripts()) <= seen, set(scripts()) - seen
    # The worker qr.js starts reads jsQR from the wallet's vendor folder.
    assert (APP_DIR / "js" / "decode-worker.js").is_file()
    assert (APP_DIR / "vendor" / "jsqr" / "jsQR.js").is_file()


STATIC_IMPORT = re.compile(r'^(?:import|export)\s[^;]*?from\s*"(\./[^"]+)"', re.M)


def test_a_till_loads_no_office_screens() -> None:
    """The modules main.js loads before any screen (static imports, followed): no role's desk
    module or words; those come by ``import()`` when a PC of the role opens (desks.js)."""
    seen: set[str] = set()
    todo = ["main.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = (STAFF_DIR / "js" / name).read_text("utf-8")
        todo += [found.removeprefix("./") for found in STATIC_IMPORT.findall(text)]
    assert {"desk.js", "desks.js", "charge.js"} <= seen
    office = {name for name in seen if re.match(r"(counter|department|finance|admin|words-)", name)}
    assert not office, office


def test_the_shell_is_small(capsys: pytest.CaptureFixture[str]) -> None:
    gzipped = sum(
        len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0)) for path in staff_files()
    )
    with capsys.disabled():
        print(f"\nstaff app (own files): {gzipped / 1024:.1f} KB gzipped")
    assert gzipped <= SHELL_LIMIT_BYTES


# Words -----------------------------------------------------------------------------------------


def strings(language: str) -> str:
    return (STAFF_DIR / "js" / f"strings-{language}.js").read_text("utf-8")


def keys_of(language: str) -> list[str]:
    return re.findall(r"^\s{2,4}([a-zA-Z_]+):", strings(language), re.MULTILINE)


def problems_of(language: str) -> dict[str, str]:
    """The ``problems`` table: code → the source of its sentence (a string or a function)."""
    text = strings(language).split("\n  problems: {\n", 1)[1]
    found: dict[str, str] = {}
    for match in re.finditer(r"^    ([a-z_]+):(.*?)(?=^    [a-z_]+:|^  \},)", text, re.M | re.S):
        found[match.group(1)] = match.group(2).strip()
    return found


def error_codes() -> set[str]:
    """Every refusal code the services define (``code = "..."`` of the error classes)."""
    codes: set[str] = set()
    for name in ("points/errors.py", "redemption/errors.py"):
        codes |= set(re.findall(r'^\s+code = "([a-z_]+)"', (ROOT / name).read_text(), re.M))
    return codes


def merchant_refusals() -> set[str]:
    """The refusal codes the merchant routes name in their docstrings (``token_*`` standing for
    every token code), with the sessions' and every route's own."""
    known = error_codes()
    settlement = (ROOT / "api/routers/settlement.py").read_text()
    text = "".join(
        [
            (ROOT / "api/routers/merchant.py").read_text(),
            (ROOT / "api/card_payments.py").read_text(),
            # The shop's own statements (the finance routes before them are not the till's).
            settlement[settlement.index("@merchant_router.get(") :],
        ]
    )
    named = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", text)) & known
    tokens = {code for code in known if code.startswith("token_") and code != "token_refused"}
    return named | tokens | SESSION_CODES


def test_both_languages_have_the_same_words() -> None:
    assert keys_of("ja") == keys_of("en")
    assert len(keys_of("ja")) > 150


def test_each_desks_words_have_the_same_keys_in_both_languages() -> None:
    """words-<role>.js: ``export default { ja: {...}, en: {...} }`` with the same keys in the same
    order (the two-space-indented ``en:`` splits them)."""
    tables = sorted((STAFF_DIR / "js").glob("words-*.js"))
    assert {path.stem for path in tables} >= {
        "words-counter",
        "words-department",
        "words-finance",
        "words-admin",
    }
    for path in tables:
        text = path.read_text("utf-8")
        ja, en = text.split("\n  en: {\n", 1)
        pattern = re.compile(r"^\s{4,6}([a-zA-Z_]+):", re.MULTILINE)
        assert pattern.findall(ja) == pattern.findall(en), path.name
        assert pattern.findall(ja), path.name


def test_every_refusal_of_the_tills_api_has_a_sentence_in_both_languages() -> None:
    codes = merchant_refusals()
    # The ones the routes' docstrings name (a guard on the parsing itself).
    assert {"pin_incorrect", "card_locked", "refund_exceeds_payment", "till_required"} <= codes
    for language in ("ja", "en"):
        problems = problems_of(language)
        missing = codes - set(problems)
        assert not missing, (language, sorted(missing))
        for code, sentence in problems.items():
            assert code not in sentence, (language, code)  # never the code itself
            assert not re.search(r"\b[a-z]+_[a-z_]+\b", sentence), (language, code, sentence)
            if language == "ja":
                assert re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", sentence), (code, sentence)
    assert "network" in problems_of("ja") and "fallback" in problems_of("ja")


def test_every_code_the_scripts_test_for_has_a_sentence() -> None:
    used: set[str] = set()
    for path in scripts():
        used |= set(re.findall(r'code === "([a-z_]+)"', path.read_text("utf-8")))
        used |= set(re.findall(r'code !== "([a-z_]+)"', path.read_text("utf-8")))
    assert {"pin_incorrect", "card_locked", "payment_timed_out"} <= used
    for language in ("ja", "en"):
        assert used <= set(problems_of(language)), (language, used - set(problems_of(language)))
