"""Program modules: programs, budgets, earning rules, caps, event QR claims, bulk issue.

Built in a later issue (DESIGN §5); depends on ``points`` and ``ledger`` only.
"""
