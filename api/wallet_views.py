"""A resident's wallets as the wallet app and the counter show them (one place for both)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from api.schemas_earning import ExpiryLinePublic, WalletHistoryLine, WalletPublic
from points import pointtypes, wallet_views
from points.calendar import NEVER
from points.people import get
from points.registry import Resident
from points.wallets import point_types_of_resident


def _line(line: wallet_views.ExpiryLine) -> ExpiryLinePublic:
    return ExpiryLinePublic(
        valid_until=None if line.valid_until == NEVER else line.valid_until, amount=line.amount
    )


def wallet_public(view: wallet_views.WalletView) -> WalletPublic:
    point_type, soon = view.point_type, view.expiring_soon
    notice_ja = notice_en = None
    if soon is not None:
        day = soon.valid_until
        notice_ja = (
            f"{soon.amount:,}{point_type.unit}が{day.year}年{day.month}月{day.day}日に失効します"
        )
        notice_en = f"{soon.amount:,} {point_type.unit} expire on {soon.valid_until.isoformat()}"
    return WalletPublic(
        point_type=point_type.code,
        name_ja=point_type.name_ja,
        name_en=point_type.name_en,
        unit=point_type.unit,
        status=view.status,
        balance=view.balance,
        held=view.held,
        by_expiry=[_line(line) for line in view.by_expiry],
        expiring_soon=_line(soon) if soon is not None else None,
        notice_ja=notice_ja,
        notice_en=notice_en,
    )


def resident_wallets(
    session: Session, resident_id: str, now: datetime, notice_days: int
) -> list[WalletPublic]:
    """The resident's wallets: one per point type the resident holds or held points of (or
    whose wallet was closed), by type code; none for the city's other types. A resident who
    has earned nothing yet has none; ``GET /me/wallets/{point_type}`` still answers an empty
    wallet of any type."""
    get(session, Resident, resident_id)
    return [
        wallet_public(wallet_views.wallet_view(session, point_type, resident_id, now, notice_days))
        for point_type in point_types_of_resident(session, resident_id)
    ]


def resident_wallet(
    session: Session, resident_id: str, code: str, now: datetime, notice_days: int
) -> WalletPublic:
    point_type = pointtypes.find_point_type(session, code)
    view = wallet_views.wallet_view(session, point_type, resident_id, now, notice_days)
    return wallet_public(view)


def resident_history(
    session: Session, resident_id: str, code: str, *, before: int | None, limit: int
) -> list[WalletHistoryLine]:
    point_type = pointtypes.find_point_type(session, code)
    return [
        WalletHistoryLine.model_validate(item)
        for item in wallet_views.wallet_history(
            session, point_type, resident_id, before=before, limit=limit
        )
    ]
