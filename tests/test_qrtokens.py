"""Signed QR tokens (``points.qrtokens``): every kind round-trips sign → verify, each refusal
has its code, expiry is judged by the server's clock, and a once-only token is used once, also
when many try at once (on both databases)."""

from __future__ import annotations

import base64
import dataclasses
import math
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from concurrency import run_together
from sqlalchemy.engine import Engine
from token_helpers import ORIGIN, key_ring, largest, sample

from points import errors, qrtokens
from points.qrtokens import Kind
from points.uow import unit_of_work

NOW = datetime(2026, 4, 1, 9, 0, 7, tzinfo=UTC)
ALL = frozenset(Kind)


def verify(
    text: str, ring: qrtokens.KeySource, now: datetime = NOW, **kw: object
) -> qrtokens.Token:
    options: dict[str, object] = {"expect": ALL, "keys": ring, "now": now, "origin": ORIGIN}
    options.update(kw)
    return qrtokens.verify(text, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_round_trips_with_its_key_id(kind: Kind) -> None:
    ring = key_ring()
    token = sample(kind, NOW)
    text = qrtokens.sign(token, ring, NOW, origin=ORIGIN)
    assert text.startswith(ORIGIN.upper() + "/Q/")
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert set(text) <= qrtokens.QR_ALPHANUMERIC
    got = verify(text, ring)
    expected = dataclasses.replace(token, kid=1)
    if isinstance(expected, qrtokens.PaymentToken | qrtokens.PayCodeToken):
        expected = dataclasses.replace(
            expected, expires_at=expected.expires_at.replace(microsecond=0)
        )
    assert got == expected
    assert verify(text.lower(), ring) == got  # matched case-insensitively
    assert verify(f"  {text}\n", ring) == got


@pytest.mark.parametrize("kind", list(Kind))
def test_the_layout_is_the_documented_one(kind: Kind) -> None:
    ring = key_ring()
    text = qrtokens.sign(largest(kind, NOW), ring, NOW, origin=ORIGIN)
    encoded = text.removeprefix(ORIGIN.upper() + "/Q/")
    raw = base64.b32decode(encoded + "=" * (-len(encoded) % 8))
    assert raw[0] == 1 and raw[1] == kind and raw[2:4] == b"\x00\x01"
    assert len(raw) == 4 + qrtokens.FIELD_SIZES[kind] + 64
    expected_total = {
        Kind.STORE: 84,
        Kind.PAYMENT: 96,
        Kind.PAY_CODE: 88,
        Kind.CARD: 84,
        Kind.EVENT: 80,
    }
    assert len(raw) == expected_total[kind]
    ring.lookup(1).public_key.verify(raw[-64:], raw[:-64])  # type: ignore[union-attr]


def test_sign_refuses_lifetimes_past_the_limits() -> None:
    ring = key_ring()
    too_long = qrtokens.PaymentToken(qrtokens.new_id(), 100, NOW + timedelta(minutes=5, seconds=1))
    with pytest.raises(errors.InvalidInput):
        qrtokens.sign(too_long, ring, NOW, origin=ORIGIN)
    past = qrtokens.PaymentToken(qrtokens.new_id(), 100, NOW - timedelta(seconds=1))
    with pytest.raises(errors.InvalidInput):
        qrtokens.sign(past, ring, NOW, origin=ORIGIN)
    code = qrtokens.PayCodeToken(qrtokens.new_id(), NOW + timedelta(seconds=91))
    with pytest.raises(errors.InvalidInput):
        qrtokens.sign(code, ring, NOW, origin=ORIGIN)
    for amount in (0, -1, 2**63):
        with pytest.raises(errors.InvalidInput):
            qrtokens.sign(
                qrtokens.PaymentToken(qrtokens.new_id(), amount, NOW + timedelta(minutes=1)),
                ring,
                NOW,
                origin=ORIGIN,
            )
    with pytest.raises(errors.InvalidInput):
        qrtokens.sign(qrtokens.CardToken(b"short"), ring, NOW, origin=ORIGIN)
    card = qrtokens.CardToken(qrtokens.new_id())
    for origin in ("https://" + "a" * 30 + ".jp", "https://ポイント.jp", "https://a_b.jp"):
        with pytest.raises(errors.InvalidInput):
            qrtokens.sign(card, ring, NOW, origin=origin)


def test_payment_and_pay_code_expire_by_the_server_clock_with_seconds_left() -> None:
    ring = key_ring()
    payment = qrtokens.PaymentToken(qrtokens.new_id(), 500, NOW + timedelta(minutes=5))
    text = qrtokens.sign(payment, ring, NOW, origin=ORIGIN)
    token = verify(text, ring, NOW + timedelta(minutes=4, seconds=50))
    assert isinstance(token, qrtokens.PaymentToken)
    assert token.seconds_left(NOW + timedelta(minutes=4, seconds=50)) == 10
    with pytest.raises(errors.TokenExpired):
        verify(text, ring, NOW + timedelta(minutes=5))
    code = qrtokens.PayCodeToken(qrtokens.new_id(), NOW + timedelta(seconds=90))
    text = qrtokens.sign(code, ring, NOW, origin=ORIGIN)
    assert isinstance(verify(text, ring, NOW + timedelta(seconds=89)), qrtokens.PayCodeToken)
    with pytest.raises(errors.TokenExpired) as refused:
        verify(text, ring, NOW + timedelta(seconds=90))
    assert refused.value.code == "token_expired"


def test_an_event_token_is_accepted_from_30_s_before_its_slot_to_the_end_of_the_next() -> None:
    ring = key_ring()
    slot = qrtokens.slot_of(NOW)
    start = datetime.fromtimestamp(slot * 30, UTC)
    text = qrtokens.sign(qrtokens.EventToken(7, slot), ring, NOW, origin=ORIGIN)
    for offset in (-30, -1, 0, 29, 30, 59.9):
        token = verify(text, ring, start + timedelta(seconds=offset))
        assert isinstance(token, qrtokens.EventToken) and token.slot == slot
        assert token.seconds_left(start + timedelta(seconds=offset)) == math.ceil(60 - offset)
    for offset in (-30.1, -31, 60, 61, 3600):
        with pytest.raises(errors.TokenExpired):
            verify(text, ring, start + timedelta(seconds=offset))


def test_refusals_each_have_their_code() -> None:
    ring = key_ring()
    card = qrtokens.sign(qrtokens.CardToken(qrtokens.new_id()), ring, NOW, origin=ORIGIN)
    with pytest.raises(errors.TokenWrongKind) as wrong:
        verify(card, ring, expect={Kind.PAYMENT})
    assert wrong.value.code == "token_wrong_kind"
    with pytest.raises(errors.TokenMalformed):
        verify(card, ring, origin="https://elsewhere.example.jp")
    with pytest.raises(errors.TokenMalformed):
        verify(card + "=", ring)
    with pytest.raises(errors.TokenMalformed):
        verify("", ring)

    stranger = key_ring()  # another key with the same id 1: the signature fails
    forged = qrtokens.sign(qrtokens.CardToken(qrtokens.new_id()), stranger, NOW, origin=ORIGIN)
    with pytest.raises(errors.TokenSignatureInvalid):
        verify(forged, ring)

    stranger.rotate()  # id 2, which ``ring`` does not know
    unknown = qrtokens.sign(qrtokens.CardToken(qrtokens.new_id()), stranger, NOW, origin=ORIGIN)
    with pytest.raises(errors.TokenUnknownKey) as unknown_key:
        verify(unknown, ring)
    assert unknown_key.value.context["kid"] == 2

    ring.rotate()
    assert verify(card, ring).kid == 1  # the old key still verifies after a rotation
    ring.retire(1)
    with pytest.raises(errors.TokenKeyRetired):
        verify(card, ring)


def test_a_revocation_lookup_refuses_per_kind() -> None:
    ring = key_ring()
    revoked_id = qrtokens.new_id()
    lookups = {Kind.STORE: lambda token: token.till_id == revoked_id}
    good = qrtokens.sign(qrtokens.StoreToken(qrtokens.new_id()), ring, NOW, origin=ORIGIN)
    bad = qrtokens.sign(qrtokens.StoreToken(revoked_id), ring, NOW, origin=ORIGIN)
    assert verify(good, ring, revoked=lookups)
    with pytest.raises(errors.TokenRevoked):
        verify(bad, ring, revoked=lookups)


def test_a_once_only_token_is_used_once(engine: Engine) -> None:
    ring = key_ring()
    text = qrtokens.sign(sample(Kind.PAYMENT, NOW), ring, NOW, origin=ORIGIN)
    token = verify(text, ring)
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, token, NOW))
    with pytest.raises(errors.TokenUsed):
        unit_of_work(engine, lambda session: qrtokens.mark_used(session, token, NOW))
    # a pay code with the same id bytes is another token
    code = qrtokens.PayCodeToken(token.request_id, NOW + timedelta(seconds=30))  # type: ignore[union-attr]
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, code, NOW))
    with pytest.raises(errors.InvalidInput):
        unit_of_work(
            engine, lambda session: qrtokens.mark_used(session, sample(Kind.CARD, NOW), NOW)
        )


