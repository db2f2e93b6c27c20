"""Independent verification of a ledger database.

``verify`` trusts nothing the writers maintained. It:

1. checks that the schema's guards are in place: the append-only and balance triggers (and that
   PostgreSQL has them enabled), the flag CHECK constraints, and on SQLite the integer guards;
2. checks every entry: debits equal credits, the number of postings fits its phase, a resolution
   names a pending entry, every posting's ledger is its entry's ledger;
3. recomputes every account's four totals from the postings (posted: posted entries and posted
   resolutions; pending: pending entries not yet resolved) and compares them with the row;
4. re-walks the seal chain from the genesis hash, recomputing every hash from the entries'
   canonical bytes (``ledger.seal``), and checks the head;
5. reports entries committed longer than ``unsealed_grace_seconds`` ago that are not sealed yet.

Each problem names the culprit (an entry, an account or a seal sequence). Work is set-based SQL
for 2 and 3 and a streaming walk for 4, so memory stays flat on a large ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from ledger import schema
from ledger.database import is_sqlite
from ledger.model import to_us
from ledger.seal import GENESIS_HASH, chain_hash, load_canonical

UNSEALED_GRACE_SECONDS = 10
_WALK_CHUNK = 2000
_PROBLEMS_MAX = 100


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    message: str
    entry_id: int | None = None
    account_id: int | None = None
    sequence: int | None = None


@dataclass(slots=True)
class Report:
    problems: list[Problem] = field(default_factory=list)
    entries: int = 0
    accounts: int = 0
    sealed: int = 0
    unsealed: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: Problem) -> None:
        if len(self.problems) < _PROBLEMS_MAX:
            self.problems.append(problem)


def verify(
    connection: sa.Connection,
    *,
    now: datetime,
    unsealed_grace_seconds: int = UNSEALED_GRACE_SECONDS,
) -> Report:
    """Verify everything; see the module docstring. Read-only."""
    report = Report()
    _check_schema(connection, report)
    _check_entries(connection, report)
    _check_totals(connection, report)
    _check_seals(connection, report)
    _check_unsealed(connection, report, to_us(now) - unsealed_grace_seconds * 1_000_000)
    return report


def _check_schema(connection: sa.Connection, report: Report) -> None:
    dialect = "sqlite" if is_sqlite(connection) else "postgresql"
    if dialect == "sqlite":
        triggers = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            )
        }
        disabled: set[str] = set()
        table_sql = " ".join(
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('ledger_account', 'ledger_posting')"
            )
        )
        checks = set(re.findall(r"CONSTRAINT\s+\"?(\w+)\"?\s+CHECK", table_sql))
        expected_checks = schema.EXPECTED_ACCOUNT_CHECKS | schema.EXPECTED_SQLITE_TYPE_CHECKS
    else:
        rows = connection.exec_driver_sql(
            "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal "
            "AND tgrelid::regclass::text LIKE 'ledger%%'"
        ).fetchall()
        triggers = {row[0] for row in rows}
        disabled = {row[0] for row in rows if row[1] == "D"}
        checks = {
            row[0]
            for row in connection.exec_driver_sql(
                "SELECT conname FROM pg_constraint WHERE contype = 'c' "
                "AND conrelid = 'ledger_account'::regclass"
            )
        }
        expected_checks = schema.EXPECTED_ACCOUNT_CHECKS
    for name in sorted(schema.EXPECTED_TRIGGERS[dialect] - triggers):
        report.add(Problem("schema", f"trigger {name} is missing"))
    for name in sorted(disabled & schema.EXPECTED_TRIGGERS[dialect]):
        report.add(Problem("schema", f"trigger {name} is disabled"))
    for name in sorted(expected_checks - checks):
        report.add(Problem("schema", f"CHECK constraint {name} is missing"))


def _check_entries(connection: sa.Connection, report: Report) -> None:
    report.entries = connection.exec_driver_sql("SELECT count(*) FROM ledger_entry").scalar_one()
    rows = connection.exec_driver_sql(
        """
        SELECT e.id, e.phase,
               coalesce(sum(CASE WHEN p.side = 1 THEN p.amount ELSE 0 END), 0) AS debits,
               coalesce(sum(CASE WHEN p.side = 2 THEN p.amount ELSE 0 END), 0) AS credits,
               count(p.id) AS postings,
               sum(CASE WHEN p.ledger_id <> e.ledger_id THEN 1 ELSE 0 END) AS foreign_postings
        FROM ledger_entry e LEFT JOIN ledger_posting p ON p.entry_id = e.id
        GROUP BY e.id, e.phase
        HAVING coalesce(sum(CASE WHEN p.side = 1 THEN p.amount ELSE 0 END), 0)
                 <> coalesce(sum(CASE WHEN p.side = 2 THEN p.amount ELSE 0 END), 0)
            OR (e.phase = 3 AND count(p.id) > 0)
            OR (e.phase <> 3 AND count(p.id) < 2)
            OR sum(CASE WHEN p.ledger_id <> e.ledger_id THEN 1 ELSE 0 END) > 0
        ORDER BY e.id LIMIT 100
        """
    ).fetchall()
    for entry_id, phase, debits, credits, postings, foreign in rows:
        if foreign:
            message = f"entry {entry_id} has postings of another ledger"
        elif debits != credits:
            message = f"entry {entry_id} is unbalanced: debits {debits}, credits {credits}"
        else:
            message = f"entry {entry_id} (phase {phase}) has {postings} postings"
        report.add(Problem("entry", message, entry_id=entry_id))
    bad_links = connection.exec_driver_sql(
        """
        SELECT r.id FROM ledger_entry r JOIN ledger_entry h ON h.id = r.pending_id
        WHERE h.phase <> 1 OR h.ledger_id <> r.ledger_id ORDER BY r.id LIMIT 100
        """
    ).fetchall()
    for (entry_id,) in bad_links:
        report.add(
            Problem(
                "entry", f"entry {entry_id} resolves an entry that is not a hold", entry_id=entry_id
            )
        )


def _check_totals(connection: sa.Connection, report: Report) -> None:
    report.accounts = connection.exec_driver_sql("SELECT count(*) FROM ledger_account").scalar_one()
    rows = connection.exec_driver_sql(
        """
        WITH sums AS (
            SELECT p.account_id,
                   sum(CASE WHEN p.side = 1 AND e.phase IN (0, 2) THEN p.amount ELSE 0 END) AS dp,
                   sum(CASE WHEN p.side = 2 AND e.phase IN (0, 2) THEN p.amount ELSE 0 END) AS cp,
                   sum(CASE WHEN p.side = 1 AND e.phase = 1 AND r.id IS NULL
                            THEN p.amount ELSE 0 END) AS dq,
                   sum(CASE WHEN p.side = 2 AND e.phase = 1 AND r.id IS NULL
                            THEN p.amount ELSE 0 END) AS cq
            FROM ledger_posting p
            JOIN ledger_entry e ON e.id = p.entry_id
            LEFT JOIN ledger_entry r ON r.pending_id = e.id
            GROUP BY p.account_id
        )
        SELECT a.id, a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending,
               coalesce(s.dp, 0), coalesce(s.cp, 0), coalesce(s.dq, 0), coalesce(s.cq, 0)
        FROM ledger_account a LEFT JOIN sums s ON s.account_id = a.id
        WHERE a.debits_posted <> coalesce(s.dp, 0) OR a.credits_posted <> coalesce(s.cp, 0)
           OR a.debits_pending <> coalesce(s.dq, 0) OR a.credits_pending <> coalesce(s.cq, 0)
           OR ((a.flags & 1) <> 0 AND a.debits_posted + a.debits_pending > a.credits_posted)
           OR ((a.flags & 2) <> 0 AND a.credits_posted + a.credits_pending > a.debits_posted)
        ORDER BY a.id LIMIT 100
        """
    ).fetchall()
    names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    for row in rows:
        account_id = row[0]
        stored, computed = row[1:5], row[5:9]
        differing = [
            f"{name} is {have}, postings say {want}"
            for name, have, want in zip(names, stored, computed, strict=True)
            if have != want
        ]
        message = (
            f"account {account_id}: " + "; ".join(differing)
            if differing
            else f"account {account_id} breaks its flag"
        )
        report.add(Problem("account", message, account_id=account_id))


def _check_seals(connection: sa.Connection, report: Report) -> None:
    previous = GENESIS_HASH
    expected_sequence = 1
    after = 0
    while True:
        rows = connection.exec_driver_sql(
            "SELECT sequence, entry_id, previous_hash, hash FROM ledger_seal "
            f"WHERE sequence > {after} ORDER BY sequence LIMIT {_WALK_CHUNK}"
        ).fetchall()
        if not rows:
            break
        canonical = load_canonical(connection, [row[1] for row in rows])
        for sequence, entry_id, previous_hash, stored_hash in rows:
            if sequence != expected_sequence:
                report.add(
                    Problem(
                        "seal",
                        f"seal sequence jumps from {expected_sequence - 1} to {sequence}",
                        sequence=sequence,
                        entry_id=entry_id,
                    )
                )
                return
            if bytes(previous_hash) != previous:
                report.add(
                    Problem(
                        "seal",
                        f"seal {sequence} (entry {entry_id}) does not link to the seal before it",
                        sequence=sequence,
                        entry_id=entry_id,
                    )
                )
                return
            entry_bytes = canonical.get(entry_id)
            if entry_bytes is None or chain_hash(previous, entry_bytes) != bytes(stored_hash):
                report.add(
                    Problem(
                        "seal",
                        f"entry {entry_id} does not match its seal "
                        f"{sequence}: the entry or the seal was altered",
                        sequence=sequence,
                        entry_id=entry_id,
                    )
                )
                return
            previous = bytes(stored_hash)
            expected_sequence += 1
        after = rows[-1][0]
    report.sealed = expected_sequence - 1
    head = connection.exec_driver_sql(
        "SELECT sequence, hash FROM ledger_seal_head WHERE id = 1"
    ).first()
    if head is None or head[0] != report.sealed or bytes(head[1]) != previous:
        report.add(
            Problem("seal", "the seal head does not match the last seal", sequence=report.sealed)
        )


def _check_unsealed(connection: sa.Connection, report: Report, horizon_us: int) -> None:
    report.unsealed = connection.exec_driver_sql(
        "SELECT count(*) FROM ledger_entry e WHERE NOT EXISTS "
        "(SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id)"
    ).scalar_one()
    stale = connection.exec_driver_sql(
        "SELECT e.id FROM ledger_entry e WHERE e.recorded_at_us < "
        f"{int(horizon_us)} AND NOT EXISTS "
        "(SELECT 1 FROM ledger_seal s WHERE s.entry_id = e.id) ORDER BY e.id LIMIT 1"
    ).first()
    if stale is not None:
        report.add(
            Problem(
                "unsealed",
                f"entry {stale[0]} and {report.unsealed - 1} more are not sealed "
                "(is the sealer running? `points seal` seals them)",
                entry_id=stale[0],
            )
        )
