"""Giving partitions up in a rebalance: wait for the streams, but not for ever.

When the group takes partitions from a worker, Faust stops its streams and waits until every
message an agent has started on is acknowledged (``Consumer.wait_empty``), then commits. On
a saturated worker (2,000 orders through two workers, one of them killed and restarted) a
message or two once stayed unacknowledged while every agent was idle, waiting for its next
event: ``wait_empty`` waited for ever, the worker never rejoined the group, and the whole
group stood still (the restarted worker never got ready). The same happened with Faust's
Cython paths on and off.

:func:`wait_for_streams` waits as Faust does, up to ``within`` seconds, then commits what has
been acknowledged and lets the rebalance go on, counting it and logging the messages it
gave up on (and what holds them). Nothing is lost: an offset is committed only up to the
first message not acknowledged, so the worker that gets the partition reads those messages
again, and every state change is duplicate-safe (tables/replay.py).

Two details matter under load:

- A message acknowledged *after* its offset was committed stays in Faust's unacknowledged
  set with ``acked`` set (``Consumer.ack`` only removes it while the offset is ahead of the
  commit); Faust's loop drops such messages each round (``_clean_unacked_messages``), and
  so does this one. Counting them kept every rebalance waiting the whole deadline.
- The deadline stays below the group's session timeout: a worker that holds a rebalance up
  longer is dropped from the group while it still works, its partitions go to another
  worker, and what it writes meanwhile races the new owner's writes on the changelogs.

Taking partitions on is counted too (:func:`count_assignment`): the partitions a worker holds,
per topic, and those it was given in a rebalance after its first assignment, i.e. taken over
from a member that left or moved to it. A crash test reads them on ``/metrics`` to prove the
survivor took the dead worker's partitions over.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

from faust.transport.consumer import Consumer
from faust.types import TP
from prometheus_client import Counter, Gauge

__all__ = ["ASSIGNED", "GAVE_UP", "TAKEN_OVER", "WAIT_EMPTY_S", "count_assignment",
           "not_acknowledged", "wait_for_streams", "wait_limit"]

log = logging.getLogger(__name__)

#: Seconds a worker giving partitions up waits for its agents to acknowledge what they took,
#: at most (and at most half the session timeout: see :func:`wait_limit`).
WAIT_EMPTY_S = 10.0

GAVE_UP = Counter("shop_rebalance_waits_given_up_total",
                  "Rebalances in which the worker stopped waiting for unacknowledged messages")


ASSIGNED = Gauge("shop_partitions_assigned",
                 "Partitions assigned to this worker (active and standby), by topic",
                 ["topic"])
TAKEN_OVER = Counter("shop_partitions_taken_over_total",
                     "Partitions this worker was given in a rebalance after its first "
                     "assignment (taken over from another member), by topic", ["topic"])


def count_assignment(previous: set[TP] | None, assigned: set[TP]) -> None:
    """Count a new assignment: set ``ASSIGNED`` per topic (0 for a topic no longer held) and,
    unless this is the worker's first assignment (``previous`` is None), add the partitions
    it did not hold before to ``TAKEN_OVER``. A first assignment is not a take-over: the
    worker held nothing before it, whoever did."""
    for topic in {tp.topic for tp in (previous or set()) | assigned}:
        ASSIGNED.labels(topic).set(sum(1 for tp in assigned if tp.topic == topic))
    if previous is None:
        return
    for tp in assigned - previous:
        TAKEN_OVER.labels(tp.topic).inc()


def wait_limit(session_timeout: float) -> float:
    """Return how long a rebalance may wait for the streams: half the session timeout, at
    most WAIT_EMPTY_S (the other half is for the commit and rejoining the group)."""
    return min(WAIT_EMPTY_S, session_timeout / 2)


def not_acknowledged(consumer: Consumer) -> list[Any]:
    """Return the consumer's started messages not acknowledged yet (and forget the others,
    as Faust's ``_clean_unacked_messages`` does)."""
    unacked = consumer.unacked
    unacked.difference_update({message for message in unacked if message.acked})
    return sorted(unacked, key=lambda m: (m.topic, m.partition, m.offset))


async def wait_for_streams(consumer: Consumer, within: float = WAIT_EMPTY_S,
                           poll: float = 0.05) -> bool:
    """Wait until the consumer's started messages are acknowledged, at most ``within`` s,
    then commit what is safe; return True if they all were.

    Faust's own ``wait_empty`` cannot be given a timeout: it swallows the cancellation
    (``Consumer._wait_for_ack``), so this is its loop with a deadline.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    next_beat = loop.time()
    while not_acknowledged(consumer) and not consumer.should_stop and loop.time() < deadline:
        if loop.time() >= next_beat:  # once a second, as Faust does: drop the messages
            gc.collect()              # nothing holds any more, commit what was acknowledged
            await consumer.commit()
            next_beat = loop.time() + 1.0
        await asyncio.sleep(poll)
    stuck = not_acknowledged(consumer)
    if stuck and not consumer.should_stop:
        GAVE_UP.inc()
        log.warning("rebalance: %d messages are still not acknowledged after %.0f s; "
                    "committing up to them and going on (the next owner reads them again): "
                    "%s", len(stuck), within, "; ".join(_describe(m) for m in stuck[:10]))
    await consumer.commit_and_end_transactions()
    return not stuck


def _describe(message: Any) -> str:
    """Name a message and what holds references to it (to find who never acknowledged it)."""
    holders = sorted({type(r).__name__ for r in gc.get_referrers(message)} - {"frame"})
    return (f"{message.topic}[{message.partition}]@{message.offset} "
            f"refcount {message.refcount} held by {', '.join(holders) or 'nothing'}")
