"""Merchants, signed QR codes, payments and two-phase redemptions, catalog, settlement.

Built in a later issue (DESIGN §6); depends on ``points`` and ``ledger`` only.
"""
