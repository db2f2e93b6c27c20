"""Fuzzing the token parser (``points.qrtokens.verify``) and ``GET /Q/{text}``: random text,
every single-bit flip of a valid token's bytes and of its text, truncations, extensions, case
changes, base32 variants, another kind's valid token, a token of an unknown or retired key.
Nothing is ever accepted unless it is the same token (the text is matched case-insensitively,
and a scanner's surrounding whitespace is ignored); nothing raises anything but a
``TokenRefused`` with one of the eight codes; the page never answers 5xx."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from api_world import World
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from token_helpers import CODES, ORIGIN, MemoryKeyRing, key_ring, largest, sample

from points import errors, qrtokens
from points.qrtokens import Kind

NOW = datetime(2026, 4, 1, 9, 0, 7, tzinfo=UTC)
PREFIX = ORIGIN.upper() + "/Q/"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RING = key_ring()
#: A valid text of each kind (signed by RING's key 1), and its token.
VALID = {kind: qrtokens.sign(sample(kind, NOW), RING, NOW, origin=ORIGIN) for kind in Kind}
VALID |= {
    Kind.STORE: qrtokens.sign(largest(Kind.STORE, NOW), RING, NOW, origin=ORIGIN),
}
TOKENS = {
    kind: qrtokens.verify(text, expect=set(Kind), keys=RING, now=NOW, origin=ORIGIN)
    for kind, text in VALID.items()
}


def normal(text: str) -> str:
    """A text as scanned: ASCII only (so that no other letter uppercases to a token's)."""
    if not text.isascii():
        return "\u0000 not ASCII"
    return text.strip(qrtokens.WHITESPACE).upper()


def judge(text: str, ring: MemoryKeyRing = RING, expect: frozenset[Kind] = frozenset(Kind)) -> None:
    """Accepted only as the very token of a valid text; otherwise refused with a code."""
    try:
        token = qrtokens.verify(text, expect=set(expect), keys=ring, now=NOW, origin=ORIGIN)
    except errors.TokenRefused as refused:
        assert refused.code in CODES, refused
        assert type(refused) is not errors.TokenRefused
        return
    same = [kind for kind, valid in VALID.items() if normal(valid) == normal(text)]
    assert same, f"accepted a text that is no valid token: {text!r}"
    assert token == TOKENS[same[0]]


def raw_of(text: str) -> bytes:
    encoded = text.removeprefix(PREFIX)
    return base64.b32decode(encoded + "=" * (-len(encoded) % 8))


def text_of(raw: bytes) -> str:
    return PREFIX + base64.b32encode(raw).decode().rstrip("=")


# Random text ---------------------------------------------------------------------------------


@FUZZ
@given(st.text())
def test_random_text_is_refused(text: str) -> None:
    judge(text)


@FUZZ
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcxyz=01 ", max_size=170))
def test_random_base32ish_text_after_the_prefix_is_refused(tail: str) -> None:
    judge(PREFIX + tail)


@FUZZ
@given(st.sampled_from(list(Kind)), st.binary(min_size=64, max_size=64), st.data())
def test_random_bytes_with_a_valid_header_are_refused(
    kind: Kind, signature: bytes, data: st.DataObject
) -> None:
    fields = data.draw(
        st.binary(min_size=qrtokens.FIELD_SIZES[kind], max_size=qrtokens.FIELD_SIZES[kind])
    )
    kid = data.draw(st.integers(0, 65535))
    text = text_of(bytes([1, kind]) + kid.to_bytes(2, "big") + fields + signature)
    with pytest.raises(errors.TokenRefused) as refused:
        qrtokens.verify(text, expect=set(Kind), keys=RING, now=NOW, origin=ORIGIN)
    assert refused.value.code in {"token_unknown_key", "token_signature_invalid"}


# Mutations of valid tokens -------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_every_single_bit_flip_of_the_bytes_is_refused(kind: Kind) -> None:
    raw = raw_of(VALID[kind])
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            with pytest.raises(errors.TokenRefused) as refused:
                qrtokens.verify(
                    text_of(bytes(flipped)), expect=set(Kind), keys=RING, now=NOW, origin=ORIGIN
                )
            assert refused.value.code in CODES


@pytest.mark.parametrize("kind", list(Kind))
def test_every_single_bit_flip_of_the_text_is_refused_unless_only_its_case_changed(
    kind: Kind,
) -> None:
    text = VALID[kind]
    accepted = 0
    for index in range(len(text)):
        for bit in range(8):
            character = chr(ord(text[index]) ^ (1 << bit))
            flipped = text[:index] + character + text[index + 1 :]
            judge(flipped)
            accepted += normal(flipped) == normal(text)
    assert accepted > 0  # lowercase letters: the same token


@pytest.mark.parametrize("kind", list(Kind))
def test_truncations_and_extensions_are_refused(kind: Kind) -> None:
    text = VALID[kind]
    for end in range(len(text)):
        judge(text[:end])
    for extra in ("A", "Q", "AAAAAAAA", "=", "==", "/", "?x=1", "#", text[-8:], "\x00"):
        judge(text + extra)
    raw = raw_of(text)
    judge(text_of(raw + b"\x00"))
    judge(text_of(raw[:-1]))


@FUZZ
@given(st.sampled_from(list(Kind)), st.data())
def test_case_changes_are_the_same_token(kind: Kind, data: st.DataObject) -> None:
    text = VALID[kind]
    flips = data.draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    changed = "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))
    assert (
        qrtokens.verify(changed, expect=set(Kind), keys=RING, now=NOW, origin=ORIGIN)
        == TOKENS[kind]
    )


@pytest.mark.parametrize("kind", list(Kind))
def test_base32_variants_are_refused(kind: Kind) -> None:
    text = VALID[kind]
    encoded = text.removeprefix(PREFIX)
    padded = base64.b32encode(raw_of(text)).decode()
    assert (padded == encoded) is (kind is Kind.EVENT)  # 80 bytes need no padding
    judge(PREFIX + padded)
    for padding in ("=", "===", "======", "========"):
        judge(PREFIX + encoded + padding)
    for wrong, right in (("0", "O"), ("1", "I"), ("1", "L"), ("8", "B")):
        position = encoded.find(right)
        if position >= 0:
            judge(PREFIX + encoded[:position] + wrong + encoded[position + 1 :])
    # The last character's unused low bits set: the same bytes, but not canonical base32.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    value = alphabet.index(encoded[-1])
    for low in range(1, 8):
        variant = alphabet[value | low]
        if variant != encoded[-1]:
            judge(PREFIX + encoded[:-1] + variant)
    judge(PREFIX + base64.b64encode(raw_of(text)).decode())
    judge(PREFIX + base64.b32hexencode(raw_of(text)).decode().rstrip("="))
    # Letters that only uppercase to ASCII (dotless i, long s, Kelvin sign) are not ASCII.
    for ascii_letter, lookalike in (("i", "\u0131"), ("s", "\u017f"), ("k", "\u212a")):
        assert lookalike.upper() == ascii_letter.upper() or ascii_letter == "k"
        judge(text.lower().replace(ascii_letter, lookalike))
    judge(ORIGIN.upper() + "/q/" + encoded)  # the path is case-insensitive too: accepted
    judge(ORIGIN.upper() + "/Q//" + encoded)
    judge(ORIGIN.upper() + "/Q/ " + encoded)
    judge(ORIGIN.upper() + "Q/" + encoded)


@pytest.mark.parametrize("kind", list(Kind))
def test_another_kinds_valid_token_is_the_wrong_kind(kind: Kind) -> None:
    for other in Kind:
        if other is kind:
            continue
        with pytest.raises(errors.TokenWrongKind):
            qrtokens.verify(VALID[other], expect={kind}, keys=RING, now=NOW, origin=ORIGIN)


def test_an_unknown_or_retired_key_never_verifies() -> None:
    stranger = key_ring()
    stranger.rotate()
    stranger.rotate()  # kid 3
    ring = key_ring()
    ring.rotate()  # kid 2
    for kind in Kind:
        forged = qrtokens.sign(sample(kind, NOW), stranger, NOW, origin=ORIGIN)
        with pytest.raises(errors.TokenUnknownKey):
            qrtokens.verify(forged, expect=set(Kind), keys=ring, now=NOW, origin=ORIGIN)
        old = qrtokens.sign(sample(kind, NOW), RING, NOW, origin=ORIGIN)  # RING's key 1
        with pytest.raises(errors.TokenSignatureInvalid):
            qrtokens.verify(old, expect=set(Kind), keys=ring, now=NOW, origin=ORIGIN)
    retiring = key_ring()
    texts = [qrtokens.sign(sample(kind, NOW), retiring, NOW, origin=ORIGIN) for kind in Kind]
    retiring.rotate()
    retiring.retire(1)
    for text in texts:
        with pytest.raises(errors.TokenKeyRetired):
            qrtokens.verify(text, expect=set(Kind), keys=retiring, now=NOW, origin=ORIGIN)


def test_expired_tokens_are_refused_whatever_else_is_right() -> None:
    later = NOW + timedelta(minutes=6)
    for kind in (Kind.PAYMENT, Kind.PAY_CODE, Kind.EVENT):
        with pytest.raises(errors.TokenExpired):
            qrtokens.verify(VALID[kind], expect=set(Kind), keys=RING, now=later, origin=ORIGIN)


# The page a phone's camera opens -------------------------------------------------------------


@pytest.fixture(scope="module")
def page_world(shared_world: World) -> Iterator[World]:
    yield shared_world


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.one_of(
        st.text(max_size=200),
        st.sampled_from([text.removeprefix(PREFIX) for text in VALID.values()]),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abc=01", min_size=120, max_size=160),
    ),
    st.sampled_from(["/Q/", "/q/"]),
)
def test_the_qr_page_answers_a_page_or_token_malformed_never_5xx(
    page_world: World, text: str, path: str
) -> None:
    from urllib.parse import quote

    response = page_world.client.get(path + quote(text, safe=""))
    assert response.status_code in (200, 404, 422), (text, response.status_code)
    if response.status_code == 200:
        assert response.headers["content-type"].startswith("text/html")
        # A card's kind byte gets the card's page (issue 19), any other text the wallet's.
        card = qrtokens.unverified_kind(text) is Kind.CARD
        assert ("地域ポイントカードです" if card else "ウォレット") in response.text
        assert "<form" not in response.text
        assert response.headers["cache-control"] == "no-store"
    else:  # 404: a "/" in the text makes it another path
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == (
            "token_malformed" if response.status_code == 422 else "not_found"
        )


def test_a_valid_token_path_gets_the_japanese_page(page_world: World) -> None:
    for kind, text in VALID.items():
        encoded = text.removeprefix(PREFIX)
        for path in (f"/Q/{encoded}", f"/q/{encoded.lower()}"):
            response = page_world.client.get(path)
            assert response.status_code == 200
            if kind is Kind.CARD:
                # A resident's card: its own page, Japanese first (tests/test_card_print.py).
                assert response.text.index("地域ポイントカードです") < response.text.index(
                    "This is a"
                )
                continue
            # Japanese first, English after it, and a way into the app from the page.
            assert response.text.index("ウォレットで読み取ってください") < response.text.index(
                "Scan this code in the wallet"
            )
            assert 'href="/app/"' in response.text
    response = page_world.client.get("/Q/not-a-token")
    assert response.status_code == 422
    assert response.json()["code"] == "token_malformed"
