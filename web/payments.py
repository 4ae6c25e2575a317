"""``GET /api/admin/payments/{order_id}/provider``: what the payment provider did for an order.

The provider's own view, as its dashboard would show it: every charge and refund made for
the order, with its idempotency key, amount, outcome, id and the attempts the provider saw,
beside the order's payment row (its status and retry state, ``models/payments.py``). Admins
only.

The request is answered by the worker that owns the order's partition (the worker whose saga
agent calls the provider for it; the payment row is kept in the order's row), like the other
keyed views. The simulated provider's ledger is the memory of that worker's process: it holds
the calls that process made, and starts empty when the process starts or the partition moves
to another worker. A real provider answers from its own records.
"""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.payments import provider
from tables.orders import orders
from tables.payments import payment_of
from web.errors import NotFound
from web.identity import require
from web.openapi import endpoint
from web.routing import route_to_owner
from web.views import ShopView

__all__ = ["ProviderLedgerOut", "provider_ledger"]


class ProviderChargeOut(BaseModel):
    """A charge as the provider keeps it."""

    order_id: str
    idempotency_key: str
    amount_cents: int
    payment_method: str
    status: str = Field(description="processing (no answer yet), succeeded or failed")
    id: str = Field(description="the charge id (empty unless it succeeded)")
    reason: str = Field(description="why it failed (card_declined, ...)")
    attempts: int = Field(description="calls the provider saw with this idempotency key")


class ProviderRefundOut(BaseModel):
    """A refund as the provider keeps it."""

    order_id: str
    idempotency_key: str
    amount_cents: int
    charge_id: str
    status: str = Field(description="processing (no answer yet), succeeded or failed")
    id: str = Field(description="the refund id (empty unless it succeeded)")
    reason: str
    attempts: int = Field(description="calls the provider saw with this idempotency key")


class ProviderLedgerOut(BaseModel):
    """The provider's charges and refunds of an order, and the order's payment row."""

    order_id: str
    charges: list[ProviderChargeOut]
    refunds: list[ProviderRefundOut]
    payment: dict[str, Any] | None = Field(
        description="the order's payment row: status, attempts, next_try_at, last_error, ...")


def provider_ledger(order_id: str) -> dict[str, Any] | None:
    """Return the provider's ledger of ``order_id`` and its payment row (None if neither)."""
    ledger = provider.ledger(order_id)
    row = payment_of(orders.get(order_id))
    if row is None and not ledger["charges"] and not ledger["refunds"]:
        return None
    payment = {k: v for k, v in row.items() if not k.startswith("_")} if row else None
    return {**ledger, "payment": payment}


@endpoint("GET", "/api/admin/payments/{order_id}/provider", roles=("admin",),
          response=ProviderLedgerOut, errors=(503,))
class ProviderLedgerView(ShopView):
    """The provider's charges and refunds of an order, with its payment row (admin)."""

    @route_to_owner(orders, match_info="order_id")
    async def get(self, request: Request, order_id: str) -> Response:
        require(request, "admin")
        found = provider_ledger(order_id)
        if found is None:
            raise NotFound(f"the provider has nothing for order {order_id!r}")
        return self.json(found)
