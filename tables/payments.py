"""Payments: each order's payment row is kept in the order's own row (tables/orders.py).

The saga's agent moves an order and its payment in one step in the order's partition
(agents/orders.py), so one row holds both and each step writes it once: one store write and
one changelog record where a separate payments table took two.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["PAYMENT", "payment_of"]

#: The order row's field that holds its payment row: {order_id, status (charging|succeeded|
#: failed|refunding|refunded|refund_failed), amount_cents, payment_method, charge_id, reason,
#: refunded_cents, refund_id, attempts, next_try_at, last_error} (models/payments.py). Absent
#: until the order asks for its charge.
PAYMENT = "payment"


def payment_of(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Return the payment row kept in an order's ``row`` (None: none asked for yet)."""
    return row.get(PAYMENT) if row else None

