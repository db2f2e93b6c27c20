"""Finance reports read from the ledger and the points tables (issue 21, part 3).

Every report is a ``Report``: column names and rows of plain values, so that the API can give it
as JSON or CSV alike. Definitions (docs/reports.md):

* "At a date" ``D`` means at the end of ``D`` in Tokyo: the *posted* postings (entry phase 0, or
  2 for a posted hold) of entries with ``recorded_at_us`` before 00:00 Tokyo of ``D + 1``. The
  recording instant, not ``effective_at_us``: a report run twice for the same past date gives the
  same figures only if a late-recorded entry cannot move into its past. Pending holds (phase 1)
  and voided holds (phase 3) are left out; a hold counts when it is posted.
* Balances are on the account's normal side (credit-normal: credits - debits).

The program and department of a bucket are read from the ``program`` table by name (a light
``sa.table``): points does not import issuers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from ledger import schema as ledger_schema
from points.accounts import AccountCode
from points.calendar import TOKYO, start_of_day

#: Above this many yen of unused balance at a base date, a type bought with yen must be
#: reported (Payment Services Act art. 14: ¥10 million).
PSA_THRESHOLD_YEN = 10_000_000
POSTED_PHASES = (0, 2)

_PROGRAM = sa.table(
    "program",
    sa.column("id", sa.String),
    sa.column("department_id", sa.String),
    sa.column("point_type_id", sa.String),
)
_BUCKET = sa.table(
    "wallet_bucket",
    sa.column("account_id", sa.BigInteger),
    sa.column("point_type_id", sa.String),
    sa.column("program_id", sa.String),
    sa.column("valid_until", sa.Date),
)
_POINT_TYPE = sa.table(
    "point_type",
    sa.column("id", sa.String),
    sa.column("code", sa.String),
    sa.column("ledger_id", sa.Integer),
    sa.column("issuer", sa.String),
    sa.column("funding", sa.String),
    sa.column("yen_rate", sa.Integer),
)


@dataclass(frozen=True)
class Report:
    name: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    parameters: dict[str, str] = field(default_factory=dict)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def cutoff_us(day: date) -> int:
    """Microseconds of 00:00 Tokyo of the day after ``day``: the end of ``day``."""
    return int(start_of_day(day + timedelta(days=1)).timestamp() * 1_000_000)


def _posted(before_us: int, since_us: int | None = None) -> sa.Select[Any]:
    posting, entry, account = ledger_schema.posting, ledger_schema.entry, ledger_schema.account
    query = (
        sa.select(
            posting.c.entry_id,
            posting.c.account_id,
            posting.c.side,
            posting.c.amount,
            account.c.code,
            account.c.ledger_id,
            entry.c.recorded_at_us,
            entry.c.kind,
            entry.c.metadata,
        )
        .join(entry, entry.c.id == posting.c.entry_id)
        .join(account, account.c.id == posting.c.account_id)
        .where(entry.c.phase.in_(POSTED_PHASES), entry.c.recorded_at_us < before_us)
    )
    if since_us is not None:
        query = query.where(entry.c.recorded_at_us >= since_us)
    return query


def _totals(before_us: int) -> sa.Select[Any]:
    """Posted debits and credits per account and side by ``before_us``, summed by the database
    (one row per account and side, not per posting)."""
    posting, entry, account = ledger_schema.posting, ledger_schema.entry, ledger_schema.account
    return (
        sa.select(
            posting.c.account_id,
            account.c.ledger_id,
            account.c.code,
            posting.c.side,
            sa.func.sum(posting.c.amount).label("amount"),
        )
        .join(entry, entry.c.id == posting.c.entry_id)
        .join(account, account.c.id == posting.c.account_id)
        .where(entry.c.phase.in_(POSTED_PHASES), entry.c.recorded_at_us < before_us)
        .group_by(posting.c.account_id, account.c.ledger_id, account.c.code, posting.c.side)
    )


def _ledger_codes(session: Session) -> dict[int, str]:
    ledger = ledger_schema.ledger
    return {
        int(i): str(c)
        for i, c in session.connection().execute(sa.select(ledger.c.id, ledger.c.code))
    }


def trial_balance(session: Session, day: date) -> Report:
    """Debits and credits posted to each kind of account of each ledger by the end of ``day``;
    the totals' row last. Debits equal credits in every ledger and in all."""
    sums: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for row in session.connection().execute(_totals(cutoff_us(day))):
        sums[(int(row.ledger_id), int(row.code))][0 if row.side == 1 else 1] += int(row.amount)
    codes = _ledger_codes(session)
    rows: list[tuple[Any, ...]] = []
    for (ledger_id, code), (debits, credits) in sorted(sums.items()):
        rows.append(
            (codes.get(ledger_id, str(ledger_id)), code, AccountCode(code).name, debits, credits)
        )
    rows.append(("TOTAL", None, None, sum(r[3] for r in rows), sum(r[4] for r in rows)))
    return Report(
        "trial-balance",
        ("ledger", "account_code", "account", "debits", "credits"),
        rows,
        {"date": day.isoformat()},
    )


