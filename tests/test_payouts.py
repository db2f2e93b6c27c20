"""Paying merchants (``redemption.payouts``), on both databases: bank details checked for the
Zengin set and masked, a run's transfer file (its layout and totals read back by
``redemption.zengin.parse_transfer_file``), merchants without bank details listed and paid in a
later file, the city counter never transferred, the payout date, and a rejected transfer (振込不能)
carried into the next file."""

from __future__ import annotations

import json
from datetime import date

import pytest
from api_world import World
from conftest import FakeClock
from payment_helpers import funded_resident, open_shop
from sqlmodel import select
from test_settlement import pay_shop, settle, tokyo

from points import access, people
from points.audit import AuditEvent
from points.errors import Conflict
from points.registry import MerchantKind
from points.settings import DEMO_REMITTER
from redemption import payouts, settlement, zengin
from redemption.errors import BankDetailsInvalid, RemitterNotConfigured
from redemption.settlement_models import Transfer, TransferStatus

REMITTER = zengin.Remitter(**DEMO_REMITTER)


def details(holder: str = "カ）コマエショウテン", number: str = "1234567") -> payouts.BankDetails:
    return payouts.BankDetails("0005", "123", "1", number, holder)


def set_bank(world: World, merchant_id: str, bank: payouts.BankDetails) -> None:
    now = world.now()
    world.write(
        lambda s: payouts.set_bank_account(
            s, access.SYSTEM, now, merchant_id, bank, reason="口座届出書"
        )
    )


def make_file(world: World, run_id: str, day: date = date(2026, 5, 25)) -> payouts.TransferFile:
    now = world.now()
    return world.write(
        lambda s: payouts.transfer_file(
            s, access.SYSTEM, now, run_id, remitter=REMITTER, transfer_date=day
        )
    )


@pytest.mark.parametrize(
    ("holder", "stored"),
    [
        ("カ）コマエショウテン", "ｶ)ｺﾏｴｼﾖｳﾃﾝ"),
        ("ｺﾏｴ ｼｮｳﾃﾝ", "ｺﾏｴ ｼﾖｳﾃﾝ"),
        ("やまだ　はなこ", "ﾔﾏﾀﾞ ﾊﾅｺ"),
        ("ＹＡＭＡＤＡ", "YAMADA"),
    ],
)
def test_bank_details_are_stored_in_the_zengin_set_and_shown_masked(
    world: World, holder: str, stored: str
) -> None:
    merchant = world.fresh_merchant()
    set_bank(world, merchant, details(holder, number="4567"))
    view = world.read(lambda s: payouts.get_bank_account(s, merchant))
    assert view is not None
    assert view.account_number == "****567"
    assert view.holder_kana == stored[0] + "*" * (len(stored) - 1)
    from redemption.settlement_models import MerchantBankAccount

    row = world.read(lambda s: s.get(MerchantBankAccount, merchant))
    assert row is not None and (row.holder_kana, row.account_number) == (stored, "0004567")
    # The audit trail keeps the masked values only.
    events = world.read(
        lambda s: s.exec(
            select(AuditEvent).where(AuditEvent.action == "merchant.bank_account")
        ).all()
    )
    text = json.dumps([e.details for e in events], ensure_ascii=False)
    assert "0004567" not in text and stored not in text


@pytest.mark.parametrize(
    ("bank", "field", "position"),
    [
        (payouts.BankDetails("0005", "123", "1", "1234567", "株式会社コマエ"), "holder_name", 0),
        (payouts.BankDetails("0005", "123", "1", "1234567", "コマエ@ショップ"), "holder_name", 3),
        (payouts.BankDetails("0005", "123", "1", "1234567", "ア" * 31), "holder_name", 30),
        (payouts.BankDetails("0005", "123", "1", "1234567", "   "), "holder_name", None),
        (payouts.BankDetails("005", "123", "1", "1234567", "ｱ"), "bank_code", None),
        (payouts.BankDetails("０００５", "123", "1", "1234567", "ｱ"), "bank_code", None),
        (payouts.BankDetails("0005", "12a", "1", "1234567", "ｱ"), "branch_code", None),
        (payouts.BankDetails("0005", "123", "3", "1234567", "ｱ"), "account_type", None),
        (payouts.BankDetails("0005", "123", "1", "12345678", "ｱ"), "account_number", None),
    ],
)
def test_bank_details_the_file_cannot_carry_are_refused(
    world: World, bank: payouts.BankDetails, field: str, position: int | None
) -> None:
    merchant = world.fresh_merchant()
    with pytest.raises(BankDetailsInvalid) as refused:
        set_bank(world, merchant, bank)
    assert refused.value.context["field"] == field
    if position is not None:
        assert refused.value.context["position"] == position
    assert world.read(lambda s: payouts.get_bank_account(s, merchant)) is None


