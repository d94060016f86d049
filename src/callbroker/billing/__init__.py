"""Billing: the money ledger. Every charge to a buyer and every payout to a publisher, per call, append-only.

See docs/billing.md for the rules (what is posted when, idempotency, reversals) and the CLI.
"""
