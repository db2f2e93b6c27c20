"""A first look: one entry posted, sealed and verified."""

from ledger import AccountFlags, Ledger, NewEntry, Posting, Side


def test_post_and_verify(ledger_: Ledger) -> None:
    info = ledger_.create_ledger("pt", "points")
    source = ledger_.create_account(ledger_id=info.id, code=1, normal_side=Side.DEBIT)
    wallet = ledger_.create_account(
        ledger_id=info.id,
        code=2,
        normal_side=Side.CREDIT,
        flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    )
    ledger_.post(
        NewEntry([Posting(source.id, Side.DEBIT, 10), Posting(wallet.id, Side.CREDIT, 10)])
    )
    assert ledger_.balance(wallet.id).available == 10
    assert ledger_.seal() == 1
    assert ledger_.verify().ok
