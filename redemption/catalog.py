"""The goods-exchange catalog of a city counter (issue 19 part 6).

A city counter is a merchant of its own kind (``MerchantKind.COUNTER``): residents exchange
points there for local goods (the seed's eco bags sewn from used coffee sacks). Its **catalog
items** carry Japanese and English names, a price in points of one point type, a stock, an
optional picture, an optional availability window and an optional limit per resident and fiscal
year. Admins manage them; every change is in the audit trail, and every stock adjustment also
has a ``catalog_stock_change`` row with its reason (so the stock's history reads without the
audit trail).

**An exchange is a payment to the counter** that takes the item out of stock in the same
transaction: in the wallet app (flow ``exchange``, no till), at a counter till with the
resident's card and PIN (flow ``card``), or assisted by counter staff with the resident's PIN
(flow ``card``, no till). Whatever the channel, ``reserve`` runs first in the payment's
transaction and ``record`` after it:

1. the item is the counter's, active and inside its window (``item_not_available``);
2. the resident's allowance of the fiscal year is raised by a conditional update of a counter
   row (``exchange_allowance``, CHECK ``quantity <= cap``) — ``exchange_limit_exceeded``;
3. the stock is lowered by ``UPDATE ... SET stock = stock - q WHERE stock >= q`` (CHECK
   ``stock >= 0``) — ``out_of_stock``. The update holds the item's row until the transaction
   ends, so concurrent exchanges of one item queue there and the last bags go exactly once;
4. the payment takes the points (``insufficient_balance`` rolls the whole transaction back:
   stock and allowance come back untouched);
5. an ``exchange`` row ties the payment to the item (one per payment).

A refund of an exchange (the resident brought the bag back) is a refund of its payment; the
stock is not put back by it — an admin adjusts the stock with a reason once the goods are back
on the shelf, which is what happened physically.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel, col, select

from points import audit
from points.auth import Principal
from points.calendar import fiscal_year, tokyo_date
from points.errors import InvalidInput, NotFound
from points.pointtypes import PointType, get_point_type
from points.registry import Merchant, MerchantKind, MerchantStatus, new_id
from points.sqlbase import UTCDateTime, insert_missing
from redemption import merchants
from redemption.errors import (
    ExchangeLimitExceeded,
    ImageInvalid,
    ItemNotAvailable,
    NotACounter,
    OutOfStock,
    PointTypeNotAccepted,
    StockBelowZero,
)
from redemption.payments import AMOUNT_MAX, Payment

#: At most this many of one item in one exchange.
QUANTITY_MAX = 10
STOCK_MAX = 1_000_000
IMAGE_MAX_BYTES = 256 * 1024
#: The picture formats a wallet shows, by their first bytes.
IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
}


class ItemStatus(enum.StrEnum):
    ACTIVE = "active"
    #: No longer offered (kept for the history of its exchanges).
    RETIRED = "retired"


class Channel(enum.StrEnum):
    #: In the wallet app (payment flow ``exchange``).
    WALLET = "wallet"
    #: At a counter till, with the card and PIN (payment flow ``card``).
    CARD = "card"
    #: By counter staff for the resident, who typed the PIN (payment flow ``card``, no till).
    ASSISTED = "assisted"


class CatalogItem(SQLModel, table=True):
    __tablename__ = "catalog_item"
    __table_args__ = (
        sa.CheckConstraint(f"points BETWEEN 1 AND {AMOUNT_MAX}", name="points"),
        sa.CheckConstraint(f"stock BETWEEN 0 AND {STOCK_MAX}", name="stock"),
        sa.CheckConstraint(
            "per_resident_limit IS NULL OR per_resident_limit >= 1", name="per_resident_limit"
        ),
        sa.CheckConstraint(
            "available_from IS NULL OR available_until IS NULL OR available_from < available_until",
            name="window",
        ),
        sa.CheckConstraint("status IN ('active', 'retired')", name="status"),
    )

    id: str = Field(primary_key=True, max_length=32)
    #: The city counter (a merchant of kind ``counter``) that hands the goods out.
    merchant_id: str = Field(foreign_key="merchant.id", max_length=32, index=True)
    point_type_id: str = Field(foreign_key="point_type.id", max_length=32)
    name_ja: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    stock: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    #: How many one resident may take in a fiscal year (None: no limit).
    per_resident_limit: int | None = Field(default=None)
    available_from: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    available_until: datetime | None = Field(
        default=None, sa_column=sa.Column(UTCDateTime(), nullable=True)
    )
    status: str = Field(default=ItemStatus.ACTIVE, max_length=16)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class CatalogImage(SQLModel, table=True):
    """An item's picture (kept apart, so listing items never reads pictures)."""

    __tablename__ = "catalog_image"

    item_id: str = Field(primary_key=True, foreign_key="catalog_item.id", max_length=32)
    content_type: str = Field(max_length=32)
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    updated_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class StockChange(SQLModel, table=True):
    """An admin's stock adjustment and its reason (exchanges are in ``exchange``)."""

    __tablename__ = "catalog_stock_change"
    __table_args__ = (sa.CheckConstraint("delta <> 0", name="delta"),)

    id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    item_id: str = Field(foreign_key="catalog_item.id", max_length=32, index=True)
    delta: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    stock_after: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    reason: str = Field(max_length=500)
    staff_id: str = Field(max_length=32)
    at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class Exchange(SQLModel, table=True):
    """Goods taken for points: the payment that took them, the item and how many."""

    __tablename__ = "exchange"
    __table_args__ = (
        sa.CheckConstraint(f"quantity BETWEEN 1 AND {QUANTITY_MAX}", name="quantity"),
        sa.CheckConstraint("channel IN ('wallet', 'card', 'assisted')", name="channel"),
        sa.Index("ix_exchange_resident_id_created_at", "resident_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=32)
    payment_id: str = Field(foreign_key="payment.id", max_length=32, unique=True)
    item_id: str = Field(foreign_key="catalog_item.id", max_length=32, index=True)
    resident_id: str = Field(foreign_key="resident.id", max_length=32)
    quantity: int
    points: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    fiscal_year: int
    channel: str = Field(max_length=16)
    created_at: datetime = Field(sa_column=sa.Column(UTCDateTime(), nullable=False))


class ExchangeAllowance(SQLModel, table=True):
    """How many of an item a resident took in a fiscal year, within the item's limit."""

    __tablename__ = "exchange_allowance"
    __table_args__ = (sa.CheckConstraint("quantity >= 0 AND quantity <= cap", name="within_cap"),)

    item_id: str = Field(primary_key=True, foreign_key="catalog_item.id", max_length=32)
    resident_id: str = Field(primary_key=True, foreign_key="resident.id", max_length=32)
    fiscal_year: int = Field(primary_key=True)
    quantity: int
    cap: int


# Admin: items, stock, pictures ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewItem:
    merchant_id: str
    point_type: str
    name_ja: str
    name_en: str
    points: int
    stock: int
    per_resident_limit: int | None = None
    available_from: datetime | None = None
    available_until: datetime | None = None


def counter_of(session: Session, merchant_id: str) -> Merchant:
    """A city counter (``not_a_counter`` for a shop)."""
    merchant = merchants.get_merchant(session, merchant_id)
    if merchant.kind != MerchantKind.COUNTER:
        raise NotACounter(
            "catalog items belong to a city counter; this merchant is a shop",
            field="merchant_id",
        )
    return merchant


def _check_window(available_from: datetime | None, available_until: datetime | None) -> None:
    if (
        available_from is not None
        and available_until is not None
        and available_from >= available_until
    ):
        raise InvalidInput("available_from is before available_until", field="available_until")


def _check_numbers(points: int | None, stock: int | None, limit: int | None) -> None:
    if points is not None and not 1 <= points <= AMOUNT_MAX:
        raise InvalidInput(f"points is 1 to {AMOUNT_MAX:,}", field="points")
    if stock is not None and not 0 <= stock <= STOCK_MAX:
        raise InvalidInput(f"stock is 0 to {STOCK_MAX:,}", field="stock")
    if limit is not None and limit < 1:
        raise InvalidInput("per_resident_limit is at least 1", field="per_resident_limit")


def create_item(session: Session, caller: Principal, now: datetime, new: NewItem) -> CatalogItem:
    counter_of(session, new.merchant_id)
    _check_numbers(new.points, new.stock, new.per_resident_limit)
    _check_window(new.available_from, new.available_until)
    point_type = merchants.accepted_type(session, new.merchant_id, new.point_type)
    item = CatalogItem(
        id=new_id("itm"),
        merchant_id=new.merchant_id,
        point_type_id=point_type.id,
        name_ja=new.name_ja,
        name_en=new.name_en,
        points=new.points,
        stock=new.stock,
        per_resident_limit=new.per_resident_limit,
        available_from=new.available_from,
        available_until=new.available_until,
        status=ItemStatus.ACTIVE,
        created_at=now,
        updated_at=now,
    )
    session.add(item)
    session.flush()
    _audit(session, caller, now, "catalog.item.create", item, "", _described(item, point_type))
    return item


def get_item(session: Session, item_id: str, *, merchant_id: str | None = None) -> CatalogItem:
    item = session.get(CatalogItem, item_id)
    if item is None or (merchant_id is not None and item.merchant_id != merchant_id):
        raise NotFound(f"no catalog item {item_id}")
    return item


def list_items(
    session: Session, *, merchant_id: str | None = None, offered_at: datetime | None = None
) -> list[CatalogItem]:
    """Items in creation order; with ``offered_at``, only those a resident can take then (active,
    inside the window, at an active counter). Out-of-stock items stay listed (with stock 0)."""
    query = select(CatalogItem).order_by(col(CatalogItem.created_at), col(CatalogItem.id))
    if merchant_id is not None:
        query = query.where(CatalogItem.merchant_id == merchant_id)
    if offered_at is not None:
        query = (
            query.join(Merchant, col(Merchant.id) == CatalogItem.merchant_id)
            .where(Merchant.status == MerchantStatus.ACTIVE)
            .where(CatalogItem.status == ItemStatus.ACTIVE)
            .where(
                sa.or_(
                    col(CatalogItem.available_from).is_(None),
                    col(CatalogItem.available_from) <= offered_at,
                )
            )
            .where(
                sa.or_(
                    col(CatalogItem.available_until).is_(None),
                    col(CatalogItem.available_until) > offered_at,
                )
            )
        )
    return list(session.exec(query).all())


@dataclass(frozen=True, slots=True)
class ItemChange:
    """What an admin changes (None: unchanged). The stock changes only by ``adjust_stock``."""

    name_ja: str | None = None
    name_en: str | None = None
    points: int | None = None
    per_resident_limit: int | None = None
    clear_limit: bool = False
    available_from: datetime | None = None
    available_until: datetime | None = None
    clear_from: bool = False
    clear_until: bool = False
    status: ItemStatus | None = None


def change_item(
    session: Session, caller: Principal, now: datetime, item_id: str, change: ItemChange
) -> CatalogItem:
    item = _locked(session, item_id)
    _check_numbers(change.points, None, change.per_resident_limit)
    before = {
        "name_ja": item.name_ja,
        "name_en": item.name_en,
        "points": item.points,
        "per_resident_limit": item.per_resident_limit,
        "available_from": item.available_from,
        "available_until": item.available_until,
        "status": item.status,
    }
    if change.name_ja is not None:
        item.name_ja = change.name_ja
    if change.name_en is not None:
        item.name_en = change.name_en
    if change.points is not None:
        item.points = change.points
    if change.clear_limit:
        item.per_resident_limit = None
    elif change.per_resident_limit is not None:
        item.per_resident_limit = change.per_resident_limit
    if change.clear_from:
        item.available_from = None
    elif change.available_from is not None:
        item.available_from = change.available_from
    if change.clear_until:
        item.available_until = None
    elif change.available_until is not None:
        item.available_until = change.available_until
    _check_window(item.available_from, item.available_until)
    if change.status is not None:
        item.status = change.status
    item.updated_at = now
    session.add(item)
    session.flush()
    after = {name: getattr(item, name) for name in before}
    changed = {
        name: {"from": _plain(before[name]), "to": _plain(after[name])}
        for name in before
        if before[name] != after[name]
    }
    _audit(session, caller, now, "catalog.item.change", item, "", {"changed": changed})
    return item


def adjust_stock(
    session: Session, caller: Principal, now: datetime, item_id: str, delta: int, reason: str
) -> CatalogItem:
    """Add to (or take from) the stock, with the reason: goods delivered, damaged, counted."""
    if delta == 0:
        raise InvalidInput("delta is not 0", field="delta")
    if not reason.strip():
        raise InvalidInput("say why the stock changes", field="reason")
    item = _locked(session, item_id)
    after = item.stock + delta
    if after < 0:
        raise StockBelowZero(
            f"the stock is {item.stock}; it cannot go below zero", field="delta", stock=item.stock
        )
    if after > STOCK_MAX:
        raise InvalidInput(f"stock is at most {STOCK_MAX:,}", field="delta")
    item.stock = after
    item.updated_at = now
    session.add(item)
    session.add(
        StockChange(
            item_id=item.id,
            delta=delta,
            stock_after=after,
            reason=reason,
            staff_id=caller.principal_id,
            at=now,
        )
    )
    session.flush()
    _audit(
        session, caller, now, "catalog.stock.adjust", item, reason, {"delta": delta, "stock": after}
    )
    return item


def stock_changes(session: Session, item_id: str) -> list[StockChange]:
    return list(
        session.exec(
            select(StockChange).where(StockChange.item_id == item_id).order_by(col(StockChange.id))
        ).all()
    )


def image_type(data: bytes) -> str:
    """The picture's content type by its first bytes (``image_invalid`` when not PNG or JPEG,
    or larger than 256 KiB): a declared type is never trusted."""
    if not data or len(data) > IMAGE_MAX_BYTES:
        raise ImageInvalid(f"a picture is 1 byte to {IMAGE_MAX_BYTES // 1024} KiB")
    for magic, content_type in IMAGE_TYPES.items():
        if data.startswith(magic):
            return content_type
    raise ImageInvalid("a picture is a PNG or a JPEG")


def set_image(
    session: Session, caller: Principal, now: datetime, item_id: str, data: bytes
) -> CatalogImage:
    content_type = image_type(data)
    item = _locked(session, item_id)
    image = session.get(CatalogImage, item.id)
    if image is None:
        image = CatalogImage(item_id=item.id, content_type=content_type, data=data, updated_at=now)
    else:
        image.content_type, image.data, image.updated_at = content_type, data, now
    session.add(image)
    session.flush()
    _audit(
        session,
        caller,
        now,
        "catalog.image.set",
        item,
        "",
        {"content_type": content_type, "bytes": len(data)},
    )
    return image


def get_image(session: Session, item_id: str) -> CatalogImage:
    image = session.get(CatalogImage, item_id)
    if image is None:
        raise NotFound(f"catalog item {item_id} has no picture")
    return image


def has_images(session: Session, item_ids: list[str]) -> set[str]:
    if not item_ids:
        return set()
    return set(
        session.exec(
            select(CatalogImage.item_id).where(col(CatalogImage.item_id).in_(item_ids))
        ).all()
    )


# Exchanges -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reserved:
    """An item taken out of stock in the payment's transaction, for ``amount`` points."""

    item: CatalogItem
    point_type: PointType
    quantity: int
    amount: int
    fiscal_year: int


def reserve(
    session: Session,
    now: datetime,
    item_id: str,
    quantity: int,
    resident_id: str,
    *,
    merchant_id: str | None = None,
) -> Reserved:
    """Steps 1 to 3 of an exchange (see the module's docstring), in the caller's transaction.
    With ``merchant_id`` (a counter's till) the item must be that counter's."""
    if type(quantity) is not int or not 1 <= quantity <= QUANTITY_MAX:
        raise InvalidInput(f"quantity is 1 to {QUANTITY_MAX}", field="quantity")
    item = get_item(session, item_id, merchant_id=merchant_id)
    merchants.active_merchant(session, item.merchant_id)
    if item.status != ItemStatus.ACTIVE:
        raise ItemNotAvailable("this item is no longer offered", item_id=item.id)
    if item.available_from is not None and now < item.available_from:
        raise ItemNotAvailable(
            "this item is not offered yet", item_id=item.id, available_from=item.available_from
        )
    if item.available_until is not None and now >= item.available_until:
        raise ItemNotAvailable(
            "this item is no longer offered: its time is over",
            item_id=item.id,
            available_until=item.available_until,
        )
    point_type = get_point_type(session, item.point_type_id)
    if point_type.id not in {
        p.id for p in merchants.accepted_point_types(session, item.merchant_id)
    }:
        raise PointTypeNotAccepted(
            "the counter no longer takes this item's point type", field="item_id"
        )
    year = fiscal_year(tokyo_date(now))
    connection = session.connection()
    if item.per_resident_limit is not None:
        cap = item.per_resident_limit
        key = {"item_id": item.id, "resident_id": resident_id, "fiscal_year": year}
        insert_missing(connection, ExchangeAllowance, {**key, "quantity": 0, "cap": cap})
        raised = connection.execute(
            sa.update(ExchangeAllowance)
            .where(
                col(ExchangeAllowance.item_id) == item.id,
                col(ExchangeAllowance.resident_id) == resident_id,
                col(ExchangeAllowance.fiscal_year) == year,
                col(ExchangeAllowance.quantity) + quantity <= cap,
            )
            .values(quantity=col(ExchangeAllowance.quantity) + quantity, cap=cap)
        )
        if raised.rowcount != 1:
            taken = connection.execute(
                sa.select(col(ExchangeAllowance.quantity)).where(
                    col(ExchangeAllowance.item_id) == item.id,
                    col(ExchangeAllowance.resident_id) == resident_id,
                    col(ExchangeAllowance.fiscal_year) == year,
                )
            ).scalar_one()
            left = max(0, cap - int(taken))
            raise ExchangeLimitExceeded(
                f"one resident takes at most {cap} of this item a fiscal year; {left} left",
                field="quantity",
                limit=cap,
                left=left,
            )
    lowered = connection.execute(
        sa.update(CatalogItem)
        .where(col(CatalogItem.id) == item.id, col(CatalogItem.stock) >= quantity)
        .values(stock=col(CatalogItem.stock) - quantity)
    )
    if lowered.rowcount != 1:
        in_stock = connection.execute(
            sa.select(col(CatalogItem.stock)).where(col(CatalogItem.id) == item.id)
        ).scalar_one()
        raise OutOfStock(
            "this item is out of stock" if in_stock == 0 else f"only {in_stock} left",
            item_id=item.id,
            in_stock=int(in_stock),
        )
    session.refresh(item)
    return Reserved(item, point_type, quantity, item.points * quantity, year)


def record(
    session: Session, now: datetime, reserved: Reserved, payment: Payment, channel: Channel
) -> Exchange:
    """Step 5: the exchange row, in the payment's transaction."""
    exchange = Exchange(
        id=new_id("exc"),
        payment_id=payment.id,
        item_id=reserved.item.id,
        resident_id=payment.resident_id,
        quantity=reserved.quantity,
        points=reserved.amount,
        fiscal_year=reserved.fiscal_year,
        channel=channel,
        created_at=now,
    )
    session.add(exchange)
    session.flush()
    return exchange


def exchange_of_payment(session: Session, payment_id: str) -> Exchange | None:
    return session.exec(select(Exchange).where(Exchange.payment_id == payment_id)).first()


def items_by_id(session: Session, item_ids: list[str]) -> list[CatalogItem]:
    if not item_ids:
        return []
    return list(
        session.exec(select(CatalogItem).where(col(CatalogItem.id).in_(set(item_ids)))).all()
    )


def exchanges_of(session: Session, resident_id: str, *, limit: int = 50) -> list[Exchange]:
    return list(
        session.exec(
            select(Exchange)
            .where(Exchange.resident_id == resident_id)
            .order_by(col(Exchange.created_at).desc(), col(Exchange.id).desc())
            .limit(limit)
        ).all()
    )


# Helpers -------------------------------------------------------------------------------------


def _locked(session: Session, item_id: str) -> CatalogItem:
    item = session.exec(
        select(CatalogItem).where(CatalogItem.id == item_id).with_for_update()
    ).first()
    if item is None:
        raise NotFound(f"no catalog item {item_id}")
    return item


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _described(item: CatalogItem, point_type: PointType) -> dict[str, object]:
    return {
        "merchant_id": item.merchant_id,
        "point_type": point_type.code,
        "name_ja": item.name_ja,
        "name_en": item.name_en,
        "points": item.points,
        "stock": item.stock,
        "per_resident_limit": item.per_resident_limit,
        "available_from": _plain(item.available_from),
        "available_until": _plain(item.available_until),
    }


def _audit(
    session: Session,
    caller: Principal,
    now: datetime,
    action: str,
    item: CatalogItem,
    reason: str,
    details: dict[str, object],
) -> None:
    audit.record(
        session,
        actor=caller,
        action=action,
        object_type="catalog_item",
        object_id=item.id,
        at=now,
        reason=reason,
        details=details,
    )
