"""Monthly settlement with merchants (issue 20; DESIGN §6): statements in yen, their budget lines,
and the postings that move each merchant's payable to settled.

**The cut.** A period is a calendar month in Asia/Tokyo (``2026-11``); its cut is 00:00 on the
1st of the next month. A settlement run of a period covers every posted entry on a merchant's
payable that was **recorded before the cut and is in no earlier statement**. Each covered entry
gets a ``statement_entry`` row whose primary key is the entry's id, so an entry is counted once
whatever happens; an entry recorded before the cut but committed after a run read the ledger
(PostgreSQL commits in its own order, not in id order) is simply not seen by that run and is
covered by the next one. Holds are not covered until posted (the posting entry is), voids never
move the payable, and the settlement entries themselves (kinds ``settlement`` and
``settlement_recovery``) are not payments or refunds.

**A run** (``settle``) is made once per period: the scheduled ``settlement`` job (the 1st, 01:00
Tokyo), ``points settle --period 2026-11`` or finance's API. Asking again replays the run (the
same statements, nothing posted twice); a period not yet ended is ``period_not_ended``; a period
older than one already settled is refused (its entries are in the later run). A dry run
(``plan``) computes the same statements without writing anything.

**A statement** is made per merchant and point type with entries covered, or with a negative
balance carried in (a merchant that is closed gets none after its final one). Its figures, held
by CHECK constraints on the table (``redemption.settlement_models``):

* payments and refunds (counts and points) of the covered entries, ``net = payments - refunds``;
* ``carried_in``: the negative balance the merchant's previous statement carried out (0 once
  finance recorded its recovery); ``settle_points = max(0, carried_in + net)`` is moved from the
  payable to settled by one ledger entry (entries never cross ledgers: one per merchant and point
  type), and ``carried_out = min(0, carried_in + net)`` goes to the next statement: **a negative
  net carries forward, never a negative payout**;
* ``yen = settle_points × yen_rate`` (the point type's rate, frozen once it has payments),
  ``fee = floor(yen × fee_bps / 10,000)`` (the merchant's cash-out fee), ``yen_to_pay``;
* ``transfer``: ``bank``, or ``none`` for the city's own counter (statements, no transfer);
* ``final``: the merchant was closed at the run; what is owed either way is on it, and a
  negative balance is closed by finance recording how it was recovered (``record_recovery``:
  repaid, offset or written off), which moves the points back from settled to the payable.

**Budget lines.** The yen is split by the programs the points came from: a payment's entry draws
from bucket accounts, each of one program (``wallet_bucket``); a refund's entry lists the buckets
it returned to (its metadata ``buckets``, including shares of buckets expired since, which go to
expired points but came from that program). Each line carries the program's budget code
(款項目節) at the run. With the carries as lines of their own, the lines sum to
``settle_points`` and their yen to ``yen``.

Programs belong to ``issuers``, which ``redemption`` does not import (the layers of DESIGN §2):
their names and budget codes are read through a lightweight table (``_PROGRAM``), as the
foreign keys refer to them.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from ledger import LedgerTx, NewEntry, Posting, Side
from ledger import schema as ledger_schema
from ledger.model import from_us, to_us
from points import access, audit
from points.accounts import AccountCode
from points.auth import Principal
from points.calendar import TOKYO
from points.errors import Conflict, InvalidInput, NotFound
from points.jobs import Job, JobContext
from points.pointtypes import PointType
from points.registry import Merchant, MerchantKind, MerchantStatus, new_id
from points.uow import unit_of_work
from points.wallets import WalletBucket
from redemption.errors import PeriodNotEnded, PeriodSuperseded
from redemption.merchants import MerchantPayable, MerchantSettings
from redemption.settlement_models import (
    PERIOD_PATTERN,
    LineKind,
    PayoutTransfer,
    RecoveryMethod,
    RunTrigger,
    SettlementRun,
    Statement,
    StatementEntry,
    StatementLine,
    StatementRecovery,
    Transfer,
    TransferStatus,
)

#: Ledger entry kinds of settlement itself (never covered by a statement).
SETTLEMENT_KIND = "settlement"
RECOVERY_KIND = "settlement_recovery"
SETTLEMENT_KINDS = (SETTLEMENT_KIND, RECOVERY_KIND)
#: The idempotency namespace of settlement entries.
NAMESPACE = "settlement"
#: Entries read per query while covering (bounded IN lists).
CHUNK = 500
NOTE_MAX = 500

_PROGRAM = sa.table(
    "program",
    sa.column("id", sa.String),
    sa.column("name_ja", sa.String),
    sa.column("name_en", sa.String),
    sa.column("budget_code", sa.String),
)


# Periods -------------------------------------------------------------------------------------


def check_period(period: str) -> tuple[int, int]:
    if not isinstance(period, str) or not re.fullmatch(PERIOD_PATTERN, period):
        raise InvalidInput(
            "a period is a month written YYYY-MM, for example 2026-11", field="period"
        )
    year, month = int(period[:4]), int(period[5:])
    if not 2000 <= year <= 2999:
        raise InvalidInput("a period's year is 2000 to 2999", field="period")
    return year, month


def period_start(period: str) -> datetime:
    """00:00 Asia/Tokyo on the 1st of the period's month, as a UTC instant."""
    year, month = check_period(period)
    return datetime(year, month, 1, tzinfo=TOKYO).astimezone(UTC)


