"""The point domain: chart of accounts, point types, wallets as expiry buckets, spending,
expiry, registries, tokens, audit trail, idempotency, jobs, settings, engines (DESIGN §4).

The domain modules import only ``ledger``. The application shell (``points.shell``: the CLI,
table and job registration, migrations, the scheduler, demo seeding) wires every package.
"""
