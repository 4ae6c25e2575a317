"""Payments tables: one payment per order (written only by the payments agent)."""

from __future__ import annotations

from app import app

__all__ = ["payments"]

#: order id -> {order_id, status (succeeded|failed), amount_cents, charge_id, reason,
#:              refunded_cents, refund_id}
payments = app.Table("payments", key_type=str, help="The payment of each order.")