def _bucket_info(session: Session) -> dict[int, tuple[str, str, str | None, date]]:
    query = sa.select(
        _BUCKET.c.account_id,
        _BUCKET.c.point_type_id,
        _BUCKET.c.program_id,
        _PROGRAM.c.department_id,
        _BUCKET.c.valid_until,
    ).outerjoin(_PROGRAM, _PROGRAM.c.id == _BUCKET.c.program_id)
    return {
        int(a): (str(t), str(p), None if d is None else str(d), v)
        for a, t, p, d, v in session.connection().execute(query)
    }


def _point_type_codes(session: Session) -> dict[str, str]:
    return {
        str(i): str(c)
        for i, c in session.connection().execute(sa.select(_POINT_TYPE.c.id, _POINT_TYPE.c.code))
    }


def _ledger_point_types(session: Session) -> dict[int, str]:
    """Each ledger's point type code; a ledger of no point type by its own code."""
    codes = _ledger_codes(session)
    for i, c in session.connection().execute(
        sa.select(_POINT_TYPE.c.ledger_id, _POINT_TYPE.c.code)
    ):
        codes[int(i)] = str(c)
    return codes


def outstanding(session: Session, day: date) -> Report:
    """The city's liability at the end of ``day``: resident buckets' posted balances by point
    type, department, program and expiry month (``never`` for points that do not expire)."""
    buckets = _bucket_info(session)
    sums: dict[tuple[int, str, str, str], int] = defaultdict(int)
    for row in session.connection().execute(
        _totals(cutoff_us(day)).where(
            ledger_schema.account.c.code == int(AccountCode.RESIDENT_BUCKET)
        )
    ):
        info = buckets.get(int(row.account_id))
        if info is None:  # a bucket account of no wallet: no program, no expiry to tell
            department, program, month = "", "", ""
        else:
            _type, program, department_id, valid_until = info
            department = department_id or ""
            month = "never" if valid_until.year >= 9999 else valid_until.strftime("%Y-%m")
        signed = int(row.amount) if row.side == 2 else -int(row.amount)
        sums[(int(row.ledger_id), department, program, month)] += signed
    codes = _ledger_point_types(session)
    rows = [
        (codes.get(k[0], str(k[0])), k[1], k[2], k[3], points)
        for k, points in sorted(sums.items())
        if points != 0
    ]
    return Report(
        "outstanding",
        ("point_type", "department_id", "program_id", "expiry_month", "points"),
        rows,
        {"date": day.isoformat()},
    )


def breakage_shares(
    postings: Sequence[Any], buckets: dict[int, tuple[str, str, str | None, date]]
) -> dict[str, int]:
    """Points one entry moved to expired points, by program: an expiry's debited buckets, a
    refund's returns (metadata ``buckets``) to buckets it did not credit; "" if unknown."""
    expired = sum(
        (int(p.amount) if p.side == 2 else -int(p.amount))
        for p in postings
        if p.code == int(AccountCode.EXPIRED_POINTS)
    )
    if expired == 0:
        return {}
    shares: dict[str, int] = defaultdict(int)
    drawn = [
        p
        for p in postings
        if p.code == int(AccountCode.RESIDENT_BUCKET)
        and p.side == 1
        and int(p.account_id) in buckets
    ]
    if drawn and postings[0].kind == "expiry":
        for p in drawn:
            shares[buckets[int(p.account_id)][1]] += int(p.amount)
    else:
        credited = {
            int(p.account_id)
            for p in postings
            if p.code == int(AccountCode.RESIDENT_BUCKET) and p.side == 2
        }
        returns = json.loads(postings[0].metadata or "{}").get("buckets", [])
        for account_id, points in returns:
            if int(account_id) not in credited and int(account_id) in buckets:
                shares[buckets[int(account_id)][1]] += int(points)
    known = sum(shares.values())
    if known != expired:
        shares[""] += expired - known
    return dict(shares)


