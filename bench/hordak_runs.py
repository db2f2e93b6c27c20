"""django-hordak 2.0 on the same PostgreSQL, recording transfers in its normal way.

Its own fresh database, migrated with Django's ``migrate`` (``bench.hordak_settings``). Each
client thread has the connection Django gives each thread (closed when the thread ends) and its
own group of asset accounts, like the ledger's per-thread wallets, and records each transfer with
``Account.transfer_to(other, Money(x, "EUR"))``: hordak's one-call way, a ``transaction.atomic()``
block that inserts a Transaction and its two Legs (hordak's PostgreSQL trigger checks that the
legs balance). Hordak keeps no running totals (a balance is a sum over the legs), so it writes
three rows where the ledger writes six. Hordak does not run on SQLite.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import version

from bench.timing import Operation, Worker
from bench.workload import Transfer

SETTINGS_MODULE = "bench.hordak_settings"


def versions() -> dict[str, str]:
    return {"django": version("django"), "django-hordak": version("django-hordak")}


def setup(url: str) -> None:
    """Point Django at ``url`` (once per process) and migrate it."""
    import django  # noqa: PLC0415 - Django is configured here, at run time
    from django.core.management import call_command  # noqa: PLC0415

    os.environ["BENCH_HORDAK_DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS_MODULE
    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def create_accounts(groups: int, per_group: int) -> list[list[int]]:
    """``groups`` groups of ``per_group`` root asset accounts; their primary keys."""
    from django.db import connection  # noqa: PLC0415
    from hordak.models import Account, AccountType  # noqa: PLC0415

    made = [
        [
            Account.objects.create(
                name=f"wallet {group}.{number}", code=f"{group}{number:03d}", type=AccountType.asset
            ).pk
            for number in range(per_group)
        ]
        for group in range(groups)
    ]
    connection.close()
    return made


def single_worker(groups: Sequence[list[int]], workloads: Sequence[list[Transfer]]) -> Worker:
    """Thread ``i`` records the transfers of ``workloads[i]`` (hordak account keys)."""

    @contextmanager
    def worker(index: int) -> Iterator[Operation]:
        from django.db import connection  # noqa: PLC0415
        from djmoney.money import Money  # noqa: PLC0415
        from hordak.models import Account  # noqa: PLC0415

        accounts = {account.pk: account for account in Account.objects.filter(pk__in=groups[index])}
        transfers = itertools.cycle(workloads[index])

        def operation() -> int:
            payer, payee, amount = next(transfers)
            accounts[payer].transfer_to(accounts[payee], Money(amount, "EUR"))
            return 1

        try:
            yield operation
        finally:
            connection.close()

    return worker
