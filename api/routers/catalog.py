"""The goods-exchange catalog of a city counter (issue 19 part 6; ``redemption.catalog``).

* **Admins** keep the catalog: items (names, points, stock, picture, window, limit per resident
  and fiscal year) and stock changes with their reasons; every change is audited.
* **Residents** see what is offered and exchange in the wallet app (flow ``exchange``); the
  receipt is shown at the counter for the goods.
* **A counter's till** exchanges for a resident with a card and PIN (flow ``card``).
* **The picture** of an item is public: it is a photo of an eco bag, and the wallet's ``<img>``
  fetches it without credentials.

Every exchange has a printable receipt (HTML with print CSS, Japanese first).
"""

from __future__ import annotations

import html
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlmodel import Session

from api.bodies import StrictRoute
from api.card_payments import pay_with_pin
from api.deps import AdminDep, CounterDep, MerchantDep, ResidentDep, ServicesDep
from api.payment_views import card_receipt, for_finance, for_merchant, for_resident
from api.safety import VALUE_MOVING, IdempotencyDep
from api.schemas import HTML_PAGE, PROTECTED_ERRORS, PathId, error_responses
from api.schemas_catalog import (
    AssistedExchangeCreate,
    AssistedExchangePublic,
    CardExchangeCreate,
    CardExchangePublic,
    ExchangeCreate,
    ExchangePublic,
    ItemChange,
    ItemCreate,
    ItemPublic,
    ResidentExchangePublic,
    StockChangeCreate,
    StockChangePublic,
)
from points.calendar import TOKYO
from points.errors import NotFound
from points.pointtypes import get_point_type
from points.registry import Merchant
from redemption import catalog, flows, merchants, payments

