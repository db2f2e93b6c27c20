"""Benchmarks of this project: ``python -m bench NAME``; not tests.

Each benchmark is a module of this package with a ``main(argv) -> int`` and a module docstring
that says what it measures and how. It prints a readable table, then one JSON line (starting with
``{``) with every figure. Names:

- ``ledger`` (``bench.ledger``): transfers/s through the ledger API against plain SQL writing the
  same rows, batches, sealing, balance reads, and django-hordak on the same PostgreSQL.
- ``expiry`` and ``award`` (``bench.earning``): expiring a million buckets against plain SQL
  writing the same rows; a 100,000-row CSV of awards against the ledger's batched posting rate.
"""

#: Benchmark name -> the module whose ``main(argv)`` runs it.
BENCHMARKS = {
    "ledger": "bench.ledger",
    "expiry": "bench.earning_expiry",
    "award": "bench.earning_award",
}
