"""Planning a write: every decision of the ledger's write path, without a database.

``plan_write`` is given what the storage layer (``ledger.store`` with ``ledger.recording``)
read under its locks: the validated entries of a batch, the entries already recorded under their
idempotency keys, the locked account rows, the holds they resolve and the entries they reverse.
It decides, and returns as a ``WritePlan``:

- deduplication: an entry whose idempotency key and content were recorded before is a *replay*
  (nothing written, the original returned); the same key with other content is an
  ``IdempotencyConflict``; a repeat inside the batch is answered as its first occurrence;
- each entry's ledger and per-account deltas (postings, and the release of a resolved hold);
- the rules: accounts exist and are open, one ledger per entry, hold state and amounts, one
  reversal per entry, flags and 64-bit totals (``ledger.model.Totals.apply``). *Atomic* batches
  are checked on the state after the whole batch (the deltas summed per account), and any failure
  raises (``BatchRejected`` with the index to blame, or the error itself for a single entry).
  *Independent* batches are checked entry by entry, in order, and a refused entry is left out and
  reported while the others are kept.

Nothing here reads or writes; the inputs are not changed. A hold resolved, or an entry reversed,
by an entry earlier in the same batch has no id yet: the plan marks it with
``EARLIER_IN_BATCH`` rather than an id.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ledger.errors import (
    AccountClosed,
    AccountNotFound,
    AlreadyReversed,
    BatchRejected,
    EntryNotFound,
    FlagViolation,
    HoldAlreadyResolved,
    HoldAmountExceeded,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    LedgerError,
    MixedLedgers,
)
from ledger.model import (
    BatchMode,
    Delta,
    Entry,
    EntryResult,
    Phase,
    Posting,
    Side,
    Totals,
    ValidEntry,
    from_us,
    posting_delta,
)


class InBatch(enum.Enum):
    """Who resolved a hold or reversed an entry, when it is an entry of the batch being planned:
    it has no id yet."""

    EARLIER_IN_BATCH = "an earlier entry of this batch"


EARLIER_IN_BATCH = InBatch.EARLIER_IN_BATCH

#: The entry that resolved a hold or reversed an entry: its id, one earlier in this batch, or
#: none yet.
Successor = int | InBatch | None

IdempotencyKey = tuple[str, str]


class AccountRow(NamedTuple):
    """An account as the write path reads it, locked."""

    id: int
    ledger_id: int
    code: int
    normal_side: int
    owner_ref: str | None
    flags: int
    closed: bool
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    created_at_us: int


@dataclass(slots=True)
class Hold:
    """A pending entry as a resolution sees it."""

    id: int
    ledger_id: int
    phase: Phase
    timeout_at_us: int | None
    postings: list[Posting]
    #: The id of the entry that resolved it, read after the account locks.
    resolved_by: int | None = None


@dataclass(slots=True)
class PlannedEntry:
    """One entry of a batch, with what the plan decided for it."""

    index: int
    valid: ValidEntry
    deltas: dict[int, Delta] = field(default_factory=dict)
    ledger_id: int = 0
    #: The id of an entry recorded earlier under the same idempotency key and content.
    replay_of: int | None = None
    #: An earlier entry of this batch with the same idempotency key and content.
    same_as: PlannedEntry | None = None

    def recorded(self, entry_id: int, recorded_at_us: int) -> Entry:
        """The entry as written, once the storage layer has given it ``entry_id``."""
        item = self.valid
        recorded_at = from_us(recorded_at_us)
        return Entry(
            id=entry_id,
            ledger_id=self.ledger_id,
            phase=item.phase,
            kind=item.kind,
            description=item.description,
            metadata=item.metadata,
            effective_at=(
                from_us(item.effective_at_us) if item.effective_at_us is not None else recorded_at
            ),
            recorded_at=recorded_at,
            namespace=item.namespace,
            idempotency_key=item.idempotency_key,
            timeout_at=from_us(item.timeout_at_us) if item.timeout_at_us is not None else None,
            pending_id=item.pending_id,
            reverses_id=item.reverses_id,
            postings=item.postings,
        )


@dataclass(slots=True)
class WritePlan:
    """What ``plan_write`` decided for a batch."""

    #: Every entry of the batch, in order.
    entries: list[PlannedEntry]
    #: The entries to write, in order: neither refused, nor replays, nor repeats.
    accepted: list[PlannedEntry]
    #: Refused entries (independent batches only): index -> the error.
    refused: dict[int, LedgerError]

    def account_deltas(self) -> list[tuple[int, Delta]]:
        """The accepted entries' deltas summed per account, in account id order, zeros left out:
        what the totals change by."""
        return [item for item in summed_deltas(self.accepted).items() if not item[1].is_zero()]

    def replayed_ids(self) -> list[int]:
        """The ids of earlier entries this batch replays (to be read and returned)."""
        return [plan.replay_of for plan in self.entries if plan.replay_of is not None]

    def results(
        self, written: Mapping[int, Entry], replayed: Mapping[int, Entry]
    ) -> list[EntryResult]:
        """One result per entry of the batch, given the accepted entries as written (by batch
        index) and the replayed entries (by id)."""
        results: dict[int, EntryResult] = {
            index: EntryResult(index, None, error) for index, error in self.refused.items()
        }
        for plan in self.entries:
            if plan.index in results:
                continue
            if plan.same_as is not None:
                first = results[plan.same_as.index]
                results[plan.index] = EntryResult(
                    plan.index, first.entry, first.error, replayed=first.error is None
                )
            elif plan.replay_of is not None:
                results[plan.index] = EntryResult(
                    plan.index, replayed[plan.replay_of], None, replayed=True
                )
            else:
                results[plan.index] = EntryResult(plan.index, written[plan.index], None)
        return [results[plan.index] for plan in self.entries]


def idempotency_keys(valid: Sequence[ValidEntry]) -> set[IdempotencyKey]:
    """The idempotency keys of a batch, for looking up what was recorded under them."""
    return {
        (item.namespace, item.idempotency_key)
        for item in valid
        if item.namespace is not None and item.idempotency_key is not None
    }


def plan_write(
    valid: Sequence[ValidEntry],
    mode: BatchMode,
    *,
    single: bool,
    now_us: int,
    accounts: Mapping[int, AccountRow],
    holds: Mapping[int, Hold],
    reversed_by: Mapping[int, int | None],
    existing: Mapping[IdempotencyKey, tuple[int, bytes]],
) -> WritePlan:
    """Decide a batch; see the module docstring.

    ``accounts``: the locked rows of every account the entries and their holds touch.
    ``holds``: the holds the entries resolve, by id (an id missing: no such entry).
    ``reversed_by``: for each entry the batch reverses that exists, the id of its reversal or
    ``None``. ``existing``: (namespace, key) -> (entry id, content digest) recorded already.
    ``single``: one entry posted alone; an atomic failure raises the error itself rather than
    ``BatchRejected``.
    """
    atomic = mode is BatchMode.ATOMIC
    plans = [PlannedEntry(index, item) for index, item in enumerate(valid)]
    refused: dict[int, LedgerError] = {}

    def fail(plan: PlannedEntry, error: LedgerError) -> None:
        if atomic:
            raise error if single else BatchRejected(plan.index, error)
        refused[plan.index] = error

    # The plan's own view of resolutions and reversals, so that later entries of this batch see
    # the earlier ones' (the inputs stay as read).
    resolved_by: dict[int, Successor] = {
        hold_id: hold.resolved_by for hold_id, hold in holds.items()
    }
    reversals: dict[int, Successor] = dict(reversed_by)
    working = {
        account_id: Totals(
            account_id,
            row.flags,
            row.debits_posted,
            row.credits_posted,
            row.debits_pending,
            row.credits_pending,
        )
        for account_id, row in accounts.items()
    }
    seen_keys: dict[IdempotencyKey, PlannedEntry] = {}
    accepted: list[PlannedEntry] = []
    for plan in plans:
        item = plan.valid
        if item.namespace is not None:
            assert item.idempotency_key is not None
            key = (item.namespace, item.idempotency_key)
            earlier = seen_keys.get(key)
            if earlier is not None:
                if earlier.valid.content_digest != item.content_digest:
                    fail(plan, IdempotencyConflict(key[0], key[1], earlier.replay_of))
                else:
                    plan.same_as = earlier
                continue
            seen_keys[key] = plan
            if key in existing:
                entry_id, digest = existing[key]
                if digest != item.content_digest:
                    fail(plan, IdempotencyConflict(key[0], key[1], entry_id))
                else:
                    plan.replay_of = entry_id
                continue
        try:
            plan_deltas(plan, accounts, holds, resolved_by, reversals, now_us)
            if not atomic:
                trial = {account_id: working[account_id].copy() for account_id in plan.deltas}
                for account_id, delta in plan.deltas.items():
                    trial[account_id].apply(delta)
                working.update(trial)
        except LedgerError as error:
            fail(plan, error)
            continue
        if item.pending_id is not None:
            resolved_by[item.pending_id] = EARLIER_IN_BATCH
        if item.reverses_id is not None:
            reversals[item.reverses_id] = EARLIER_IN_BATCH
        accepted.append(plan)
    if atomic:
        apply_atomic(accepted, working, single=single)
    return WritePlan(plans, accepted, refused)


def plan_deltas(
    plan: PlannedEntry,
    accounts: Mapping[int, AccountRow],
    holds: Mapping[int, Hold],
    resolved_by: Mapping[int, Successor],
    reversed_by: Mapping[int, Successor],
    now_us: int,
) -> None:
    """Fill in ``plan.deltas`` and ``plan.ledger_id``, or raise why the entry is refused.

    The flags are not checked here (that is ``Totals.apply``, on a batch's or an entry's state);
    everything else about the entry is."""
    item = plan.valid
    ledger_ids: set[int] = set()
    pending = item.phase is Phase.PENDING
    deltas = plan.deltas
    for posting in item.postings:
        row = accounts.get(posting.account_id)
        if row is None:
            raise AccountNotFound(posting.account_id)
        if row.closed:
            raise AccountClosed(posting.account_id)
        ledger_ids.add(row.ledger_id)
        delta = deltas.get(posting.account_id)
        if delta is None:
            delta = deltas[posting.account_id] = Delta()
        if pending:
            if posting.side is Side.DEBIT:
                delta.debits_pending += posting.amount
            else:
                delta.credits_pending += posting.amount
        elif posting.side is Side.DEBIT:
            delta.debits_posted += posting.amount
        else:
            delta.credits_posted += posting.amount
    if item.pending_id is not None:
        hold = holds.get(item.pending_id)
        if hold is None:
            raise EntryNotFound(f"entry {item.pending_id} does not exist", entry_id=item.pending_id)
        if hold.phase is not Phase.PENDING:
            raise HoldNotPending(f"entry {hold.id} is not a pending entry", entry_id=hold.id)
        resolver = resolved_by.get(hold.id)
        if resolver is not None:
            raise HoldAlreadyResolved(
                f"hold {hold.id} was resolved already",
                entry_id=hold.id,
                resolved_by=resolver if isinstance(resolver, int) else None,
            )
        if item.phase is Phase.POST_PENDING:
            if hold.timeout_at_us is not None and now_us >= hold.timeout_at_us:
                raise HoldExpired(
                    f"hold {hold.id} timed out at {from_us(hold.timeout_at_us).isoformat()}",
                    entry_id=hold.id,
                )
            check_within_hold(hold, item.postings)
        ledger_ids.add(hold.ledger_id)
        for posting in hold.postings:
            release = posting_delta(posting.side, -posting.amount, pending=True)
            deltas.setdefault(posting.account_id, Delta()).add(release)
    if item.reverses_id is not None:
        if item.reverses_id not in reversed_by:
            raise EntryNotFound(
                f"entry {item.reverses_id} does not exist", entry_id=item.reverses_id
            )
        if reversed_by[item.reverses_id] is not None:
            raise AlreadyReversed(
                f"entry {item.reverses_id} was reversed already", entry_id=item.reverses_id
            )
    if len(ledger_ids) > 1:
        raise MixedLedgers(sorted(ledger_ids))
    assert ledger_ids, "an entry touches at least one account"
    plan.ledger_id = ledger_ids.pop()
    plan.deltas = {k: v for k, v in deltas.items() if not v.is_zero()}


def summed_deltas(plans: Sequence[PlannedEntry]) -> dict[int, Delta]:
    """The entries' deltas summed per account, in account id order."""
    summed: dict[int, Delta] = {}
    for plan in plans:
        for account_id, delta in plan.deltas.items():
            summed.setdefault(account_id, Delta()).add(delta)
    return dict(sorted(summed.items()))