def breakage(session: Session, start: date, end: date) -> Report:
    """Points moved to expired points (expiry runs, and refunds to buckets expired since the
    spend), by Tokyo month of recording and program, for entries recorded from ``start`` to
    ``end`` inclusive."""
    buckets = _bucket_info(session)
    by_entry: dict[int, list[Any]] = defaultdict(list)
    since = cutoff_us(start - timedelta(days=1))
    expired_entries = (
        sa.select(ledger_schema.posting.c.entry_id)
        .join(
            ledger_schema.account, ledger_schema.account.c.id == ledger_schema.posting.c.account_id
        )
        .where(ledger_schema.account.c.code == int(AccountCode.EXPIRED_POINTS))
    )
    query = _posted(cutoff_us(end), since).where(
        ledger_schema.posting.c.entry_id.in_(expired_entries)
    )
    for row in session.connection().execute(query):
        by_entry[int(row.entry_id)].append(row)
    sums: dict[tuple[str, int, str], int] = defaultdict(int)
    for postings in by_entry.values():
        at = datetime.fromtimestamp(postings[0].recorded_at_us / 1_000_000, UTC).astimezone(TOKYO)
        month = at.strftime("%Y-%m")
        for program, points in breakage_shares(postings, buckets).items():
            sums[(month, int(postings[0].ledger_id), program)] += points
    codes = _ledger_point_types(session)
    rows = [
        (k[0], codes.get(k[1], str(k[1])), k[2], points)
        for k, points in sorted(sums.items())
        if points != 0
    ]
    return Report(
        "breakage",
        ("month", "point_type", "program_id", "points"),
        rows,
        {"from": start.isoformat(), "to": end.isoformat()},
    )


def psa_base_date(session: Session, day: date) -> Report:
    """The Payment Services Act's base-date report: each point type's unused balance at the end
    of ``day`` (resident buckets plus merchant payables not yet settled), in points and yen.
    A type bought with yen by an operator above ¥10 million is ``reportable``; a type the city
    issues itself is ``exempt`` (art. 4(3)); a free type is ``not_prepaid``."""
    liability = (int(AccountCode.RESIDENT_BUCKET), int(AccountCode.MERCHANT_PAYABLE))
    by_ledger: dict[int, int] = defaultdict(int)
    for row in session.connection().execute(
        _totals(cutoff_us(day)).where(ledger_schema.account.c.code.in_(liability))
    ):
        by_ledger[int(row.ledger_id)] += int(row.amount) if row.side == 2 else -int(row.amount)
    rows = []
    for _id, code, ledger_id, issuer, funding, yen_rate in session.connection().execute(
        sa.select(
            _POINT_TYPE.c.id,
            _POINT_TYPE.c.code,
            _POINT_TYPE.c.ledger_id,
            _POINT_TYPE.c.issuer,
            _POINT_TYPE.c.funding,
            _POINT_TYPE.c.yen_rate,
        ).order_by(_POINT_TYPE.c.code)
    ):
        points = by_ledger.get(int(ledger_id), 0)
        yen = points * int(yen_rate)
        if issuer == "city":
            status = "exempt"
        elif funding != "bought":
            status = "not_prepaid"
        elif yen > PSA_THRESHOLD_YEN:
            status = "reportable"
        else:
            status = "below_threshold"
        rows.append((str(code), str(issuer), str(funding), int(yen_rate), points, yen, status))
    return Report(
        "psa-base-date",
        ("point_type", "issuer", "funding", "yen_rate", "unused_points", "unused_yen", "status"),
        rows,
        {"date": day.isoformat()},
    )
