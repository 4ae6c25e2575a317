"""Payments tables: one payment per order (written by the saga's agent, in its partition)."""

from __future__ import annotations

from app import app

__all__ = ["payments"]

#: order id -> {order_id, status (charging|succeeded|failed|refunding|refunded|refund_failed),
#:              amount_cents, payment_method, charge_id, reason, refunded_cents, refund_id,
#:              attempts, next_try_at, last_error} (the retry state: models/payments.py)
payments = app.Table("payments", key_type=str, help="The payment of each order.")