def apply_atomic(
    plans: Sequence[PlannedEntry], working: Mapping[int, Totals], *, single: bool
) -> None:
    """Apply an atomic batch's summed deltas once per account: the flags hold on the final
    state, whatever the order of the entries."""
    for account_id, delta in summed_deltas(plans).items():
        try:
            working[account_id].apply(delta)
        except LedgerError as error:
            if single:
                raise
            raise BatchRejected(blame(plans, account_id, error), error) from error


def check_within_hold(hold: Hold, postings: Sequence[Posting]) -> None:
    """A hold is posted for at most what it holds, per account and side."""
    held: dict[tuple[int, Side], int] = {}
    for posting in hold.postings:
        key = (posting.account_id, posting.side)
        held[key] = held.get(key, 0) + posting.amount
    asked: dict[tuple[int, Side], int] = {}
    for posting in postings:
        key = (posting.account_id, posting.side)
        asked[key] = asked.get(key, 0) + posting.amount
    for key, amount in asked.items():
        if amount > held.get(key, 0):
            raise HoldAmountExceeded(
                f"hold {hold.id} holds {held.get(key, 0)} on account {key[0]}; {amount} asked",
                entry_id=hold.id,
                account_id=key[0],
                held=held.get(key, 0),
                requested=amount,
            )


def blame(plans: Sequence[PlannedEntry], account_id: int, error: LedgerError) -> int:
    """The index of the last entry that pushed ``account_id`` the way its flag forbids."""
    debit_side = not isinstance(error, FlagViolation) or error.code == "insufficient_funds"
    for plan in reversed(plans):
        delta = plan.deltas.get(account_id)
        if delta is None:
            continue
        pushes = (
            delta.debits_posted > 0 or delta.debits_pending > 0
            if debit_side
            else delta.credits_posted > 0 or delta.credits_pending > 0
        )
        if pushes:
            return plan.index
    return plans[-1].index
