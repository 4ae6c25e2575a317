"""Recommendations agents: behaviour to users, co-occurrence and popularity to items.

Three hops, each the single writer of its rows (a row is only written from its partition):

1. ``analytics.tracked`` (agents/analytics.py, the analytics topic's one agent, through
   :func:`forward_tracked`) and :func:`forward_purchase` (the orders topic's
   ``order_confirmed`` notices, through agents/order_notices.py; the order's lines are
   in the ``orders`` row of the same partition, as in agents/reports.py) forward a
   ``BehaviourSeen`` to the ``recommendations`` topic keyed by user id. Its id is derived
   from the source event's, so a redelivered source makes a duplicate the next hop skips.
2. ``recommendations.users`` keeps each user's recent behaviour (``user_behaviour``, under
   the replay guard) and sends what it adds to each item (``ItemsPaired``) to ``item-pairs``.
3. ``recommendations.items`` on the one-partition ``item-pairs`` topic is the single writer
   of the item model (``item_neighbours``: each item's neighbours and popularity, and the
   popular list), and copies every changed row to the global ``item_model`` that every
   worker reads. One partition keeps the model in one place and every read local; the item
   hop's throughput is one worker's (see web/recommendations.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.order_notices import reads_order_notices
from agents.topics import recommendations_topic, shop_topic
from app import app
from models.analytics import Tracked
from models.base import Event
from models.orders import ORDER_EVENTS, OrderUpdate
from models.recommendations import (
    ITEM_EVENTS,
    TRACKED_KINDS,
    BehaviourSeen,
    ItemsPaired,
    add_pairs,
    derived_id,
    observe,
    rank_popular,
)
from tables.orders import orders
from tables.recommendations import POPULAR, item_key, item_model, item_neighbours, user_behaviour
from tables.replay import Position, Send, decide_once, update_once

__all__ = ["behaviour_seen", "forward_purchase", "forward_tracked", "item_pairs_topic",
           "keep_item_model", "keep_user_behaviour"]

#: item-pairs [sku], one partition: ItemsPaired. (Declared here, next to its only producer
#: and consumer.)
item_pairs_topic = shop_topic("item-pairs", partitions=1)

Row = dict[str, Any]

NOT_CONFIRMED = frozenset(t for t in ORDER_EVENTS if t != "order_confirmed")


def behaviour_seen(source: Event, user_id: str, kind: str, skus: list[str]) -> BehaviourSeen:
    """Return a user's ``kind`` behaviour on ``skus``, seen in ``source`` (id derived from it)."""
    return BehaviourSeen(type=BehaviourSeen.event_type,
                         event_id=derived_id(source.event_id, kind),
                         occurred_at=source.occurred_at, correlation_id=source.event_id,
                         user_id=user_id, kind=kind, skus=skus)


async def forward_behaviour(source: Event, user_id: str, kind: str, skus: list[str]) -> None:
    """Send a user's ``kind`` behaviour on ``skus`` (seen in ``source``) to its user's row."""
    seen = behaviour_seen(source, user_id, kind, skus)
    await recommendations_topic.send(key=user_id, value=seen.dumps())


def forward_tracked(events: Sequence[Tracked]) -> None:
    """Forward signed-in users' product views and carts (through the producer's buffer).

    Called by analytics.tracked for each batch of the analytics topic.
    """
    for event in events:
        kind = TRACKED_KINDS.get(event.type)
        if kind and event.user_id and event.sku:
            seen = behaviour_seen(event, event.user_id, kind, [event.sku])
            recommendations_topic.send_soon(key=event.user_id, value=seen.dumps())


@reads_order_notices("recommendations", {"order_confirmed"})
async def forward_purchase(event: OrderUpdate, position: Position) -> None:
    """Forward a confirmed order's skus as its customer's purchases."""
    order = orders.get(event.order_id) or {}
    skus = [line["sku"] for line in order.get("items", ())]
    if skus:
        await forward_behaviour(event, event.user_id, "purchase", skus)


async def apply_behaviour(event: BehaviourSeen, position: Position) -> None:
    """Add a behaviour to the user's row, once; send what it adds to each item."""

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any], list[Send]]:
        new_row, deltas = observe(row, event.user_id, event.kind, event.skus)
        sends: list[Send] = []
        for delta in deltas:
            paired = ItemsPaired(
                type=ItemsPaired.event_type, event_id=derived_id(event.event_id, delta.sku),
                occurred_at=event.occurred_at, correlation_id=event.correlation_id,
                sku=delta.sku, popularity=delta.popularity, pairs=delta.pairs)
            sends.append(("item-pairs", delta.sku, paired.dumps().decode()))
        return new_row, sends

    for _, key, value in decide_once(user_behaviour, event.user_id, position, step):
        await item_pairs_topic.send(key=key, value=value.encode())


@app.agent(recommendations_topic, name="recommendations.users")
async def keep_user_behaviour(stream: StreamT[bytes]) -> None:
    """Consume the recommendations topic into each user's recent behaviour."""
    await for_each_event(stream, BehaviourSeen, apply_behaviour,
                         agent="recommendations.users")


async def apply_pairs(event: ItemsPaired, position: Position) -> None:
    """Add an item's popularity and co-occurrences (both ways), once; copy the rows."""
    sku = event.sku
    key = item_key(sku)
    update_once(item_neighbours, key, position,
                lambda row: add_pairs(row, sku, event.popularity, event.pairs))
    changed = [key]
    for other, weight in event.pairs.items():
        other_key = item_key(other)
        update_once(item_neighbours, other_key, position, pair_with(other, sku, weight))
        changed.append(other_key)
    if event.popularity > 0:
        total = item_neighbours[key]["popularity"]
        update_once(item_neighbours, POPULAR, position,
                    lambda row: rank_popular(row, sku, total))
        changed.append(POPULAR)
    # Copied every time, also for a redelivery: the copy may not have been written before.
    for changed_key in changed:
        item_model[changed_key] = {k: v for k, v in item_neighbours[changed_key].items()
                                   if not k.startswith("_")}


def pair_with(sku: str, other: str, weight: int) -> Callable[[Row | None], Row]:
    """Return the update that adds ``weight`` to ``sku``'s co-occurrence with ``other``."""
    return lambda row: add_pairs(row, sku, 0, {other: weight})


@app.agent(item_pairs_topic, name="recommendations.items")
async def keep_item_model(stream: StreamT[bytes]) -> None:
    """Consume the item-pairs topic into the item model and its copy on every worker."""
    await for_each_event(stream, ITEM_EVENTS, apply_pairs, agent="recommendations.items")
