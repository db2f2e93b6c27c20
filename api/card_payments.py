"""Paying with a card and its PIN: the one sequence a till's card payment
(``POST /api/v1/merchant/card-payments``) and the counter's assisted payment
(``POST /api/v1/counter/assisted-payments``) share, so that both count and compare a PIN the
same way (``docs/cards.md``, "Attempts: count first, compare after").

1. **Replay**: a request that completed before (same caller, key and body) is answered from
   its idempotency record before anything else, so a retry after a network failure spends no
   PIN attempt. The PIN enters the fingerprint only keyed with the server's secret
   (``secret_fields``).
2. **Read**: the caller's side is checked (``place``: a till of an active shop, or nothing at
   the counter) and the card is found and may pay (``cards.usable``), in a read-only unit of
   work: a caller who may not pay here spends no attempt of the card.
3. **Count, commit, compare** (``cards.verify_pin``): per card (5), and per till or per member
   of counter staff (10 wrong an hour). Nothing else is written on a wrong PIN.
4. **Pay** (``pay``, under the idempotency key, in one transaction): the points move only now.
   A refusal at step 3 is not stored under the key, so the same key may carry the right PIN.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi.responses import JSONResponse
from sqlmodel import Session

from api.deps import Services
from api.safety import Idempotency
from api.schemas_cards import CardAndPin
from points.auth import Principal
from redemption import cards

#: The body fields that are secrets: keyed with the server's secret in a fingerprint.
SECRET_FIELDS = ("pin",)


def pay_with_pin(
    body: CardAndPin,
    caller: Principal,
    services: Services,
    idempotency: Idempotency,
    now: datetime,
    *,
    place: Callable[[Session], str | None],
    pay: Callable[[Session, str], tuple[int, Any]],
) -> JSONResponse:
    """Replay, or read, count and compare the PIN, then ``pay(session, card_id)`` once.

    ``place`` runs first in the read: it refuses a caller who may not take this payment and
    answers the till whose hourly count the attempt joins (None at the city counter, where the
    member of staff's own count applies)."""
    replayed = idempotency.replay(caller, body, secret_fields=SECRET_FIELDS)
    if replayed is not None:
        return replayed
    signing = services.card_signing

    def named(session: Session) -> tuple[str | None, str]:
        till_id = place(session)
        card = cards.find_card(
            session, card_number=body.card_number, card_qr=body.card_qr, signing=signing, now=now
        )
        cards.usable(session, card)
        return till_id, card.id

    till_id, card_id = services.read(named)
    cards.verify_pin(
        services.engine,
        now,
        card_id,
        body.pin,
        staff_id=caller.principal_id,
        till_id=till_id,
        pepper=services.keys.pin_pepper(),
    )
    return idempotency.run(
        caller, body, lambda session: pay(session, card_id), secret_fields=SECRET_FIELDS
    )