def test_a_refused_unit_of_work_leaves_the_token_unused(engine: Engine) -> None:
    token = sample(Kind.PAY_CODE, NOW)

    def fails(session: object) -> None:
        qrtokens.mark_used(session, token, NOW)  # type: ignore[arg-type]
        raise errors.InsufficientPoints("the payment failed")

    with pytest.raises(errors.InsufficientPoints):
        unit_of_work(engine, fails)
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, token, NOW))


def test_many_marking_one_token_at_once_exactly_one_wins(engine: Engine) -> None:
    token = sample(Kind.PAYMENT, NOW)
    outcomes = run_together(
        [
            lambda: unit_of_work(engine, lambda session: qrtokens.mark_used(session, token, NOW))
            for _ in range(8)
        ]
    )
    assert [kind for kind, _ in outcomes].count("ok") == 1
    assert all(
        isinstance(value, errors.TokenUsed) for kind, value in outcomes if kind == "error"
    ), outcomes
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM used_token")).scalar_one() == 1


def test_purge_deletes_rows_a_day_past_their_expiry(engine: Engine) -> None:
    old = qrtokens.PaymentToken(qrtokens.new_id(), 1, NOW - timedelta(days=1, seconds=1))
    recent = qrtokens.PaymentToken(qrtokens.new_id(), 1, NOW - timedelta(hours=23))
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, old, NOW))
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, recent, NOW))
    purged = unit_of_work(
        engine, lambda session: qrtokens.purge_used(session, before=NOW - qrtokens.USED_KEPT)
    )
    assert purged == 1
    unit_of_work(engine, lambda session: qrtokens.mark_used(session, old, NOW))  # gone
    with pytest.raises(errors.TokenUsed):
        unit_of_work(engine, lambda session: qrtokens.mark_used(session, recent, NOW))
