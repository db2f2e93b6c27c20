"""The wallet app's files (``mobile_web/app/``), read as files: vendored libraries as published,
the service worker's shell complete, no inline script or style, every module import resolvable,
the same words in both languages, and the size of the shell. The app itself is tested in a real
browser in ``tests/browser/``."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from mobile_web.static import APP_DIR

#: The app shell (HTML, CSS, JS and vendored libraries, icons excluded), gzipped, at most.
SHELL_LIMIT_BYTES = 100 * 1024


def shell_files() -> list[Path]:
    return sorted(
        path
        for path in APP_DIR.rglob("*")
        if path.is_file() and "icons" not in path.relative_to(APP_DIR).parts
    )


def shell_size() -> tuple[int, int]:
    """(bytes, bytes gzipped at level 9, file by file) of the shell."""
    raw = gzipped = 0
    for path in shell_files():
        data = path.read_bytes()
        raw += len(data)
        gzipped += len(gzip.compress(data, compresslevel=9, mtime=0))
    return raw, gzipped


def test_the_shell_is_at_most_100_kb_gzipped(capsys: pytest.CaptureFixture[str]) -> None:
    raw, gzipped = shell_size()
    with capsys.disabled():
        print(f"\nwallet app shell: {raw / 1024:.1f} KB, {gzipped / 1024:.1f} KB gzipped")
    assert gzipped <= SHELL_LIMIT_BYTES, f"{gzipped} bytes gzipped"


def test_vendored_libraries_are_as_published_with_their_licences() -> None:
    manifest = json.loads((APP_DIR / "vendor" / "MANIFEST.json").read_text("utf-8"))
    listed = set()
    for library in manifest["libraries"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", library["version"]), library
        assert library["licence"]
        assert any(name.endswith("LICENSE") for name in library["files"]), library
        for name, facts in library["files"].items():
            path = APP_DIR / "vendor" / name
            listed.add(path)
            assert path.is_file(), name
            if "sha256" in facts:
                assert hashlib.sha256(path.read_bytes()).hexdigest() == facts["sha256"], name
    vendored = {path for path in (APP_DIR / "vendor").rglob("*") if path.is_file()}
    assert vendored - listed == {APP_DIR / "vendor" / "MANIFEST.json"}


def test_the_service_worker_caches_every_file_the_shell_needs() -> None:
    worker = (APP_DIR / "sw.js").read_text("utf-8")
    shell = set(re.findall(r'^\s*"([^"]+)",$', worker, re.MULTILINE))
    needed = {
        str(path.relative_to(APP_DIR))
        for path in shell_files()
        if path.suffix in {".html", ".css", ".js", ".webmanifest"}
        and path.name != "sw.js"
        and path.parent.name != "jsqr"
    } | {"vendor/jsqr/jsQR.js"}
    assert needed <= shell, needed - shell
    for name in shell - {"./"}:
        assert (APP_DIR / name).is_file(), name


def test_no_inline_script_or_style_and_no_third_party_origin() -> None:
    html = (APP_DIR / "index.html").read_text("utf-8")
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.DOTALL):
        assert script.strip() == ""
    assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
    for path in shell_files():
        if path.suffix in {".html", ".css", ".js"} and "vendor" not in path.parts:
            text = path.read_text("utf-8")
            assert not re.search(r"https?://(?!www\.w3\.org/)", text), path
            assert "innerHTML" not in text and "eval(" not in text, path


def test_every_module_import_is_a_file_of_the_app() -> None:
    for path in (APP_DIR / "js").glob("*.js"):
        for target in re.findall(r'from "(\.[^"]+)"', path.read_text("utf-8")):
            assert (path.parent / target).resolve().is_file(), (path.name, target)


def keys_of(language: str) -> list[str]:
    text = (APP_DIR / "js" / f"strings-{language}.js").read_text("utf-8")
    return re.findall(r"^\s{2,4}([a-zA-Z_]+):", text, re.MULTILINE)


def test_both_languages_have_the_same_words() -> None:
    assert keys_of("ja") == keys_of("en")
    assert len(keys_of("ja")) > 80
