"""Payments as each caller sees them: the shop with its own pseudonym of the resident, the
resident with the shop's name, finance with the resident's pseudonymous id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from api.schemas_cards import CardReceipt
from api.schemas_earning import ExpiryLinePublic
from api.schemas_spending import (
    FinancePaymentPublic,
    MerchantPaymentPublic,
    MerchantSettingsPublic,
    PaymentRequestPublic,
    ResidentPaymentPublic,
    TillPublic,
)
from points import qrrender
from points.calendar import NEVER
from points.pointtypes import get_point_type
from points.wallet_views import wallet_view
from redemption import cards
from redemption.flows import RequestView
from redemption.merchants import SettingsView, Till
from redemption.payments import PaymentView

#: The printed size of the QR codes the API renders.
QR_SIZE_MM = 60


def _fields(view: PaymentView) -> dict[str, Any]:
    payment = view.payment
    return {
        "id": payment.id,
        "merchant_id": payment.merchant_id,
        "merchant_name_ja": view.merchant_name_ja,
        "merchant_name_en": view.merchant_name_en,
        "till_id": payment.till_id,
        "till_name": view.till_name,
        "point_type": view.point_type_code,
        "amount": payment.amount,
        "refunded": payment.refunded,
        "state": view.state,
        "flow": payment.flow,
        "reference": payment.reference,
        "created_at": payment.created_at,
        "confirm_by": payment.confirm_by if payment.hold else None,
        "resolved_at": view.resolved_at,
        "entry_id": payment.entry_id,
        "resolution_entry_id": view.resolution_entry_id,
        "refund_entry_ids": view.refund_entry_ids,
    }


def for_merchant(view: PaymentView, key: bytes) -> MerchantPaymentPublic:
    return MerchantPaymentPublic(**_fields(view), customer=view.customer_ref(key))


def for_resident(view: PaymentView) -> ResidentPaymentPublic:
    return ResidentPaymentPublic(**_fields(view))


def for_finance(view: PaymentView) -> FinancePaymentPublic:
    return FinancePaymentPublic(**_fields(view), resident_id=view.payment.resident_id)


def request_public(found: RequestView, key: bytes) -> PaymentRequestPublic:
    request = found.request
    return PaymentRequestPublic(
        id=request.id,
        amount=request.amount,
        point_type=found.point_type_code,
        reference=request.reference,
        state=found.state,
        token=request.token,
        svg=qrrender.svg(request.token, QR_SIZE_MM, quick=True),
        created_at=request.created_at,
        expires_at=request.expires_at,
        payment=for_merchant(found.payment, key) if found.payment is not None else None,
    )


def till_public(till: Till) -> TillPublic:
    return TillPublic(
        id=till.id,
        merchant_id=till.merchant_id,
        staff_id=till.staff_id,
        name=till.name,
        status=till.status,
        store_qr=till.store_text,
        store_qr_svg=qrrender.svg(till.store_text, 80),
        created_at=till.created_at,
    )


def settings_public(found: SettingsView) -> MerchantSettingsPublic:
    settings = found.settings
    return MerchantSettingsPublic(
        merchant_id=settings.merchant_id,
        accepted_point_types=[p.code for p in found.accepted],
        confirm_mode=settings.confirm_mode,
        auto_confirm_max=settings.auto_confirm_max,
        confirm_timeout_seconds=settings.confirm_timeout_seconds,
        refund_window_days=settings.refund_window_days,
        fee_bps=settings.fee_bps,
        updated_at=settings.updated_at,
    )


def card_receipt(
    session: Session, paid: PaymentView, now: datetime, notice_days: int
) -> CardReceipt:
    """What a card has left after a payment, and its nearest expiry (for the till's receipt)."""
    payment = paid.payment
    assert payment.card_id is not None
    card = cards.get_card(session, payment.card_id)
    point_type = get_point_type(session, payment.point_type_id)
    wallet = wallet_view(session, point_type, payment.resident_id, now, notice_days)
    nearest = next((line for line in wallet.by_expiry if line.valid_until != NEVER), None)
    return CardReceipt(
        card_last4=card.last4,
        point_type=point_type.code,
        balance=wallet.balance,
        nearest_expiry=(
            ExpiryLinePublic(valid_until=nearest.valid_until, amount=nearest.amount)
            if nearest is not None
            else None
        ),
    )