def period_cut(period: str) -> datetime:
    """The cut of a period: 00:00 Asia/Tokyo on the 1st of the next month (UTC instant)."""
    year, month = check_period(period)
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=TOKYO).astimezone(UTC)


def last_ended_period(now: datetime) -> str:
    """The latest month that has ended at ``now`` (Tokyo): on 2026-12-01 it is 2026-11."""
    local = now.astimezone(TOKYO)
    year, month = (local.year - 1, 12) if local.month == 1 else (local.year, local.month - 1)
    return f"{year:04d}-{month:02d}"


# The plan of a run ---------------------------------------------------------------------------


@dataclass(slots=True)
class Covered:
    entry_id: int
    points: int
    recorded_at: datetime
    #: Points by program id ('' when it could not be told).
    programs: dict[str, int]


@dataclass(slots=True)
class PlannedLine:
    kind: LineKind
    program_id: str | None
    budget_code: str | None
    points: int
    yen: int
    name_ja: str = ""
    name_en: str = ""


@dataclass(slots=True)
class PlannedStatement:
    merchant_id: str
    point_type_id: str
    payable_account_id: int
    entries: list[Covered]
    carried_in: int
    yen_rate: int
    fee_bps: int
    transfer: Transfer
    final: bool
    lines: list[PlannedLine] = field(default_factory=list)

    @property
    def payment_points(self) -> int:
        return sum(e.points for e in self.entries if e.points > 0)

    @property
    def refund_points(self) -> int:
        return -sum(e.points for e in self.entries if e.points < 0)

    @property
    def payment_count(self) -> int:
        return sum(1 for e in self.entries if e.points > 0)

    @property
    def refund_count(self) -> int:
        return sum(1 for e in self.entries if e.points < 0)

    @property
    def net_points(self) -> int:
        return self.payment_points - self.refund_points

    @property
    def settle_points(self) -> int:
        return max(0, self.carried_in + self.net_points)

    @property
    def carried_out(self) -> int:
        return min(0, self.carried_in + self.net_points)

    @property
    def yen(self) -> int:
        return self.settle_points * self.yen_rate

    @property
    def fee(self) -> int:
        return fee_of(self.yen, self.fee_bps)

    @property
    def yen_to_pay(self) -> int:
        return self.yen - self.fee


def fee_of(yen: int, fee_bps: int) -> int:
    """The cash-out fee: floor(yen × bps / 10,000)."""
    return yen * fee_bps // 10_000


