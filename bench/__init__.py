"""Benchmarks of this project: ``python -m bench NAME``; not tests.

Each benchmark is a module of this package with a ``main(argv) -> int`` and a module docstring
that says what it measures and how. It prints a readable table, then one JSON line (starting with
``{``) with every figure. Names:

- ``ledger`` (``bench.ledger``): transfers/s through the ledger API against plain SQL writing the
  same rows, batches, sealing, balance reads, and django-hordak on the same PostgreSQL.
- ``expiry`` and ``award`` (``bench.earning``): expiring a million buckets against plain SQL
  writing the same rows; a 100,000-row CSV of awards against the ledger's batched posting rate.
- ``pay`` (``bench.pay``): payments at shops (payment QR, pay code) through a real
  ``points serve`` over loopback, against a bare endpoint inserting one row per request into the
  same database (``bench.bare_endpoint``); payments/s, requests/s, p50 and p99 latency.
- ``export`` (``bench.export``): exporting 1,000,000 sealed entries as CSV and as an hledger
  journal through ``points.exports.stream_export``, against plain SQL writing the same CSV rows
  (PostgreSQL's ``COPY``, SQLite's cursor and ``csv.writer``), and the exports' peak memory.
"""

#: Benchmark name -> the module whose ``main(argv)`` runs it.
BENCHMARKS = {
    "ledger": "bench.ledger",
    "expiry": "bench.earning_expiry",
    "award": "bench.earning_award",
    "pay": "bench.pay",
    "export": "bench.export",
    "city": "bench.city",
}
