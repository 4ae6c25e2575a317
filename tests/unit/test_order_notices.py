"""agents/order_notices.py: one agent hands each partition's notices to their readers."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast
from unittest.mock import patch

import pytest

from agents import order_notices
from agents.batches import Decoded
from agents.order_notices import Failures, apply_notices, each_notice, reads_order_notices
from models.base import new_event_id, utcnow
from models.orders import OrderUpdate
from tables.replay import Position


class FakeEvent:
    """What the agent reads of a Faust event: its message's partition (weakly referenced)."""

    def __init__(self, partition: int, offset: int) -> None:
        self.message = SimpleNamespace(partition=partition, offset=offset, topic="orders",
                                       headers=[])


def notice(status: str, partition: int, offset: int) -> Decoded[OrderUpdate]:
    record = OrderUpdate(type=f"order_{status}", event_id=new_event_id(), occurred_at=utcnow(),
                         order_id=f"o-{offset}", user_id="u-1", status=status, total_cents=5)
    return Decoded(record, Position("orders", offset, record.event_id),
                   cast(Any, FakeEvent(partition, offset)))


async def test_each_reader_gets_its_notices_a_partition_at_a_time_and_failures_are_named(
) -> None:
    seen: list[tuple[str, list[int]]] = []
    with patch.object(order_notices, "_readers", []):
        @reads_order_notices("confirmations", {"order_confirmed"})
        async def confirmations(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
            seen.append(("confirmations", [n.position.offset for n in notices]))
            return []

        @reads_order_notices("picky")
        async def picky(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
            async def read(event: OrderUpdate, position: Position) -> None:
                if position.offset == 2:
                    raise KeyError("sku-9")
            return await each_notice(notices, read)

        @reads_order_notices("broken", {"order_cancelled"})
        async def broken(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
            raise RuntimeError("down")

        batch = [notice("confirmed", 0, 1), notice("confirmed", 1, 2),
                 notice("cancelled", 0, 3), notice("confirmed", 0, 4)]
        failures = await apply_notices(batch)

    assert seen == [("confirmations", [1, 4]), ("confirmations", [2])]
    by_offset = {event.message.offset: reasons for event, reasons in failures.items()}
    assert by_offset == {2: ["picky: KeyError: 'sku-9'"], 3: ["broken: RuntimeError: down"]}


def test_a_reader_of_something_that_is_not_a_notice_is_refused() -> None:
    with pytest.raises(ValueError, match="order_placed"):
        reads_order_notices("wrong", {"order_placed"})
