"""web/payments.py: the admin's view of what the provider did for an order.

Named test_web_* on purpose (see test_web_openapi.py): importing a view module must come after
test_shop_table.py's checks. The route itself needs a worker that owns the key; the
integration test test_payment_faults.py calls it.
"""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from models.provider import SimulatedProvider


async def test_the_ledger_of_an_order_comes_with_its_payment_row() -> None:
    import web.payments as view

    provider = SimulatedProvider(slow_seconds=0)
    charge = await provider.charge("o-1", 2500, "pm_card_ok", order_id="o-1")
    rows: dict[str, dict[str, Any]] = {"o-1": {
        "id": "o-1", "status": "confirmed", "_applied": {"offsets": {"payments": 3}},
        "payment": {"order_id": "o-1", "status": "succeeded", "charge_id": charge.charge_id,
                    "attempts": 0}}}
    with patch.object(view, "provider", provider), patch.object(view, "orders", rows):
        found = view.provider_ledger("o-1")
        nothing = view.provider_ledger("o-2")
    assert found is not None and nothing is None
    assert [c["id"] for c in found["charges"]] == [charge.charge_id] and found["refunds"] == []
    assert found["payment"] == {"order_id": "o-1", "status": "succeeded",
                                "charge_id": charge.charge_id, "attempts": 0}
    view.ProviderLedgerOut.model_validate(found)


async def test_a_ledger_without_a_row_is_still_shown() -> None:
    import web.payments as view

    provider = SimulatedProvider()
    await provider.charge("o-3", 100, "pm_card_declined", order_id="o-3")
    with patch.object(view, "provider", provider), patch.object(view, "orders", {}):
        found = view.provider_ledger("o-3")
    assert found is not None and found["payment"] is None
    assert view.ProviderLedgerOut.model_validate(found).charges[0].reason == "card_declined"
