"""Events older workers wrote to the orders topic and nobody sends any more: every reader of
the topic passes them over, and none is dead-lettered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest

from agents.dead_letters import event_type_of, for_each_event
from agents.order_notices import NOT_NOTICES
from agents.orders import NOT_FOR_THE_SAGA
from models.base import utcnow
from models.orders import ORDER_EVENTS, RETIRED_ORDER_TYPES, CancelRequested
from models.payments import PAYMENT_EVENTS
from tables.replay import Position

#: An expiry sweep as the task scheduler's ``expire-orders`` task wrote it, one a partition.
OLD_SWEEP = (b'{"type":"expiry_sweep","event_id":"71d8f99ce4264e979811cdc1ecc4a59c",'
             b'"occurred_at":"2026-12-06T20:58:02.056152Z","correlation_id":"sweep-3",'
             b'"schema_version":1,"partition":3}')


class Stream:
    """What for_each_event reads of a Faust stream: ``events()`` of things with ``.message``."""

    def __init__(self, values: list[bytes]) -> None:
        self.messages = [SimpleNamespace(topic="orders", partition=3, offset=10 + i,
                                         key=b"k", value=value, headers=[])
                         for i, value in enumerate(values)]

    async def events(self) -> AsyncIterator[SimpleNamespace]:
        for message in self.messages:
            yield SimpleNamespace(message=message)


@pytest.fixture
def letters() -> Iterator[AsyncMock]:
    with patch("agents.dead_letters.dead_letters_topic.send", new_callable=AsyncMock) as mock:
        yield mock


def test_an_old_sweep_is_a_retired_type_and_no_longer_an_order_event() -> None:
    assert event_type_of(OLD_SWEEP) == "expiry_sweep"
    assert "expiry_sweep" in RETIRED_ORDER_TYPES
    assert not RETIRED_ORDER_TYPES & set(ORDER_EVENTS), "nothing sends a retired type"


def test_every_reader_of_the_orders_topic_passes_the_retired_types_over() -> None:
    assert RETIRED_ORDER_TYPES <= NOT_FOR_THE_SAGA
    assert RETIRED_ORDER_TYPES <= NOT_NOTICES


async def test_the_saga_passes_an_old_sweep_over_and_handles_what_follows(
        letters: AsyncMock) -> None:
    cancel = CancelRequested(type=CancelRequested.event_type, event_id="e-1",
                             occurred_at=utcnow(), order_id="o-1")
    seen: list[tuple[Any, Position]] = []

    async def handler(event: Any, position: Position) -> None:
        seen.append((event, position))

    stream: Any = Stream([OLD_SWEEP, cancel.dumps()])
    await for_each_event(stream, {**ORDER_EVENTS, **PAYMENT_EVENTS}, handler,
                         agent="orders.saga.test", skip=NOT_FOR_THE_SAGA)
    assert seen == [(cancel, Position("orders", 11, "e-1"))]
    assert letters.await_count == 0, "an old sweep is not dead-lettered"