@dataclass(frozen=True, slots=True)
class Plan:
    period: str
    cut_at: datetime
    statements: list[PlannedStatement]


def plan(session: Session, period: str, now: datetime) -> Plan:
    """What a run of ``period`` would write now (nothing is written)."""
    cut = period_cut(period)
    if now < cut:
        raise PeriodNotEnded(
            f"the period {period} ends at {cut.astimezone(TOKYO).isoformat()}; "
            "it can be settled after that",
            field="period",
            cut_at=cut.isoformat(),
        )
    later = session.exec(
        select(SettlementRun.period).where(col(SettlementRun.period) > period).limit(1)
    ).first()
    if later is not None:
        raise PeriodSuperseded(
            f"the period {later} was settled already; {period} is covered by it", field="period"
        )
    covered = _uncovered_entries(session, to_us(cut))
    payables = {row.account_id: row for row in session.exec(select(MerchantPayable)).all()}
    by_key: dict[tuple[str, str], tuple[int, list[Covered]]] = {}
    for account_id, entries in covered.items():
        payable = payables[account_id]
        by_key[(payable.merchant_id, payable.point_type_id)] = (account_id, entries)
    carries = _open_carries(session)
    for key, (last, carrier, account_id) in carries.items():
        # A carry alone makes a statement each month while the merchant trades, and once more,
        # final, when it has closed (what it owes is then on its final statement).
        if key not in by_key and (carrier.status != MerchantStatus.CLOSED or not last.final):
            by_key[key] = (account_id, [])
    merchants = {m.id: m for m in session.exec(select(Merchant)).all()}
    point_types = {p.id: p for p in session.exec(select(PointType)).all()}
    fees = {s.merchant_id: s.fee_bps for s in session.exec(select(MerchantSettings)).all()}
    programs = _programs(session)
    statements = []
    for (merchant_id, point_type_id), (account_id, entries) in sorted(by_key.items()):
        merchant = merchants[merchant_id]
        carry = carries.get((merchant_id, point_type_id))
        planned = PlannedStatement(
            merchant_id=merchant_id,
            point_type_id=point_type_id,
            payable_account_id=account_id,
            entries=sorted(entries, key=lambda e: e.entry_id),
            carried_in=carry[0].carried_out if carry is not None else 0,
            yen_rate=point_types[point_type_id].yen_rate,
            fee_bps=fees.get(merchant_id, 0),
            transfer=Transfer.NONE if merchant.kind == MerchantKind.COUNTER else Transfer.BANK,
            final=merchant.status == MerchantStatus.CLOSED,
        )
        planned.lines = _lines(planned, programs)
        statements.append(planned)
    return Plan(period, cut, statements)


def _uncovered_entries(session: Session, cut_us: int) -> dict[int, list[Covered]]:
    """Posted entries on merchant payables recorded before the cut and in no statement, by
    payable account, with their points split by program."""
    posting, account, entry = ledger_schema.posting, ledger_schema.account, ledger_schema.entry
    covered = sa.select(StatementEntry.entry_id).where(  # type: ignore[call-overload]
        col(StatementEntry.entry_id) == entry.c.id
    )
    rows = session.connection().execute(
        sa.select(
            posting.c.entry_id,
            posting.c.account_id,
            posting.c.side,
            posting.c.amount,
            entry.c.recorded_at_us,
        )
        .join(account, account.c.id == posting.c.account_id)
        .join(entry, entry.c.id == posting.c.entry_id)
        .where(
            account.c.code == int(AccountCode.MERCHANT_PAYABLE),
            entry.c.phase.in_((0, 2)),
            entry.c.recorded_at_us < cut_us,
            entry.c.kind.not_in(SETTLEMENT_KINDS),
            ~sa.exists(covered),
        )
        .order_by(posting.c.entry_id)
    )
    points: dict[int, int] = defaultdict(int)
    accounts: dict[int, int] = {}
    recorded: dict[int, int] = {}
    for entry_id, account_id, side, amount, recorded_at_us in rows:
        points[entry_id] += amount if side == int(Side.CREDIT) else -amount
        accounts[entry_id] = account_id
        recorded[entry_id] = recorded_at_us
    shares = _program_shares(session, [e for e, p in points.items() if p != 0])
    result: dict[int, list[Covered]] = defaultdict(list)
    for entry_id, net in points.items():
        if net == 0:
            continue
        split = shares.get(entry_id, {})
        attributed = sum(split.values())
        if attributed != net:
            split[""] = split.get("", 0) + net - attributed
        result[accounts[entry_id]].append(
            Covered(
                entry_id, net, from_us(recorded[entry_id]), {k: v for k, v in split.items() if v}
            )
        )
    return result


