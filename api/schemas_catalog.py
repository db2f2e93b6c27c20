"""Request and response models of the goods-exchange catalog: items and stock (admins), the
offered items and exchanges (residents, a counter's till)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from api.schemas import ByValue, Input, Instant, Name, ObjectId, Output, Reason
from api.schemas_cards import CardAndPin, CardReceipt
from api.schemas_spending import (
    FinancePaymentPublic,
    MerchantPaymentPublic,
    PaymentAmount,
    ResidentPaymentPublic,
    TypeCode,
)
from redemption.catalog import QUANTITY_MAX, STOCK_MAX, CatalogItem, Channel, ItemStatus

Quantity = Annotated[int, Field(ge=1, le=QUANTITY_MAX)]
Stock = Annotated[int, Field(ge=0, le=STOCK_MAX)]
StockDelta = Annotated[int, Field(ge=-STOCK_MAX, le=STOCK_MAX)]
PerResidentLimit = Annotated[int, Field(ge=1, le=1_000)]


class ItemCreate(Input):
    #: The city counter (a merchant of kind ``counter``) that hands the goods out.
    merchant_id: ObjectId
    #: The point type the item is priced in (the counter must accept it).
    point_type: TypeCode
    name_ja: Name = Field(examples=["コーヒー麻袋のエコバッグ"])
    name_en: Name = Field(examples=["Eco bag sewn from a coffee sack"])
    points: PaymentAmount = Field(examples=[500])
    stock: Stock = Field(examples=[40])
    #: How many one resident may take in a fiscal year (omit: no limit).
    per_resident_limit: PerResidentLimit | None = None
    available_from: Instant | None = None
    available_until: Instant | None = None


class ItemChange(Input):
    """Only what is sent changes; ``null`` clears the limit or either end of the window. The
    stock changes only by a stock change, with its reason."""

    name_ja: Name | None = None
    name_en: Name | None = None
    points: PaymentAmount | None = None
    per_resident_limit: PerResidentLimit | None = None
    available_from: Instant | None = None
    available_until: Instant | None = None
    status: Annotated[ItemStatus, ByValue] | None = None


class StockChangeCreate(Input):
    #: Added to the stock (negative: taken out); never below zero.
    delta: StockDelta
    reason: Reason


class StockChangePublic(Output):
    id: int
    delta: int
    stock_after: int
    reason: str
    staff_id: str
    at: datetime


class ItemPublic(Output):
    id: str
    merchant_id: str
    point_type: str
    name_ja: str
    name_en: str
    points: int
    stock: int
    per_resident_limit: int | None
    available_from: datetime | None
    available_until: datetime | None
    status: ItemStatus
    #: Where the item's picture is (null: none).
    image_url: str | None

    @classmethod
    def of(cls, item: CatalogItem, point_type_code: str, has_image: bool) -> ItemPublic:
        return cls(
            id=item.id,
            merchant_id=item.merchant_id,
            point_type=point_type_code,
            name_ja=item.name_ja,
            name_en=item.name_en,
            points=item.points,
            stock=item.stock,
            per_resident_limit=item.per_resident_limit,
            available_from=item.available_from,
            available_until=item.available_until,
            status=ItemStatus(item.status),
            image_url=f"/api/v1/catalog/items/{item.id}/image" if has_image else None,
        )


class ExchangeCreate(Input):
    item_id: ObjectId
    quantity: Quantity = 1


class ExchangePublic(Output):
    id: str
    payment_id: str
    item_id: str
    item_name_ja: str
    item_name_en: str
    quantity: int
    points: int
    channel: Channel
    created_at: datetime
    #: The printable receipt (HTML, A4 or a receipt printer).
    receipt_url: str


class ResidentExchangePublic(ExchangePublic):
    payment: ResidentPaymentPublic


class CardExchangeCreate(CardAndPin):
    """A counter's till scanned the card (or keyed its number), picked the item, and the
    resident typed the PIN."""

    item_id: ObjectId
    quantity: Quantity = 1


class AssistedExchangeCreate(CardExchangeCreate):
    """Counter staff exchange for the resident, who typed the PIN on the staff device;
    ``reason`` says why staff act for the resident."""

    reason: Reason


class CardExchangePublic(ExchangePublic):
    payment: MerchantPaymentPublic
    receipt: CardReceipt


class AssistedExchangePublic(ExchangePublic):
    payment: FinancePaymentPublic
    receipt: CardReceipt
