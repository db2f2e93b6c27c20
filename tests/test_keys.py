"""The QR signing keys: the key directory, ``KeyRing``, ``points keys`` and ``GET /api/v1/keys``.

Key directories live under ``tmp_path``; the commands and the API that touch the database run
on SQLite and PostgreSQL (the ``database_url`` and ``engine`` fixtures).
"""

from __future__ import annotations

import base64
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.app import create_app
from points import keys
from points.errors import (
    KeyActive,
    KeyDirectoryMissing,
    KeyExists,
    KeyFileUnsafe,
    KeyInUse,
    KeyNotFound,
    NoPinPepper,
    NoSigningKey,
)
from points.keys import KeyRing, KeyStatus
from points.settings import Settings
from points.shell import cli
from points.shell.cli import main

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run(key_dir: Path, *args: str, url: str | None = None, **env: str) -> Result:
    environment = {"POINTS_KEY_DIR": str(key_dir), **env}
    if url is not None:
        environment["POINTS_DATABASE_URL"] = url
    return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)


def pem_texts(key_dir: Path) -> list[str]:
    return [path.read_text() for path in sorted(key_dir.glob("key-*.pem"))]


def assert_no_private_key(text: str, key_dir: Path) -> None:
    assert "PRIVATE KEY" not in text
    for pem in pem_texts(key_dir):
        body = "".join(pem.splitlines()[1:-1])
        assert body not in text
        # Nor the 32-byte seed in the encodings a careless line would use.
        der = base64.b64decode(body)
        seed = der[-32:]
        for encoded in (seed.hex(), base64.b64encode(seed).decode(), keys._b64(seed)):
            assert encoded not in text


# The key directory and KeyRing ---------------------------------------------------------------