def _program_shares(session: Session, entry_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """The points of each entry by program, signed as the payable saw them: a payment's bucket
    debits (+), a refund's returns to buckets as its metadata lists them (-)."""
    posting, entry = ledger_schema.posting, ledger_schema.entry
    bucket = WalletBucket.__table__  # type: ignore[attr-defined]
    shares: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    connection = session.connection()
    for start in range(0, len(entry_ids), CHUNK):
        chunk = entry_ids[start : start + CHUNK]
        refunds: dict[int, list[list[int]]] = {}
        for entry_id, metadata in connection.execute(
            sa.select(entry.c.id, entry.c.metadata).where(entry.c.id.in_(chunk))
        ):
            returned = json.loads(metadata).get("buckets")
            if isinstance(returned, list) and "refund_of" in json.loads(metadata):
                refunds[entry_id] = returned
        returned_accounts = {int(a) for rows in refunds.values() for a, _ in rows}
        program_of: dict[int, str] = dict(
            connection.execute(
                sa.select(bucket.c.account_id, bucket.c.program_id).where(
                    bucket.c.account_id.in_(returned_accounts)
                )
            ).all()
        )
        for entry_id, rows in refunds.items():
            for account_id, points in rows:
                shares[entry_id][program_of.get(int(account_id), "")] -= int(points)
        drawn = connection.execute(
            sa.select(posting.c.entry_id, posting.c.amount, bucket.c.program_id)
            .join(bucket, bucket.c.account_id == posting.c.account_id)
            .where(posting.c.entry_id.in_(chunk), posting.c.side == int(Side.DEBIT))
        )
        for entry_id, amount, program_id in drawn:
            if entry_id not in refunds:
                shares[entry_id][program_id] += amount
    return {k: dict(v) for k, v in shares.items()}


def _open_carries(session: Session) -> dict[tuple[str, str], tuple[Statement, Merchant, int]]:
    """The latest statement of each merchant and point type that carried a negative balance out
    and whose recovery is not recorded: (the statement, the merchant, its payable account)."""
    latest = (
        sa.select(
            col(Statement.merchant_id),
            col(Statement.point_type_id),
            sa.func.max(SettlementRun.cut_at).label("cut_at"),
        )
        .join(SettlementRun, col(SettlementRun.id) == col(Statement.run_id))
        .group_by(col(Statement.merchant_id), col(Statement.point_type_id))
        .subquery()
    )
    rows = session.exec(
        select(Statement, Merchant, MerchantPayable)
        .join(SettlementRun, col(SettlementRun.id) == col(Statement.run_id))
        .join(
            latest,
            sa.and_(
                latest.c.merchant_id == col(Statement.merchant_id),
                latest.c.point_type_id == col(Statement.point_type_id),
                latest.c.cut_at == col(SettlementRun.cut_at),
            ),
        )
        .join(Merchant, col(Merchant.id) == col(Statement.merchant_id))
        .join(
            MerchantPayable,
            sa.and_(
                col(MerchantPayable.merchant_id) == col(Statement.merchant_id),
                col(MerchantPayable.point_type_id) == col(Statement.point_type_id),
            ),
        )
        .where(col(Statement.carried_out) < 0)
    ).all()
    recovered = set(session.exec(select(StatementRecovery.statement_id)).all())
    return {
        (s.merchant_id, s.point_type_id): (s, m, p.account_id)
        for s, m, p in rows
        if s.id not in recovered
    }


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    name_ja: str
    name_en: str
    budget_code: str | None


def _programs(session: Session, ids: Iterable[str] | None = None) -> dict[str, ProgramInfo]:
    query = sa.select(_PROGRAM)
    if ids is not None:
        query = query.where(_PROGRAM.c.id.in_(list(ids)))
    return {
        row.id: ProgramInfo(row.name_ja, row.name_en, row.budget_code)
        for row in session.connection().execute(query)
    }


def _lines(planned: PlannedStatement, programs: dict[str, ProgramInfo]) -> list[PlannedLine]:
    rate = planned.yen_rate
    by_program: dict[str, int] = defaultdict(int)
    for covered in planned.entries:
        for program_id, points in covered.programs.items():
            by_program[program_id] += points
    lines = []
    for program_id, points in sorted(by_program.items()):
        if not points:
            continue
        if program_id and program_id in programs:
            info = programs[program_id]
            lines.append(
                PlannedLine(
                    LineKind.PROGRAM,
                    program_id,
                    info.budget_code,
                    points,
                    points * rate,
                    info.name_ja,
                    info.name_en,
                )
            )
        else:
            lines.append(PlannedLine(LineKind.UNATTRIBUTED, None, None, points, points * rate))
    if planned.carried_in:
        lines.append(
            PlannedLine(
                LineKind.CARRIED_IN, None, None, planned.carried_in, planned.carried_in * rate
            )
        )
    if planned.carried_out:
        lines.append(
            PlannedLine(
                LineKind.CARRIED_OUT, None, None, -planned.carried_out, -planned.carried_out * rate
            )
        )
    return lines


# Runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    run: SettlementRun
    statements: list[Statement]
    #: The run existed already: this is a replay, nothing was written.
    replay: bool


def settle(
    session: Session,
    actor: Principal,
    now: datetime,
    period: str,
    *,
    trigger: RunTrigger,
) -> RunResult:
    """Make the run of ``period`` (or replay it): statements, coverage, lines, postings."""
    check_period(period)
    existing = session.exec(select(SettlementRun).where(SettlementRun.period == period)).first()
    if existing is not None:
        return RunResult(existing, statements_of_run(session, existing.id), replay=True)
    planned = plan(session, period, now)
    run = SettlementRun(
        id=new_id("stl"),
        period=period,
        cut_at=planned.cut_at,
        trigger=trigger,
        created_by=actor.principal_id,
        created_at=now,
    )
    # First: a concurrent run of the period fails here (uq_settlement_run_period) and is run
    # again, when it finds this one and replays it.
    session.add(run)
    session.flush()
    tx = LedgerTx(session.connection(), lambda: now)
    point_types = {p.id: p for p in session.exec(select(PointType)).all()}
    made = []
    for item in planned.statements:
        statement = Statement(
            id=new_id("stm"),
            run_id=run.id,
            period=period,
            merchant_id=item.merchant_id,
            point_type_id=item.point_type_id,
            payment_count=item.payment_count,
            refund_count=item.refund_count,
            payment_points=item.payment_points,
            refund_points=item.refund_points,
            net_points=item.net_points,
            carried_in=item.carried_in,
            settle_points=item.settle_points,
            carried_out=item.carried_out,
            yen_rate=item.yen_rate,
            fee_bps=item.fee_bps,
            yen=item.yen,
            fee=item.fee,
            yen_to_pay=item.yen_to_pay,
            transfer=item.transfer,
            final=item.final,
            created_at=now,
        )
        if item.settle_points:
            point_type = point_types[item.point_type_id]
            entry = tx.post(
                NewEntry(
                    [
                        Posting(item.payable_account_id, Side.DEBIT, item.settle_points),
                        Posting(point_type.settled_account_id, Side.CREDIT, item.settle_points),
                    ],
                    kind=SETTLEMENT_KIND,
                    description=f"settlement {period}",
                    metadata={"statement_id": statement.id, "period": period},
                    namespace=NAMESPACE,
                    idempotency_key=f"{period}:{item.merchant_id}:{item.point_type_id}",
                )
            )
            statement.entry_id = entry.id
        session.add(statement)
        session.flush()
        session.add_all(
            StatementEntry(
                entry_id=e.entry_id,
                statement_id=statement.id,
                kind="payment" if e.points > 0 else "refund",
                points=e.points,
                recorded_at=e.recorded_at,
            )
            for e in item.entries
        )
        session.add_all(
            StatementLine(
                statement_id=statement.id,
                kind=line.kind,
                program_id=line.program_id,
                budget_code=line.budget_code,
                points=line.points,
                yen=line.yen,
            )
            for line in item.lines
        )
        made.append(statement)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="settlement.run",
        object_type="settlement_run",
        object_id=run.id,
        at=now,
        details={
            "period": period,
            "trigger": str(trigger),
            "statements": len(made),
            "points": sum(s.settle_points for s in made),
            "yen_to_pay": sum(s.yen_to_pay for s in made),
        },
    )
    return RunResult(run, made, replay=False)