def test_a_runs_file_pays_merchants_with_bank_details_and_lists_the_others(
    world: World, clock: FakeClock
) -> None:
    clock.now = tokyo(2026, 4, 10)
    a, b, c = open_shop(world), open_shop(world), open_shop(world)
    counter_id = world.write(
        lambda s: (
            people.create_merchant(
                s,
                access.SYSTEM,
                world.now(),
                name_ja="市役所 交換窓口",
                name_en="Counter",
                category="city",
                kind=MerchantKind.COUNTER,
            ).id
        )
    )
    counter = open_shop(world, counter_id, till_name="窓口1")
    resident = funded_resident(world, 5000)
    for shop, amount in ((a, 300), (b, 200), (c, 150), (counter, 500)):
        pay_shop(world, shop, resident, amount)
    set_bank(world, a.merchant_id, details("ｺﾏｴｼﾖｳﾃﾝ"))
    set_bank(world, b.merchant_id, details("ｲｽﾞﾐﾔ", number="7654321"))
    clock.now = tokyo(2026, 5, 1, 1)
    april = settle(world, "2026-04")
    kinds = {s.merchant_id: s.transfer for s in april.statements}
    assert kinds[counter.merchant_id] == Transfer.NONE

    made = make_file(world, april.run.id)
    header, records, trailer = zengin.parse_transfer_file(made.content)
    assert header["transfer_date"] == "0525"
    assert [int(r["amount"]) for r in records] == [t.amount for t in made.transfers]
    assert sorted(int(r["amount"]) for r in records) == [200, 300]
    assert int(trailer["total_count"]) == 2 and int(trailer["total_amount"]) == 500
    assert all(len(line) == 120 for line in made.content.split(b"\r\n")[:-1])
    assert made.content.endswith(b"\r\n")
    assert [m.merchant_id for m in made.without_bank_details] == [c.merchant_id]
    assert made.without_bank_details[0].yen == 150
    # Downloading again writes the same bytes, even after the details change.
    set_bank(world, a.merchant_id, details("ｺﾏｴｼﾖｳﾃﾝ", number="1111111"))
    assert make_file(world, april.run.id).content == made.content

    # Paid: the statements show the payout date; the counter's has none (no transfer).
    now = world.now()
    world.write(
        lambda s: payouts.mark_paid(
            s, access.SYSTEM, now, april.run.id, payout_date=date(2026, 5, 25)
        )
    )
    paid_on = world.read(
        lambda s: {
            st.merchant_id: settlement.payout_date_of(s, st)
            for st in settlement.statements_of_run(s, april.run.id)
        }
    )
    assert paid_on[a.merchant_id] == date(2026, 5, 25)
    assert paid_on[c.merchant_id] is None and paid_on[counter.merchant_id] is None
    with pytest.raises(Conflict):
        world.write(
            lambda s: payouts.mark_paid(
                s, access.SYSTEM, now, april.run.id, payout_date=date(2026, 5, 26)
            )
        )

    # B's transfer bounced (振込不能); C gave its details. May's file carries both, with A's
    # May payment.
    rejected = next(t for t in made.transfers if t.merchant_id == b.merchant_id)
    world.write(
        lambda s: payouts.mark_rejected(
            s, access.SYSTEM, now, rejected.id or 0, reason="口座解約済み"
        )
    )
    set_bank(world, b.merchant_id, details("ｲｽﾞﾐﾔ", number="2222222"))
    set_bank(world, c.merchant_id, details("ｻｸﾗﾄﾞｳ"))
    clock.now = tokyo(2026, 5, 10)
    pay_shop(world, a, resident, 70)
    clock.now = tokyo(2026, 6, 1, 1)
    may = settle(world, "2026-05")
    may_file = make_file(world, may.run.id, date(2026, 6, 25))
    amounts = {t.merchant_id: t.amount for t in may_file.transfers}
    assert amounts == {a.merchant_id: 70, b.merchant_id: 200, c.merchant_id: 150}
    assert {t.account_number for t in may_file.transfers if t.merchant_id == b.merchant_id} == {
        "2222222"
    }
    _, records, trailer = zengin.parse_transfer_file(may_file.content)
    assert int(trailer["total_amount"]) == 420 and len(records) == 3
    assert may_file.without_bank_details == []
    # Every bank statement with yen to pay is in exactly one live transfer.
    statuses = world.read(
        lambda s: [
            (st.merchant_id, st.yen_to_pay, st.transfer_id)
            for st in settlement.list_statements(s)
            if st.transfer == Transfer.BANK
        ]
    )
    assert all(transfer_id is not None for _, _, transfer_id in statuses)
    transfers = world.read(
        lambda s: {t.id: t.status for t in payouts.transfers_of(s, april.run.id)}
    )
    assert sorted(transfers.values()) == [TransferStatus.PAID, TransferStatus.REJECTED]


def test_a_file_with_nothing_to_pay_is_refused(world: World, clock: FakeClock) -> None:
    clock.now = tokyo(2026, 5, 1, 1)
    run = settle(world, "2026-04")
    with pytest.raises(Conflict):
        make_file(world, run.run.id)


def test_the_remitter_must_be_set_in_production() -> None:
    from points.settings import Settings

    settings = Settings(
        environment="production",
        secret_key="x" * 40,
        public_url="https://pay.example.jp",
    )
    assert settings.zengin_remitter is None
    with pytest.raises(RemitterNotConfigured):
        payouts.remitter_of(settings.zengin_remitter)
    configured = Settings(
        environment="production",
        secret_key="x" * 40,
        public_url="https://pay.example.jp",
        zengin_remitter_code="0123456789",
        zengin_remitter_name="ｺﾏｴｼ",
        zengin_bank_code="0005",
        zengin_branch_code="001",
        zengin_account_number="7654321",
    )
    assert payouts.remitter_of(configured.zengin_remitter).code == "0123456789"