def test_init_writes_owner_only_files_and_refuses_a_second_time(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    created = keys.init_keys(key_dir, NOW)
    assert created is not None
    assert (created.kid, created.status, created.created_at) == (1, KeyStatus.ACTIVE, NOW)
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    files = sorted(path.name for path in key_dir.iterdir() if not path.name.startswith("."))
    assert files == ["key-00001.json", "key-00001.pem", "pin-pepper"]
    assert len(keys.KeyRing(key_dir).pin_pepper()) == keys.PEPPER_SIZE
    for path in key_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert pem_texts(key_dir)[0].startswith("-----BEGIN PRIVATE KEY-----")  # PKCS8
    meta = json.loads((key_dir / "key-00001.json").read_text())
    assert meta == {
        "kid": 1,
        "status": "active",
        "created_at": NOW.isoformat(),
        "retired_at": None,
        "public_key": created.public_key_text,
    }
    with pytest.raises(KeyExists):
        keys.init_keys(key_dir, LATER)
    assert len(list(key_dir.glob("key-*"))) == 2  # nothing overwritten


def test_init_adds_the_pin_pepper_to_a_directory_from_before_it(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    (key_dir / keys.PEPPER_FILE).unlink()
    with pytest.raises(NoPinPepper) as missing:
        keys.KeyRing(key_dir).pin_pepper()
    assert missing.value.code == "no_pin_pepper"  # its own code (a NoSigningKey still)
    assert keys.init_keys(key_dir, LATER) is None  # the pepper only
    pepper = keys.KeyRing(key_dir).pin_pepper()
    assert len(pepper) == keys.PEPPER_SIZE and pepper != bytes(keys.PEPPER_SIZE)
    assert stat.S_IMODE((key_dir / keys.PEPPER_FILE).stat().st_mode) == 0o600
    assert [info.kid for info in keys.list_keys(key_dir)] == [1]
    with pytest.raises(KeyExists):
        keys.init_keys(key_dir, LATER)
    assert keys.KeyRing(key_dir).pin_pepper() == pepper  # never replaced
    (key_dir / keys.PEPPER_FILE).chmod(0o644)
    with pytest.raises(KeyFileUnsafe):
        keys.KeyRing(key_dir).pin_pepper()


def test_a_rotated_away_key_still_verifies_and_a_retired_one_never(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    ticks = Ticks()
    ring = KeyRing(key_dir, monotonic=ticks)
    kid, first = ring.signing_key()
    signature = first.sign(b"a token")
    assert kid == 1

    keys.rotate(key_dir, LATER)
    ticks.now += 60  # the periodic re-read
    assert ring.signing_key()[0] == 2
    old = ring.lookup(1)
    assert old is not None
    assert old.status is KeyStatus.VERIFYING
    old.public_key.verify(signature, b"a token")  # raises when it does not verify
    assert [(info.kid, info.status) for info in ring.public_keys()] == [
        (1, KeyStatus.VERIFYING),
        (2, KeyStatus.ACTIVE),
    ]

    with pytest.raises(KeyActive):
        keys.retire(key_dir, 2, LATER, live_printed_tokens=0, force=True)
    with pytest.raises(KeyNotFound):
        keys.retire(key_dir, 3, LATER, live_printed_tokens=0, force=True)
    retired = keys.retire(key_dir, 1, LATER, live_printed_tokens=0, force=False)
    assert (retired.status, retired.retired_at) == (KeyStatus.RETIRED, LATER)
    assert not (key_dir / "key-00001.pem").exists()  # its private key is gone
    # Retiring again changes nothing.
    assert keys.retire(key_dir, 1, NOW, live_printed_tokens=5, force=False) == retired

    assert ring.lookup(1) == old  # cached: seen at the next periodic re-read...
    ticks.now += 60
    seen = ring.lookup(1)
    assert seen is not None
    assert (seen.status, seen.retired_at) == (KeyStatus.RETIRED, LATER)
    with pytest.raises(InvalidSignature):
        seen.public_key.verify(signature, b"another token")
    assert ring.signing_key()[0] == 2


def test_an_unknown_key_id_rereads_the_directory(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    ticks = Ticks()  # frozen: no periodic re-read in this test
    ring = KeyRing(key_dir, monotonic=ticks)
    assert ring.lookup(2) is None

    # Another host (here another ring, and the command in another process) rotates.
    other = KeyRing(key_dir)
    result = run(key_dir, "keys", "rotate")
    assert result.exit_code == 0, result.output
    assert other.lookup(2) is not None
    found = ring.lookup(2)
    assert found is not None
    assert found.status is KeyStatus.ACTIVE
    assert ring.signing_key()[0] == 2  # the rotation is seen without a restart


def test_unknown_key_ids_do_not_read_an_unchanged_directory_each_time(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    ticks = Ticks()
    ring = KeyRing(key_dir, monotonic=ticks)
    ring.public_keys()
    reads: list[int] = []
    original = ring.reload

    def counted() -> None:
        reads.append(1)
        original()

    ring.reload = counted  # type: ignore[method-assign]
    for kid in range(100, 150):
        assert ring.lookup(kid) is None
    assert reads == []  # forged ids: the directory has not changed
    ticks.now += keys.UNKNOWN_KID_REREAD_SECONDS
    assert ring.lookup(999) is None
    assert reads == [1]


def test_signing_needs_an_active_key(tmp_path: Path) -> None:
    with pytest.raises(NoSigningKey) as raised:
        KeyRing(tmp_path / "missing").signing_key()
    assert raised.value.code == "no_signing_key"
    assert KeyRing(tmp_path / "missing").public_keys() == []
    with pytest.raises(KeyDirectoryMissing, match="POINTS_KEY_DIR"):
        keys.list_keys(tmp_path / "missing")
    with pytest.raises(KeyDirectoryMissing):
        keys.rotate(tmp_path / "missing", NOW)


def test_key_files_others_may_read_are_refused(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    pem = key_dir / "key-00001.pem"
    pem.chmod(0o644)
    with pytest.raises(KeyFileUnsafe, match="chmod 600"):
        KeyRing(key_dir).signing_key()
    result = run(key_dir, "keys", "list")
    assert result.exit_code == 1
    assert "may be read by others" in result.output
    pem.chmod(0o600)
    key_dir.chmod(0o770)
    with pytest.raises(KeyFileUnsafe, match="chmod 700"):
        KeyRing(key_dir).signing_key()
    key_dir.chmod(0o700)
    assert KeyRing(key_dir).signing_key()[0] == 1


def test_broken_key_files_are_refused_with_their_reason(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    sidecar = key_dir / "key-00001.json"
    good = sidecar.read_text()
    for broken, reason in [
        ("{", "cannot be read"),
        (good.replace('"status": "active"', '"status": "lost"'), "cannot be read"),
        (good.replace('"kid": 1', '"kid": 7'), "not its own"),
    ]:
        sidecar.write_text(broken)
        with pytest.raises(KeyFileUnsafe, match=reason):
            KeyRing(key_dir).signing_key()
    sidecar.write_text(good)
    pem = key_dir / "key-00001.pem"
    text = pem.read_text()
    pem.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyFileUnsafe, match="not a readable private key"):
        KeyRing(key_dir).signing_key()
    pem.unlink()
    with pytest.raises(KeyFileUnsafe, match="is missing"):
        KeyRing(key_dir).signing_key()
    keys.init_keys(tmp_path / "other", NOW)
    pem.write_text((tmp_path / "other" / "key-00001.pem").read_text())
    pem.chmod(0o600)
    with pytest.raises(KeyFileUnsafe, match="does not match the public key"):
        KeyRing(key_dir).signing_key()
    pem.write_text(text)
    assert KeyRing(key_dir).signing_key()[0] == 1


def test_a_writer_leaves_no_temporary_file(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    keys.rotate(key_dir, NOW)
    keys.retire(key_dir, 1, NOW, live_printed_tokens=0, force=False)
    assert [path.name for path in key_dir.iterdir() if path.name.startswith(".tmp")] == []


def test_mid_rotation_the_highest_active_key_signs(tmp_path: Path) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    # A crash between writing the new key and demoting the old one leaves two active keys.
    keys._create_key(key_dir, 2, LATER)
    ring = KeyRing(key_dir)
    assert ring.signing_key()[0] == 2
    assert [info.status for info in ring.public_keys()] == [KeyStatus.VERIFYING, KeyStatus.ACTIVE]
    with pytest.raises(KeyActive):
        keys.retire(key_dir, 2, LATER, live_printed_tokens=0, force=False)
    assert keys.retire(key_dir, 1, LATER, live_printed_tokens=0, force=False).kid == 1


# The command -----------------------------------------------------------------------------------


def test_init_rotate_retire_list_through_the_command(tmp_path: Path, database_url: str) -> None:
    key_dir = tmp_path / "keys"
    outputs: list[str] = []

    def ok(*args: str) -> Result:
        result = run(key_dir, *args, url=database_url)
        outputs.append(result.output)
        assert result.exit_code == 0, result.output
        return result

    def refused(*args: str) -> Result:
        result = run(key_dir, *args, url=database_url)
        outputs.append(result.output)
        assert result.exit_code == 1, result.output
        return result

    refused("keys", "list")
    assert "POINTS_KEY_DIR" in outputs[-1]
    assert "created key 1 (active)" in ok("keys", "init").output
    assert "already holds 1 key" in refused("keys", "init").output
    assert "created key 2 (active)" in ok("keys", "rotate").output
    assert "created key 3 (active)" in ok("keys", "rotate").output
    assert "active signing key" in refused("keys", "retire", "3").output
    assert "no key 9" in refused("keys", "retire", "9").output
    assert run(key_dir, "keys", "retire", "0").exit_code == 2  # not a key id

    table = ok("keys", "list").output.splitlines()
    assert table[0].split() == list(cli.KEY_COLUMNS)
    assert [line.split()[:2] for line in table[1:]] == [
        ["1", "verifying"],
        ["2", "verifying"],
        ["3", "active"],
    ]
    assert [line.split()[-2:] for line in table[1:]] == [["-", "0"]] * 3

    assert ok("keys", "retire", "1").output.strip() == "key 1 retired"
    rows = [json.loads(line) for line in ok("keys", "list", "--json").output.splitlines()]
    assert [(row["kid"], row["status"]) for row in rows] == [
        (1, "retired"),
        (2, "verifying"),
        (3, "active"),
    ]
    assert rows[0]["retired_at"] is not None
    assert {row["live_printed_tokens"] for row in rows} == {0}
    assert [row["public_key"] for row in rows] == [
        info.public_key_text for info in keys.list_keys(key_dir)
    ]
    assert_no_private_key("\n".join(outputs), key_dir)


def test_retiring_a_key_printed_tokens_use_needs_force(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_dir = tmp_path / "keys"
    keys.init_keys(key_dir, NOW)
    keys.rotate(key_dir, NOW)
    targets: list[str] = []

    def tills(target: Session | Engine, kid: int) -> int:
        # A real counter queries its table; this one checks it is given the database.
        assert isinstance(target, Engine)
        with target.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        targets.append(target.url.render_as_string(hide_password=False))
        return {1: 3}.get(kid, 0)

    monkeypatch.setattr(keys, "PRINTED_TOKEN_COUNTERS", [tills])
    result = run(key_dir, "keys", "retire", "1", url=database_url)
    assert result.exit_code == 1
    assert "3 live printed token(s) use key 1" in result.output
    assert "--force" in result.output
    assert keys.list_keys(key_dir)[0].status is KeyStatus.VERIFYING
    with pytest.raises(KeyInUse) as raised:
        keys.retire(key_dir, 1, NOW, live_printed_tokens=3, force=False)
    assert raised.value.code == "key_in_use"

    rows = [
        json.loads(line)
        for line in run(key_dir, "keys", "list", "--json", url=database_url).output.splitlines()
    ]
    assert [row["live_printed_tokens"] for row in rows] == [3, 0]

    result = run(key_dir, "keys", "retire", "1", "--force", url=database_url)
    assert result.exit_code == 0, result.output
    assert "3 live printed code(s) stop working" in result.output
    assert keys.list_keys(key_dir)[0].status is KeyStatus.RETIRED
    assert targets and set(targets) == {
        sa.make_url(database_url).render_as_string(hide_password=False)
    }


PRODUCTION = {
    "POINTS_ENVIRONMENT": "production",
    "POINTS_SECRET_KEY": "a-production-secret-of-at-least-32-characters",
    "POINTS_PUBLIC_URL": "https://pay.komae.example",
    "POINTS_JOBS_ENABLED": "false",
}


def test_serve_in_production_refuses_to_start_without_an_active_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    monkeypatch.setattr(cli, "_serve", lambda *args: served.append("served"))
    url = f"sqlite:///{tmp_path / 'points.db'}"
    key_dir = tmp_path / "keys"

    result = run(key_dir, "serve", url=url, **PRODUCTION)
    assert result.exit_code == 1
    assert "cannot start" in result.output
    assert "POINTS_KEY_DIR" in result.output
    assert not key_dir.exists()  # never created silently in production

    key_dir.mkdir(mode=0o700)
    result = run(key_dir, "serve", url=url, **PRODUCTION)
    assert result.exit_code == 1
    assert "no active signing key" in result.output
    assert "points keys init" in result.output
    assert served == []

    keys.init_keys(key_dir, NOW)
    keys.rotate(key_dir, NOW)
    keys.retire(key_dir, 1, NOW, live_printed_tokens=0, force=False)
    result = run(key_dir, "serve", url=url, **PRODUCTION)
    assert result.exit_code == 0, result.output
    assert served == ["served"]
    assert "created signing key" not in result.output  # never created in production
    assert_no_private_key(result.output, key_dir)


def test_serve_in_development_creates_the_first_key_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "_serve", lambda *args: None)
    url = f"sqlite:///{tmp_path / 'points.db'}"
    key_dir = tmp_path / "keys"
    result = run(key_dir, "serve", url=url, POINTS_JOBS_ENABLED="false")
    assert result.exit_code == 0, result.output
    assert f"created signing key 1 in {key_dir}" in result.stderr
    assert "created signing key" not in result.stdout
    assert [info.kid for info in keys.list_keys(key_dir)] == [1]
    again = run(key_dir, "serve", url=url, POINTS_JOBS_ENABLED="false")
    assert again.exit_code == 0
    assert "created signing key" not in again.output  # a key exists: nothing created
    assert_no_private_key(result.output + again.output, key_dir)


# Settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://pay.komae.example", "https://pay.komae.example"),
        ("HTTPS://PAY.KOMAE.EXAMPLE/", "https://pay.komae.example"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://" + "a" * 32, "https://" + "a" * 32),  # 40 characters
    ],
)
def test_public_url_takes_an_origin(given: str, kept: str) -> None:
    assert Settings(public_url=given).public_origin == kept


@pytest.mark.parametrize(
    "given",
    [
        "https://" + "a" * 33,  # 41 characters
        "https://pay.komae.example/wallet",
        "https://pay.komae.example?x=1",
        "https://user@pay.komae.example",
        "ftp://pay.komae.example",
        "pay.komae.example",
        "https://pay_komae.example",
        "https://",
    ],
)
def test_public_url_refuses_anything_but_an_origin(given: str) -> None:
    with pytest.raises(ValidationError, match="POINTS_PUBLIC_URL"):
        Settings(public_url=given)


def test_commands_explain_bad_settings_in_one_line(tmp_path: Path) -> None:
    result = run(tmp_path / "keys", "keys", "list", **{**PRODUCTION, "POINTS_PUBLIC_URL": ""})
    assert result.exit_code == 1
    assert "invalid settings: POINTS_PUBLIC_URL must be a scheme and host only" in result.output
    assert "Traceback" not in result.output
    without_url = {name: value for name, value in PRODUCTION.items() if name != "POINTS_PUBLIC_URL"}
    result = run(tmp_path / "keys", "serve", **without_url)
    assert result.exit_code == 1
    assert "invalid settings: POINTS_PUBLIC_URL must be set in production" in result.output


def test_public_url_defaults_in_development_and_is_required_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POINTS_KEY_DIR")
    assert Settings().public_origin == "http://127.0.0.1:8000"
    secret = PRODUCTION["POINTS_SECRET_KEY"]
    with pytest.raises(ValidationError, match="POINTS_PUBLIC_URL must be set"):
        Settings(environment="production", secret_key=secret)
    with pytest.raises(ValidationError, match="https in production"):
        Settings(environment="production", secret_key=secret, public_url="http://pay.example")
    assert Settings(environment="production", secret_key=secret, public_url="https://a.example")
    assert Settings().key_dir == Path("keys")


# GET /api/v1/keys ----------------------------------------------------------------------------


def test_public_keys_are_published_cacheable_and_without_secrets(
    tmp_path: Path, engine: Engine
) -> None:
    key_dir = tmp_path / "keys"
    settings = Settings(database_url=str(engine.url), key_dir=key_dir)
    client = TestClient(create_app(settings, engine=engine))

    empty = client.get("/api/v1/keys")
    assert (empty.status_code, empty.json()) == (200, {"keys": []})

    keys.init_keys(key_dir, NOW)
    keys.rotate(key_dir, LATER)
    keys.rotate(key_dir, LATER)
    keys.retire(key_dir, 1, LATER, live_printed_tokens=0, force=False)
    client = TestClient(create_app(settings, engine=engine))
    response = client.get("/api/v1/keys", headers={"Authorization": "Bearer whatever"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["content-type"] == "application/json"
    published = response.json()["keys"]
    expected = {info.kid: info for info in keys.list_keys(key_dir)}
    assert [key["kid"] for key in published] == [2, 3]  # the retired key is not published
    assert published == [
        {
            "kid": kid,
            "algorithm": "Ed25519",
            "public_key": expected[kid].public_key_text,
            "status": status,
            "valid_from": LATER.isoformat().replace("+00:00", "Z"),
            "valid_until": None,
        }
        for kid, status in ((2, "verifying"), (3, "active"))
    ]
    # The published key verifies what the private key signs.
    raw = base64.urlsafe_b64decode(published[1]["public_key"] + "=")
    assert len(raw) == 32
    _, private = KeyRing(key_dir).signing_key()
    Ed25519PublicKey.from_public_bytes(raw).verify(private.sign(b"x"), b"x")
    assert_no_private_key(response.text, key_dir)

    os.chmod(key_dir / "key-00003.pem", 0o640)
    broken = TestClient(create_app(settings, engine=engine)).get("/api/v1/keys")
    assert broken.status_code == 503
    assert broken.json()["code"] == "unavailable"
    assert str(tmp_path) not in broken.text  # the reason is logged, not told to the world
    assert_no_private_key(broken.text, key_dir)