# Reading -------------------------------------------------------------------------------------


def get_run(session: Session, run_id: str) -> SettlementRun:
    run = session.get(SettlementRun, run_id)
    if run is None:
        raise NotFound(f"no settlement run {run_id}")
    return run


def list_runs(session: Session, *, before: str | None, limit: int) -> list[SettlementRun]:
    """Runs, latest period first; ``before`` a period (the cursor)."""
    query = select(SettlementRun).order_by(col(SettlementRun.period).desc()).limit(limit)
    if before is not None:
        query = query.where(col(SettlementRun.period) < before)
    return list(session.exec(query).all())


def statements_of_run(session: Session, run_id: str) -> list[Statement]:
    return list(
        session.exec(
            select(Statement)
            .where(Statement.run_id == run_id)
            .order_by(col(Statement.merchant_id), col(Statement.point_type_id))
        ).all()
    )


def get_statement(
    session: Session, statement_id: str, *, merchant_id: str | None = None
) -> Statement:
    """One statement; with ``merchant_id``, only that merchant's (404 otherwise)."""
    statement = session.get(Statement, statement_id)
    if statement is None or (merchant_id is not None and statement.merchant_id != merchant_id):
        raise NotFound(f"no statement {statement_id}")
    return statement


def list_statements(
    session: Session, *, merchant_id: str | None = None, period: str | None = None
) -> list[Statement]:
    """Every statement (of a merchant, of a period), latest period first, then by merchant and
    point type; the API pages its own lists (``api.routers.settlement``)."""
    query = select(Statement).order_by(
        col(Statement.period).desc(), col(Statement.merchant_id), col(Statement.point_type_id)
    )
    if merchant_id is not None:
        query = query.where(Statement.merchant_id == merchant_id)
    if period is not None:
        query = query.where(Statement.period == period)
    return list(session.exec(query).all())


