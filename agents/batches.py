"""Batches of what an agent's stream has ready, acknowledged once the batch is handled.

Faust's ``take_events`` buffers through a stream processor and a timer: every event costs
an extra await, and a batch waits up to ``within`` for more. :func:`ready_batches` takes
the events the stream has already received, up to ``max_events``, and yields them as soon as
the stream has no more waiting: a busy topic gives large batches, a quiet one a batch of
one at once. The stream's own acknowledgement is off; each batch's events are acknowledged
when the agent asks for the next batch, so an offset is committed only after the batch
that holds it was handled (at-least-once, as everywhere).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

from faust.types import EventT, StreamT

__all__ = ["FILL_S", "ready_batches"]

#: How long a batch waits for more when the stream has nothing more ready (s).
FILL_S = 0.01


async def ready_batches(stream: StreamT[Any], max_events: int) -> AsyncIterator[list[EventT]]:
    """Yield lists of up to ``max_events`` events that ``stream`` has ready."""
    manual = cast(Any, stream).noack()
    queue = getattr(stream.channel, "queue", None)
    batch: list[EventT] = []
    async for event in manual.events():
        batch.append(event)
        if len(batch) < max_events and queue is not None and queue.empty():
            await asyncio.sleep(FILL_S)  # the consumer hands messages over one by one
        if len(batch) >= max_events or queue is None or queue.empty():
            yield batch
            for handled in batch:
                await manual.ack(handled)
            batch = []
