"""An in-memory key ring for the token tests (the application's is ``points.keys.KeyRing``),
and a valid token of every kind at its largest field values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from points import errors, qrtokens
from points.qrtokens import Kind, Token

#: The longest origin POINTS_PUBLIC_URL allows (40 characters): the tokens' largest texts.
ORIGIN = "https://points-demo.example-city.lg.jp"
LONGEST_ORIGIN = "https://" + "a" * 29 + ".jp"
assert len(LONGEST_ORIGIN) == 40


@dataclass(frozen=True)
class MemoryKey:
    kid: int
    status: str
    public_key: Ed25519PublicKey


@dataclass
class MemoryKeyRing:
    """Keys by id; ``active`` signs. ``retire`` and ``rotate`` as the key directory would."""

    private: dict[int, Ed25519PrivateKey] = field(default_factory=dict)
    status: dict[int, str] = field(default_factory=dict)
    active: int = 0

    def rotate(self) -> int:
        kid = max(self.private, default=0) + 1
        self.private[kid] = Ed25519PrivateKey.generate()
        if self.active:
            self.status[self.active] = "verifying"
        self.status[kid] = "active"
        self.active = kid
        return kid

    def retire(self, kid: int) -> None:
        self.status[kid] = "retired"

    def signing_key(self) -> tuple[int, Ed25519PrivateKey]:
        return self.active, self.private[self.active]

    def lookup(self, kid: int) -> MemoryKey | None:
        if kid not in self.private:
            return None
        return MemoryKey(kid, self.status[kid], self.private[kid].public_key())


def key_ring() -> MemoryKeyRing:
    ring = MemoryKeyRing()
    ring.rotate()
    return ring


def largest(kind: Kind, now: datetime) -> Token:
    """A token of ``kind`` with its largest field values."""
    top = b"\xff" * qrtokens.ID_SIZE
    match kind:
        case Kind.STORE:
            return qrtokens.StoreToken(top)
        case Kind.PAYMENT:
            return qrtokens.PaymentToken(
                top, qrtokens.AMOUNT_MAX, now + qrtokens.PAYMENT_LIFETIME_MAX
            )
        case Kind.PAY_CODE:
            return qrtokens.PayCodeToken(top, now + qrtokens.PAY_CODE_LIFETIME_MAX)
        case Kind.CARD:
            return qrtokens.CardToken(top)
        case Kind.EVENT:
            return qrtokens.EventToken(qrtokens.INT64_MAX, qrtokens.slot_of(now))
    raise AssertionError(kind)


def sample(kind: Kind, now: datetime) -> Token:
    """A token of ``kind`` with ordinary, fresh field values."""
    match kind:
        case Kind.STORE:
            return qrtokens.StoreToken(qrtokens.new_id())
        case Kind.PAYMENT:
            return qrtokens.PaymentToken(qrtokens.new_id(), 1200, now + timedelta(minutes=3))
        case Kind.PAY_CODE:
            return qrtokens.PayCodeToken(qrtokens.new_id(), now + timedelta(seconds=60))
        case Kind.CARD:
            return qrtokens.CardToken(qrtokens.new_id())
        case Kind.EVENT:
            return qrtokens.EventToken(42, qrtokens.slot_of(now))
    raise AssertionError(kind)


#: Every code a refused token gets: one per ``TokenRefused`` subclass.
CODES = frozenset(refusal.code for refusal in errors.TokenRefused.__subclasses__())
