"""Shops, tills and residents with points, for the payment tests (on top of ``api_world``).

``open_shop(world)`` makes a shop ready to be paid through the admin API, as a city operator
would: it accepts the world's point type, and has a till whose token and printed store QR the
test uses. ``funded_resident(world, points)`` is a new resident with a wallet token and
``points`` awarded (one award of that amount, by a fixed-award program of its own);
``funded_residents(world, count, points)`` makes many such at once.
"""

from __future__ import annotations

import itertools
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from api_world import FISCAL_YEAR, POINT_TYPE_CODE, Actor, World, unique_address_number
from sqlmodel import Session

from issuers import awards
from points import access, keys, people
from points.auth import Role

T = TypeVar("T")

#: (id(world), name) -> (the world, weakly; what ``once_per_world`` built). The world is kept to
#: tell it from a later world given the same id once the first is collected.
_built: dict[tuple[int, str], tuple[weakref.ref[World], Any]] = {}
_counter = itertools.count(1)


def once_per_world(world: World, name: str, build: Callable[[], T]) -> T:
    """``build()`` the first time ``name`` is asked of this world, the same object after: for
    the shops and funded residents of a test module's shared world."""
    known = _built.get((id(world), name))
    if known is not None and known[0]() is world:
        return known[1]  # type: ignore[no-any-return]
    made = build()
    _built[(id(world), name)] = (weakref.ref(world), made)
    return made


@dataclass(frozen=True)
class Shop:
    merchant_id: str
    till: Actor
    till_id: str
    store_qr: str

    @property
    def headers(self) -> dict[str, str]:
        return self.till.headers


def ensure_signing_key(world: World) -> None:
    ring = world.app.state.services.keys
    keys.ensure_key(ring.directory, world.now())
    ring.reload()


def key(prefix: str = "k") -> dict[str, str]:
    """A fresh Idempotency-Key header."""
    return {"Idempotency-Key": f"{prefix}-{uuid.uuid4()}"}


def open_shop(
    world: World, merchant_id: str | None = None, *, till_name: str = "レジ1", **settings: Any
) -> Shop:
    """A shop (a new merchant unless ``merchant_id``) accepting the world's point type, with
    ``settings`` (``confirm_mode``, ...) and a new till."""
    ensure_signing_key(world)
    merchant = merchant_id or world.fresh_merchant()
    admin = world.admin.headers
    changed = world.client.patch(
        f"/api/v1/admin/merchants/{merchant}/settings",
        json={"accepted_point_types": [POINT_TYPE_CODE], "reason": "test shop", **settings},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    made = world.client.post(
        f"/api/v1/admin/merchants/{merchant}/tills", json={"name": till_name}, headers=admin
    )
    assert made.status_code == 201, made.text
    body = made.json()
    till = Actor("till", Role.MERCHANT, body["staff_id"], body["token"], "", merchant_id=merchant)
    return Shop(merchant, till, body["id"], body["store_qr"])


def funded_resident(world: World, points: int) -> Actor:
    """A new resident with a wallet token and ``points`` in one award."""
    resident = world.fresh_resident(with_token=True)
    if points:
        give(world, resident.id, points)
    return resident


def funded_residents(world: World, count: int, points: int) -> list[Actor]:
    """``count`` new verified residents, each with a wallet token and ``points`` in one award,
    made in one transaction (many residents at once, for the races)."""
    program = _program_awarding(world, points)
    now = world.now()

    def work(session: Session) -> list[Actor]:
        made = []
        for _ in range(count):
            resident = people.create_resident(
                session,
                access.SYSTEM,
                now,
                name="仮 住民",
                address_number=unique_address_number(),
                birth_year=1980,
                verified=True,
            )
            session.flush()
            new = access.issue_token(
                session, access.SYSTEM, now, role=Role.RESIDENT, principal_id=resident.id
            )
            _award(session, now, program, resident.id)
            made.append(
                Actor("fresh resident", Role.RESIDENT, resident.id, new.secret, new.token.id)
            )
        return made

    return world.write(work)


def _program_awarding(world: World, points: int) -> str:
    """A fixed-award program of ``points`` (one per world and amount)."""
    return once_per_world(
        world,
        f"program of {points}",
        lambda: world.fresh_program(amount=points, budget={FISCAL_YEAR: 10**12}),
    )


def _award(session: Session, now: datetime, program_id: str, resident_id: str) -> None:
    record = f"pay-test-{next(_counter)}-{uuid.uuid4().hex[:8]}"
    awards.award(
        session,
        access.SYSTEM,
        now,
        awards.AwardRequest(program_id, resident_id, record, {}),
        department_id=None,
    )


def give(world: World, resident_id: str, points: int) -> None:
    """Award ``points`` to the resident (a fixed-award program of that amount)."""
    program = _program_awarding(world, points)
    now = world.now()
    world.write(lambda session: _award(session, now, program, resident_id))


def balance(world: World, resident: Actor) -> int:
    response = world.client.get(f"/api/v1/me/wallets/{POINT_TYPE_CODE}", headers=resident.headers)
    assert response.status_code == 200, response.text
    return int(response.json()["balance"])


def payment_qr(world: World, shop: Shop, amount: int, **fields: Any) -> dict[str, Any]:
    made = world.client.post(
        "/api/v1/merchant/payment-requests", json={"amount": amount, **fields}, headers=shop.headers
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def pay(world: World, resident: Actor, token: str, **fields: Any) -> Any:
    return world.client.post(
        "/api/v1/me/payments",
        json={"token": token, **fields},
        headers={**resident.headers, **key("pay")},
    )