def lines_of(session: Session, statement_id: str) -> list[StatementLine]:
    return list(
        session.exec(
            select(StatementLine)
            .where(StatementLine.statement_id == statement_id)
            .order_by(col(StatementLine.id))
        ).all()
    )


def entries_of(session: Session, statement_id: str) -> list[StatementEntry]:
    return list(
        session.exec(
            select(StatementEntry)
            .where(StatementEntry.statement_id == statement_id)
            .order_by(col(StatementEntry.entry_id))
        ).all()
    )


def program_names(session: Session, ids: Iterable[str]) -> dict[str, ProgramInfo]:
    return _programs(session, ids)


# Recovering a closed merchant's negative balance ---------------------------------------------


def record_recovery(
    session: Session,
    actor: Principal,
    now: datetime,
    statement_id: str,
    *,
    method: RecoveryMethod,
    note: str,
) -> StatementRecovery:
    """Finance records how a closed merchant's negative balance (its final statement's
    ``carried_out``) was recovered; the points go back from settled to the payable (zero)."""
    statement = get_statement(session, statement_id)
    note = note.strip()
    if not note:
        raise InvalidInput("say how it was recovered (a note)", field="note")
    if len(note) > NOTE_MAX:
        raise InvalidInput(f"a note is at most {NOTE_MAX} characters", field="note")
    if session.get(StatementRecovery, statement_id) is not None:
        raise Conflict("its recovery is recorded already", field="statement_id")
    merchant = session.get(Merchant, statement.merchant_id)
    assert merchant is not None
    if merchant.status != MerchantStatus.CLOSED or statement.carried_out >= 0:
        raise Conflict(
            "only the negative balance of a closed merchant's final statement is recovered here; "
            "an open merchant's nets into its next statement"
        )
    latest = session.exec(
        select(Statement)
        .where(
            Statement.merchant_id == statement.merchant_id,
            Statement.point_type_id == statement.point_type_id,
        )
        .order_by(col(Statement.period).desc())
        .limit(1)
    ).one()
    if latest.id != statement.id:
        raise Conflict("a later statement carries this balance; record it on that one")
    point_type = session.get(PointType, statement.point_type_id)
    payable = session.get(MerchantPayable, (statement.merchant_id, statement.point_type_id))
    assert point_type is not None and payable is not None
    points = -statement.carried_out
    entry = LedgerTx(session.connection(), lambda: now).post(
        NewEntry(
            [
                Posting(point_type.settled_account_id, Side.DEBIT, points),
                Posting(payable.account_id, Side.CREDIT, points),
            ],
            kind=RECOVERY_KIND,
            description=f"recovery of statement {statement.id} ({method})",
            metadata={"statement_id": statement.id, "method": str(method)},
            namespace=NAMESPACE,
            idempotency_key=f"recovery:{statement.id}",
        )
    )
    recovery = StatementRecovery(
        statement_id=statement.id,
        method=method,
        points=points,
        yen=points * statement.yen_rate,
        note=note,
        entry_id=entry.id,
        recorded_by=actor.principal_id,
        recorded_at=now,
    )
    session.add(recovery)
    audit.record(
        session,
        actor=actor,
        action="statement.recovery",
        object_type="statement",
        object_id=statement.id,
        at=now,
        reason=note,
        details={"method": str(method), "points": points, "yen": recovery.yen},
    )
    session.flush()
    return recovery