admin_router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
resident_router = APIRouter(
    prefix="/api/v1/me", tags=["resident"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
merchant_router = APIRouter(
    prefix="/api/v1/merchant",
    tags=["merchant"],
    responses=PROTECTED_ERRORS,
    route_class=StrictRoute,
)
counter_router = APIRouter(
    prefix="/api/v1/counter", tags=["counter"], responses=PROTECTED_ERRORS, route_class=StrictRoute
)
public_router = APIRouter(
    prefix="/api/v1/catalog",
    tags=["public"],
    responses=error_responses(404, 422, 429, 503),
    route_class=StrictRoute,
)

#: A printable page: its own inline style, nothing else loads or runs.
PRINT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"

IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The picture: a PNG or a JPEG of at most 256 KiB.",
        "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _public(session: Session, items: list[catalog.CatalogItem]) -> list[ItemPublic]:
    pictured = catalog.has_images(session, [item.id for item in items])
    codes: dict[str, str] = {}
    for item in items:
        if item.point_type_id not in codes:
            codes[item.point_type_id] = get_point_type(session, item.point_type_id).code
    return [ItemPublic.of(item, codes[item.point_type_id], item.id in pictured) for item in items]


def _one(session: Session, item: catalog.CatalogItem) -> ItemPublic:
    return _public(session, [item])[0]


# Admins --------------------------------------------------------------------------------------


@admin_router.post(
    "/catalog-items", status_code=201, response_model=ItemPublic, summary="Add a catalog item"
)
def create_item(body: ItemCreate, caller: AdminDep, services: ServicesDep) -> ItemPublic:
    """An item a city counter (a merchant of kind `counter`) hands out for points: names,
    points, stock, and optionally a window and a limit per resident and fiscal year. Refusals:
    `not_a_counter`, `point_type_not_accepted` (the counter must accept the point type),
    `not_found`."""
    now = services.clock()

    def work(session: Session) -> ItemPublic:
        item = catalog.create_item(
            session,
            caller,
            now,
            catalog.NewItem(
                merchant_id=body.merchant_id,
                point_type=body.point_type,
                name_ja=body.name_ja,
                name_en=body.name_en,
                points=body.points,
                stock=body.stock,
                per_resident_limit=body.per_resident_limit,
                available_from=body.available_from,
                available_until=body.available_until,
            ),
        )
        return _one(session, item)

    return services.write(work)


@admin_router.get("/catalog-items", response_model=list[ItemPublic], summary="Every catalog item")
def list_items(caller: AdminDep, services: ServicesDep) -> list[ItemPublic]:
    """Every item of every counter, retired ones included, oldest first."""
    return services.read(lambda session: _public(session, catalog.list_items(session)))


@admin_router.patch(
    "/catalog-items/{item_id}", response_model=ItemPublic, summary="Change a catalog item"
)
def change_item(
    item_id: PathId, body: ItemChange, caller: AdminDep, services: ServicesDep
) -> ItemPublic:
    """Changes what is sent (`null` clears the limit or an end of the window; `status`
    `retired` stops offering it). The stock changes only by a stock change. Audited."""
    now = services.clock()
    sent = body.model_fields_set

    def work(session: Session) -> ItemPublic:
        item = catalog.change_item(
            session,
            caller,
            now,
            item_id,
            catalog.ItemChange(
                name_ja=body.name_ja,
                name_en=body.name_en,
                points=body.points,
                per_resident_limit=body.per_resident_limit,
                clear_limit="per_resident_limit" in sent and body.per_resident_limit is None,
                available_from=body.available_from,
                available_until=body.available_until,
                clear_from="available_from" in sent and body.available_from is None,
                clear_until="available_until" in sent and body.available_until is None,
                status=body.status,
            ),
        )
        return _one(session, item)

    return services.write(work)


@admin_router.post(
    "/catalog-items/{item_id}/stock-changes",
    status_code=201,
    response_model=ItemPublic,
    summary="Add to or take from an item's stock, with the reason",
)
def change_stock(
    item_id: PathId, body: StockChangeCreate, caller: AdminDep, services: ServicesDep
) -> ItemPublic:
    """Goods delivered (`delta` > 0), damaged or miscounted (< 0), with the reason; audited.
    Refusals: `stock_below_zero`, `validation_error` (`delta` 0)."""
    now = services.clock()

    def work(session: Session) -> ItemPublic:
        item = catalog.adjust_stock(session, caller, now, item_id, body.delta, body.reason)
        return _one(session, item)

    return services.write(work)


@admin_router.get(
    "/catalog-items/{item_id}/stock-changes",
    response_model=list[StockChangePublic],
    summary="An item's stock changes",
)
def stock_changes(item_id: PathId, caller: AdminDep, services: ServicesDep) -> list[Any]:
    """Every stock change of the item, oldest first, each with its reason and who made it
    (exchanges are not among them: they are payments to the counter)."""

    def work(session: Session) -> list[StockChangePublic]:
        catalog.get_item(session, item_id)
        return [
            StockChangePublic.model_validate(change)
            for change in catalog.stock_changes(session, item_id)
        ]

    return services.read(work)


@admin_router.put(
    "/catalog-items/{item_id}/image",
    response_model=ItemPublic,
    openapi_extra=IMAGE_BODY,
    summary="Set an item's picture",
)
async def set_image(
    item_id: PathId, request: Request, caller: AdminDep, services: ServicesDep
) -> ItemPublic:
    """The body is the picture (`image/png` or `image/jpeg`, at most 256 KiB; its type is read
    from its bytes, not trusted from the header). Refusals: `image_invalid`."""
    data = await request.body()
    now = services.clock()

    def work(session: Session) -> ItemPublic:
        catalog.set_image(session, caller, now, item_id, data)
        return _one(session, catalog.get_item(session, item_id))

    return await run_in_threadpool(services.write, work)


# Everyone: the pictures ----------------------------------------------------------------------


@public_router.get(
    "/items/{item_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    summary="A catalog item's picture",
)
def item_image(item_id: PathId, services: ServicesDep) -> Response:
    """The item's picture as uploaded (PNG or JPEG); no token needed, so the wallet's `<img>`
    shows it. `not_found` when the item has none."""
    image = services.read(lambda session: catalog.get_image(session, item_id))
    return Response(
        content=image.data,
        media_type=image.content_type,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )


# Residents -----------------------------------------------------------------------------------


@resident_router.get(
    "/catalog", response_model=list[ItemPublic], summary="What the city counters offer now"
)
def offered(caller: ResidentDep, services: ServicesDep) -> list[ItemPublic]:
    """Items a resident can exchange now (active, inside their window, at an active counter),
    with the stock left (0: out of stock, shown so the resident knows it exists)."""
    now = services.clock()
    return services.read(
        lambda session: _public(session, catalog.list_items(session, offered_at=now))
    )


def _exchange_fields(exchanged: flows.Exchanged, receipt_url: str) -> dict[str, Any]:
    done = exchanged.exchange
    return {
        "id": done.id,
        "payment_id": done.payment_id,
        "item_id": done.item_id,
        "item_name_ja": exchanged.item.name_ja,
        "item_name_en": exchanged.item.name_en,
        "quantity": done.quantity,
        "points": done.points,
        "channel": done.channel,
        "created_at": done.created_at,
        "receipt_url": receipt_url,
    }


@resident_router.post(
    "/exchanges",
    status_code=201,
    response_model=ResidentExchangePublic,
    openapi_extra=VALUE_MOVING,
    summary="Exchange points for goods from a city counter's catalog",
)
def exchange(
    body: ExchangeCreate, caller: ResidentDep, services: ServicesDep, idempotency: IdempotencyDep
) -> JSONResponse:
    """Takes the item out of stock and the points from my wallet at once (earliest-expiring
    first); I show the receipt at the counter for the goods. Requires an `Idempotency-Key`.
    Refusals: `out_of_stock` (with `in_stock`), `item_not_available` (retired, or outside its
    window), `exchange_limit_exceeded` (with `left`), `insufficient_balance`, `wallet_closed`,
    `merchant_not_active`, `not_found`."""
    now = services.clock()

    def work(session: Session) -> tuple[int, Any]:
        done = flows.exchange_in_wallet(
            session, caller.principal_id, now, body.item_id, body.quantity
        )
        fields = _exchange_fields(done, f"/api/v1/me/exchanges/{done.exchange.id}/receipt")
        answer = ResidentExchangePublic(**fields, payment=for_resident(done.payment))
        return 201, answer.model_dump(mode="json")

    return idempotency.run(caller, body, work)


@resident_router.get(
    "/exchanges", response_model=list[ExchangePublic], summary="My exchanges, newest first"
)
def my_exchanges(caller: ResidentDep, services: ServicesDep) -> list[ExchangePublic]:
    """My last 50 exchanges (what, how many, points, when, where), each with its receipt."""

    def work(session: Session) -> list[ExchangePublic]:
        done = catalog.exchanges_of(session, caller.principal_id)
        items = {item.id: item for item in catalog.items_by_id(session, [d.item_id for d in done])}
        return [
            ExchangePublic(
                id=d.id,
                payment_id=d.payment_id,
                item_id=d.item_id,
                item_name_ja=items[d.item_id].name_ja,
                item_name_en=items[d.item_id].name_en,
                quantity=d.quantity,
                points=d.points,
                channel=catalog.Channel(d.channel),
                created_at=d.created_at,
                receipt_url=f"/api/v1/me/exchanges/{d.id}/receipt",
            )
            for d in done
        ]

    return services.read(work)


@resident_router.get(
    "/exchanges/{exchange_id}/receipt",
    response_class=Response,
    responses=HTML_PAGE,
    summary="The printable receipt of one of my exchanges",
)
def my_receipt(exchange_id: PathId, caller: ResidentDep, services: ServicesDep) -> HTMLResponse:
    """A page to show at the counter or print (A4, Japanese first): the item, quantity, points,
    date, counter and the exchange's number. Another resident's exchange is `not_found`."""
    return services.read(
        lambda session: receipt_page(session, exchange_id, resident_id=caller.principal_id)
    )


# A counter's till ----------------------------------------------------------------------------


@merchant_router.post(
    "/card-exchanges",
    status_code=201,
    response_model=CardExchangePublic,
    openapi_extra=VALUE_MOVING,
    summary="Exchange goods for a resident's card points (a counter's till)",
)
def exchange_by_card(
    body: CardExchangeCreate,
    caller: MerchantDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """A city counter's till scanned the card (or keyed its number), picked the item, and the
    resident typed the PIN: the item leaves the stock and the points the card at once. The PIN
    is counted before it is compared, as for a card payment (`pin_incorrect`, `card_locked`,
    `pin_attempts_exceeded`). Other refusals: those of `POST /me/exchanges` and of a card
    payment."""
    now = services.clock()

    def at_the_till(session: Session) -> str:
        till = merchants.till_of(session, caller)
        merchants.active_merchant(session, till.merchant_id)
        catalog.get_item(session, body.item_id, merchant_id=till.merchant_id)
        return till.id

    def exchange(session: Session, card_id: str) -> tuple[int, Any]:
        done = flows.exchange_by_card(
            session, caller, now, card_id, item_id=body.item_id, quantity=body.quantity
        )
        receipt = card_receipt(session, done.payment, now, services.settings.expiry_notice_days)
        fields = _exchange_fields(done, f"/api/v1/merchant/exchanges/{done.exchange.id}/receipt")
        answer = CardExchangePublic(
            **fields,
            payment=for_merchant(done.payment, services.pseudonym_key),
            receipt=receipt,
        )
        return 201, answer.model_dump(mode="json")

    return pay_with_pin(body, caller, services, idempotency, now, place=at_the_till, pay=exchange)


@counter_router.post(
    "/assisted-exchanges",
    status_code=201,
    response_model=AssistedExchangePublic,
    openapi_extra=VALUE_MOVING,
    summary="Exchange goods for a resident's card points, with the PIN the resident typed",
)
def assisted_exchange(
    body: AssistedExchangeCreate,
    caller: CounterDep,
    services: ServicesDep,
    idempotency: IdempotencyDep,
) -> JSONResponse:
    """Counter staff exchange an item of a city counter's catalog for a resident who handed
    over the card and typed the PIN on the staff device, saying why (`reason`). The PIN is
    counted before it is compared as for any card payment; the item leaves the stock and the
    points the card in one transaction; audited (`card.assisted_payment`) with the member of
    staff, the resident and the reason. Refusals: those of `POST /me/exchanges` and of
    `POST /counter/assisted-payments`."""
    now = services.clock()

    def at_the_counter(session: Session) -> None:
        item = catalog.get_item(session, body.item_id)
        merchants.active_merchant(session, item.merchant_id)

    def exchange(session: Session, card_id: str) -> tuple[int, Any]:
        done = flows.exchange_on_behalf(
            session,
            caller,
            now,
            card_id,
            item_id=body.item_id,
            quantity=body.quantity,
            reason=body.reason,
        )
        receipt = card_receipt(session, done.payment, now, services.settings.expiry_notice_days)
        fields = _exchange_fields(done, f"/api/v1/counter/exchanges/{done.exchange.id}/receipt")
        answer = AssistedExchangePublic(
            **fields, payment=for_finance(done.payment), receipt=receipt
        )
        return 201, answer.model_dump(mode="json")

    return pay_with_pin(
        body, caller, services, idempotency, now, place=at_the_counter, pay=exchange
    )


@counter_router.get(
    "/catalog", response_model=list[ItemPublic], summary="What the city counters offer now"
)
def offered_at_the_counter(caller: CounterDep, services: ServicesDep) -> list[ItemPublic]:
    """The items counter staff can exchange for a resident now (`POST
    /api/v1/counter/assisted-exchanges`): the resident's list (`GET /api/v1/me/catalog`), with
    the stock left (0: out of stock)."""
    now = services.clock()
    return services.read(
        lambda session: _public(session, catalog.list_items(session, offered_at=now))
    )


@counter_router.get(
    "/exchanges/{exchange_id}/receipt",
    response_class=Response,
    responses=HTML_PAGE,
    summary="The printable receipt of any exchange (counter staff)",
)
def staff_receipt(exchange_id: PathId, caller: CounterDep, services: ServicesDep) -> HTMLResponse:
    """Counter staff print the receipt of any resident's exchange (they hand out the goods)."""
    return services.read(lambda session: receipt_page(session, exchange_id))


@merchant_router.get(
    "/exchanges/{exchange_id}/receipt",
    response_class=Response,
    responses=HTML_PAGE,
    summary="The printable receipt of an exchange at my counter",
)
def counter_receipt(
    exchange_id: PathId, caller: MerchantDep, services: ServicesDep
) -> HTMLResponse:
    """The exchange's receipt to print at the counter (any of the counter's staff); an exchange
    at another counter is `not_found`."""
    assert caller.merchant_id is not None
    merchant_id = caller.merchant_id
    return services.read(
        lambda session: receipt_page(session, exchange_id, merchant_id=merchant_id)
    )


# The receipt ---------------------------------------------------------------------------------


def receipt_page(
    session: Session,
    exchange_id: str,
    *,
    resident_id: str | None = None,
    merchant_id: str | None = None,
) -> HTMLResponse:
    """An exchange's receipt, for the caller's own exchanges only (a resident's, or those at
    the caller's counter): a 404 otherwise, naming nothing."""
    done = session.get(catalog.Exchange, exchange_id)
    if done is None or (resident_id is not None and done.resident_id != resident_id):
        raise NotFound(f"no exchange {exchange_id}")
    payment = payments.view(session, done.payment_id)
    if merchant_id is not None and payment.payment.merchant_id != merchant_id:
        raise NotFound(f"no exchange {exchange_id}")
    item = catalog.get_item(session, done.item_id)
    counter = session.get(Merchant, item.merchant_id)
    assert counter is not None
    at = done.created_at.astimezone(TOKYO)
    e = html.escape
    rows = [
        ("品物 / Item", f"{e(item.name_ja)}<br><span lang='en'>{e(item.name_en)}</span>"),
        ("数量 / Quantity", str(done.quantity)),
        ("ポイント / Points", f"{done.points:,} {e(payment.point_type_code)}"),
        ("日時 / Date", at.strftime("%Y-%m-%d %H:%M")),
        ("窓口 / Counter", f"{e(counter.name_ja)} / {e(counter.name_en)}"),
        ("交換番号 / Exchange", e(done.id)),
    ]
    if payment.payment.refunded:
        rows.append(("返金 / Refunded", f"{payment.payment.refunded:,}"))
    body = "\n".join(f"<tr><th scope='row'>{k}</th><td>{v}</td></tr>" for k, v in rows)
    page = f"""<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>交換の控え / Exchange receipt</title>
<style>
  @page {{ size: A4; margin: 20mm; }}
  body {{ font-family: "Noto Sans CJK JP", sans-serif; font-size: 14pt; color: #000;
         max-width: 160mm; margin: 1em auto; padding: 0 1em; }}
  h1 {{ font-size: 18pt; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ border: 1px solid #000; padding: 6pt; text-align: left; vertical-align: top; }}
  th {{ width: 40%; font-weight: bold; }}
  .note {{ margin-top: 1em; }}
</style>
</head>
<body>
<main>
<h1>ポイント交換の控え <span lang="en">/ Exchange receipt</span></h1>
<table>{body}</table>
<p class="note">この控えを窓口でお見せください。品物をお渡しします。<br>
<span lang="en">Show this receipt at the counter to receive the goods.</span></p>
</main>
</body>
</html>
"""
    return HTMLResponse(
        page, headers={"Cache-Control": "no-store", "Content-Security-Policy": PRINT_CSP}
    )
