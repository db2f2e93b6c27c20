"""A double-entry ledger core on SQLite and PostgreSQL.

Knows nothing of points, programs or HTTP. Accounts hold four maintained totals (debits and
credits, posted and pending); entries are immutable and balanced; flags such as
``DEBITS_MUST_NOT_EXCEED_CREDITS`` are held by the database's CHECK constraints too; a seal chain
makes tampering evident; ``verify`` recomputes everything from the postings.

Start with ``Ledger(engine)`` (engines from ``ledger.create_engine``) and ``NewEntry``;
errors are in ``ledger.errors``.
"""

from ledger import errors
from ledger.database import create_engine
from ledger.model import (
    Account,
    AccountFlags,
    Balance,
    BatchMode,
    Entry,
    EntryResult,
    HistoryLine,
    LedgerInfo,
    NewEntry,
    Page,
    Phase,
    Posting,
    Side,
)
from ledger.service import Ledger
from ledger.store import LedgerTx
from ledger.verify import Problem, Report

__all__ = [
    "Account",
    "AccountFlags",
    "Balance",
    "BatchMode",
    "Entry",
    "EntryResult",
    "HistoryLine",
    "Ledger",
    "LedgerInfo",
    "LedgerTx",
    "NewEntry",
    "Page",
    "Phase",
    "Posting",
    "Problem",
    "Report",
    "Side",
    "create_engine",
    "errors",
]
