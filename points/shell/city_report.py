"""What ``points demo`` prints of the pilot city (``points.shell.city``): the city in figures,
read from the database (so a second run prints the same), and a one-time way in for each role.

``sign_in`` makes, at the real time: a counter code (an enrolment code, 15 minutes) for the
first resident, who has a phone; the card number and PIN of the first card holder; a device code
(``points.access.create_device_code``, 15 minutes) for a till, the counter clerk, a department's
officer, finance and the admin; and bearer tokens for the same principals to try the API with
(the demo's tokens of an earlier run are revoked first, so six are live however often it runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from points import access, wallet_views
from points.auth import Role, Token
from points.calendar import TOKYO
from points.pointtypes import list_point_types
from points.registry import Merchant, Resident, Staff, StaffRole
from points.shell import city_data as data
from points.shell.city import DEMO_LABEL, City
from points.shell.city_record import DemoCity
from points.uow import unit_of_work
from redemption import cards, merchants

NOTICE_DAYS = 60


def _count(session: Session, sql: str) -> int:
    return int(session.connection().exec_driver_sql(sql).scalar_one() or 0)


def figures(engine: Engine) -> dict[str, int]:
    """The city in numbers, by name (the tests compare them too)."""
    queries = {
        "residents": "SELECT count(*) FROM resident",
        "cards": "SELECT count(*) FROM card WHERE status = 'active'",
        "shops": "SELECT count(*) FROM merchant WHERE kind = 'shop'",
        "tills": "SELECT count(*) FROM till",
        "awards": "SELECT count(*) FROM award",
        "awarded": "SELECT sum(amount) FROM award",
        "uploads": "SELECT count(*) FROM award_upload WHERE status = 'done'",
        "uploaded": "SELECT sum(awarded) FROM award_upload",
        "check_ins": "SELECT count(*) FROM event_attendance",
        "events": "SELECT count(*) FROM volunteer_event",
        "payments": "SELECT count(*) FROM payment",
        "payment_qr": "SELECT count(*) FROM payment WHERE flow = 'payment_qr'",
        "pay_code": "SELECT count(*) FROM payment WHERE flow = 'pay_code'",
        "store_qr": "SELECT count(*) FROM payment WHERE flow = 'store_qr'",
        "store_qr_confirmed": "SELECT count(*) FROM ledger_entry WHERE kind = 'payment_post'",
        "declined": "SELECT count(*) FROM ledger_entry WHERE kind = 'payment_decline'",
        "card": "SELECT count(*) FROM payment WHERE flow = 'card'",
        "exchanges": "SELECT count(*) FROM exchange",
        "refunds": "SELECT count(*) FROM payment_refund",
        "refunds_full": (
            "SELECT count(*) FROM payment_refund AS r JOIN payment AS p ON p.id = r.payment_id "
            "WHERE r.amount = p.amount"
        ),
        "refunds_partial": (
            "SELECT count(*) FROM payment_refund AS r JOIN payment AS p ON p.id = r.payment_id "
            "WHERE r.amount < p.amount"
        ),
        "expiry_runs": "SELECT count(*) FROM job_run WHERE job = 'expiry'",
        "expired": "SELECT sum(points) FROM expired_points_view",
        "settlement_runs": "SELECT count(*) FROM settlement_run",
        "statements": "SELECT count(*) FROM statement",
        "yen_to_pay": "SELECT sum(yen_to_pay) FROM statement",
        "runs_paid": "SELECT count(*) FROM settlement_run WHERE paid_on IS NOT NULL",
        "entries": "SELECT count(*) FROM ledger_entry",
        "sealed": "SELECT count(*) FROM ledger_seal",
    }
    expired = (
        "(SELECT a.credits_posted - a.debits_posted AS points FROM ledger_account AS a "
        "JOIN point_type AS t ON t.expired_account_id = a.id) AS x"
    )

    def work(session: Session) -> dict[str, int]:
        return {
            name: _count(session, sql.replace("expired_points_view", expired))
            for name, sql in queries.items()
        }

    return unit_of_work(engine, work, read_only=True)


def describe(engine: Engine, record: DemoCity) -> list[str]:
    """The city in a few lines."""
    f = figures(engine)
    history_from = City.history_start(record.anchor_day)
    took = f" in {record.duration_ms / 1000:.1f} s" if record.duration_ms is not None else ""
    return [
        f"The pilot city: {f['residents']:,} residents ({f['cards']:,} with a card and a PIN), "
        f"{f['shops']} shops with {f['tills']} tills, the city counter; seed {record.seed}",
        f"  history {history_from.isoformat()} to {record.anchor_day.isoformat()}, seeded "
        f"{record.started_at.astimezone(TOKYO):%Y-%m-%d %H:%M} (Tokyo){took}",
        f"  awards {f['awards']:,} ({f['awarded']:,} pt): {f['uploaded']:,} by {f['uploads']} "
        f"CSV files, {f['check_ins']:,} clean-up check-ins at {f['events']} events, "
        f"{f['awards'] - f['uploaded'] - f['check_ins']:,} one by one",
        f"  payments {f['payments']:,}: payment QR {f['payment_qr']:,}, pay code "
        f"{f['pay_code']:,}, store QR {f['store_qr']:,} ({f['store_qr_confirmed']:,} confirmed "
        f"by the till, {f['declined']} declined), card and PIN {f['card']:,}, exchanges at the "
        f"counter {f['exchanges']:,}; refunds {f['refunds']} ({f['refunds_full']} full, "
        f"{f['refunds_partial']} partial)",
        f"  expired {f['expired']:,} pt ({f['expiry_runs']} expiry runs); settlement "
        f"{f['settlement_runs']} months, {f['statements']:,} statements, "
        f"{f['yen_to_pay']:,} yen to pay ({f['runs_paid']} months paid)",
        f"  ledger: {f['entries']:,} entries, {f['sealed']:,} sealed",
    ]


@dataclass(frozen=True, slots=True)
class Way:
    """One way in: who, and what to open or type."""

    role: str
    who: str
    lines: list[str]


def sign_in(
    engine: Engine, record: DemoCity, now: datetime, *, secret_key: bytes, origin: str
) -> tuple[list[Way], list[tuple[str, str]]]:
    """The ways in for each role, and the bearer tokens (role, secret); see the docstring."""
    base = origin.rstrip("/")
    staff_app = f"{base}/staff/#/enrol/"
    first_number, first_name, _born, _kind = data.FIRST_RESIDENTS[0]
    card_number, card_name, _born, _kind = data.FIRST_RESIDENTS[1]
    pin = City.people_of(record)[1].pin
    assert pin is not None

    def work(session: Session) -> tuple[list[Way], list[tuple[str, str]]]:
        resident = _resident(session, first_number)
        holder = _resident(session, card_number)
        card = cards.active_card_of(session, holder.id)
        assert card is not None
        coffee = session.exec(select(Merchant).where(Merchant.name_en == "Komae Coffee")).one()
        till = merchants.list_tills(session, coffee.id)[0]
        health = data.DEPARTMENTS[0]
        staff = [
            ("till", f"{coffee.name_ja} {till.name}", till.staff_id),
            ("counter", data.COUNTER_NAME, _staff(session, StaffRole.COUNTER, data.COUNTER_NAME)),
            ("department", health[3], _staff(session, StaffRole.ISSUER, health[3])),
            ("finance", data.FINANCE_NAME, _staff(session, StaffRole.FINANCE, data.FINANCE_NAME)),
            ("admin", data.ADMIN_NAME, _staff(session, StaffRole.ADMIN, data.ADMIN_NAME)),
        ]
        _enrolment, code = access.create_enrolment_code(
            session, access.SYSTEM, now, resident.id, secret_key=secret_key
        )
        ways = [
            Way(
                "wallet",
                f"{first_name} (a resident with a phone)",
                [
                    f"open {base}/app/ and type the counter code {code}",
                    _balances(session, resident.id, now),
                ],
            ),
            Way(
                "card",
                f"{card_name} (a resident with a card, no phone)",
                [
                    f"card number {cards.grouped(card.number)}, PIN {pin} (at a till, or at "
                    "the city counter)",
                    _balances(session, holder.id, now),
                ],
            ),
        ]
        for role, who, staff_id in staff:
            _device, device_code = access.create_device_code(
                session, access.SYSTEM, now, staff_id, secret_key=secret_key, label=who
            )
            ways.append(Way(role, who, [f"open {staff_app}{device_code}"]))
        principals = [(Role.RESIDENT, resident.id)] + [
            (Role.MERCHANT if role == "till" else _ROLES[role], staff_id)
            for role, _who, staff_id in staff
        ]
        return ways, _tokens(session, now, principals)

    return unit_of_work(engine, work)


_ROLES = {
    "counter": Role.COUNTER,
    "department": Role.ISSUER,
    "finance": Role.FINANCE,
    "admin": Role.ADMIN,
}


def _resident(session: Session, address_number: str) -> Resident:
    return session.exec(select(Resident).where(Resident.address_number == address_number)).one()


def _staff(session: Session, role: StaffRole, name: str) -> str:
    return session.exec(
        select(Staff.id).where(Staff.role == role, Staff.display_name == name)
    ).one()


def _balances(session: Session, resident_id: str, now: datetime) -> str:
    parts = []
    for point_type in list_point_types(session):
        view = wallet_views.wallet_view(session, point_type, resident_id, now, NOTICE_DAYS)
        if view.balance or view.by_expiry:
            parts.append(f"{view.balance:,} {point_type.code}")
    return "wallet: " + (", ".join(parts) or "empty")


def _tokens(
    session: Session, now: datetime, principals: list[tuple[Role, str]]
) -> list[tuple[str, str]]:
    earlier = session.exec(
        select(Token).where(
            col(Token.principal_id).in_([principal_id for _role, principal_id in principals]),
            Token.label == DEMO_LABEL,
            col(Token.revoked_at).is_(None),
        )
    ).all()
    for token in earlier:
        access.revoke_token(session, access.SYSTEM, now, token.id, "a later run of points demo")
    return [
        (
            str(role),
            access.issue_token(
                session, access.SYSTEM, now, role=role, principal_id=principal_id, label=DEMO_LABEL
            ).secret,
        )
        for role, principal_id in principals
    ]


def ledger_totals(engine: Engine) -> dict[tuple[str, int], tuple[int, int]]:
    """(point type, account code) -> (debits, credits) posted: the ledger's totals by kind of
    account, which the same seed and anchor day give again (the tests compare them)."""

    def work(session: Session) -> dict[tuple[str, int], tuple[int, int]]:
        rows = session.execute(
            sa.text(
                "SELECT l.code, a.code, sum(a.debits_posted), sum(a.credits_posted) "
                "FROM ledger_account AS a JOIN ledger AS l ON l.id = a.ledger_id "
                "GROUP BY l.code, a.code"
            )
        )
        return {(str(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in rows}

    return unit_of_work(engine, work, read_only=True)
