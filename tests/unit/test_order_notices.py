"""agents/order_notices.py: one agent hands each notice to the services that read it."""

from __future__ import annotations

from unittest.mock import patch

import pytest

from agents import order_notices
from agents.order_notices import NoticeReadersFailed, apply_notice, reads_order_notices
from models.base import new_event_id, utcnow
from models.orders import OrderUpdate
from tables.replay import Position


def notice(status: str) -> OrderUpdate:
    return OrderUpdate(type=f"order_{status}", event_id=new_event_id(), occurred_at=utcnow(),
                       order_id="o-1", user_id="u-1", status=status, total_cents=500)


async def test_each_reader_gets_the_notices_it_asked_for_and_a_failure_names_its_reader(
) -> None:
    seen: list[tuple[str, str]] = []
    with patch.object(order_notices, "_readers", []):
        @reads_order_notices("confirmations", {"order_confirmed"})
        async def confirmations(event: OrderUpdate, position: Position) -> None:
            seen.append(("confirmations", event.type))

        @reads_order_notices("broken")
        async def broken(event: OrderUpdate, position: Position) -> None:
            raise KeyError("sku-9")

        @reads_order_notices("all")
        async def everything(event: OrderUpdate, position: Position) -> None:
            seen.append(("all", event.type))

        position = Position("orders", 7, "e-1")
        with pytest.raises(NoticeReadersFailed, match=r"^broken: KeyError: 'sku-9'$"):
            await apply_notice(notice("confirmed"), position)
        with pytest.raises(NoticeReadersFailed):
            await apply_notice(notice("cancelled"), position)
    assert seen == [("confirmations", "order_confirmed"), ("all", "order_confirmed"),
                    ("all", "order_cancelled")]


def test_a_reader_of_something_that_is_not_a_notice_is_refused() -> None:
    with pytest.raises(ValueError, match="order_placed"):
        reads_order_notices("wrong", {"order_placed"})
