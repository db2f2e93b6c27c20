"""The point domain and the application: chart of accounts, settings, database wiring, CLI.

Later issues add point types, wallets as expiry buckets and the expiry jobs (DESIGN §4).
"""