def payout_date_of(session: Session, statement: Statement) -> date | None:
    """The payout date of a statement: its transfer's run's (none while unpaid or without one)."""
    if statement.transfer_id is None:
        return None
    transfer = session.get(PayoutTransfer, statement.transfer_id)
    if transfer is None or transfer.status != TransferStatus.PAID:
        return None
    run = session.get(SettlementRun, transfer.run_id)
    return run.paid_on if run is not None else None


# The scheduled run ---------------------------------------------------------------------------


def _scheduled(context: JobContext) -> dict[str, int]:
    now = (context.clock or (lambda: context.as_of))()
    result = unit_of_work(
        context.engine,
        lambda session: settle(
            session, access.SYSTEM, now, context.period, trigger=RunTrigger.SCHEDULER
        ),
    )
    return {
        "statements": len(result.statements),
        "points": sum(s.settle_points for s in result.statements),
        "yen_to_pay": sum(s.yen_to_pay for s in result.statements),
    }


#: The monthly run: on the 1st at 01:00 Tokyo, of the month that just ended (registered by the
#: shell, ``points.shell.wiring``).
SETTLEMENT_JOB = Job(
    "settlement",
    "settle the month that ended with the merchants: statements and settlement entries",
    last_ended_period,
    _scheduled,
    {"trigger": "cron", "day": 1, "hour": 1, "minute": 0},
)
