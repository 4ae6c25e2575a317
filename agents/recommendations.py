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

from faust.types import EventT, StreamT

from agents.batches import FOLD_WITHIN_S, Decoded, handle_batches
from agents.dead_letters import for_each_event
from agents.order_notices import Failures, each_notice, reads_order_notices
from agents.topics import recommendations_topic, shop_topic
from app import app
from models.analytics import TrackedFields
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
from tables.replay import Position, Send, decide_once, update_many

__all__ = ["behaviour_seen", "forward_purchase", "forward_purchases", "forward_tracked",
           "item_pairs_topic",
           "keep_item_model", "keep_user_behaviour"]

#: item-pairs [sku], one partition: ItemsPaired. (Declared here, next to its only producer
#: and consumer.)
item_pairs_topic = shop_topic("item-pairs", partitions=1)

#: Events of the item-pairs topic a batch takes at most.
ITEM_BATCH = 2_000

Row = dict[str, Any]

NOT_CONFIRMED = frozenset(t for t in ORDER_EVENTS if t != "order_confirmed")


def behaviour_seen(source: Event | TrackedFields, user_id: str, kind: str,
                   skus: list[str]) -> BehaviourSeen:
    """Return a user's ``kind`` behaviour on ``skus``, seen in ``source`` (id derived from it)."""
    return BehaviourSeen(type=BehaviourSeen.event_type,
                         event_id=derived_id(source.event_id, kind),
                         occurred_at=source.occurred_at, correlation_id=source.event_id,
                         user_id=user_id, kind=kind, skus=skus)


async def forward_behaviour(source: Event, user_id: str, kind: str, skus: list[str]) -> None:
    """Send a user's ``kind`` behaviour on ``skus`` (seen in ``source``) to its user's row."""
    seen = behaviour_seen(source, user_id, kind, skus)
    await recommendations_topic.send(key=user_id, value=seen.dumps())


def forward_tracked(events: Sequence[TrackedFields]) -> None:
    """Forward signed-in users' product views and carts (through the producer's buffer).

    Called by analytics.tracked for each batch of the analytics topic.
    """
    for event in events:
        kind = TRACKED_KINDS.get(event.type)
        if kind and event.user_id and event.sku:
            seen = behaviour_seen(event, event.user_id, kind, [event.sku])
            recommendations_topic.send_soon(key=event.user_id, value=seen.dumps())


@reads_order_notices("recommendations", {"order_confirmed"})
async def forward_purchases(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
    """Forward confirmed orders' skus as their customers' purchases."""
    return await each_notice(notices, forward_purchase, reader="recommendations.orders")


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


def apply_pairs_batch(batch: Sequence[Decoded[ItemsPaired]]) -> list[tuple[EventT, Exception]]:
    """Add items' popularity and co-occurrences (both ways), once; copy the changed rows.

    One write a row a batch (``update_many``), however many pairs the batch adds to it; the
    popular list takes each item's total after the batch (an absolute figure, so applying
    it again changes nothing). Call in the item-pairs topic's event context. Returns the
    events whose updates failed.
    """
    updates: dict[str, list[tuple[Position, Callable[[Row | None], Row], EventT]]] = {}
    risen: dict[str, Decoded[ItemsPaired]] = {}
    for item in batch:
        event, position = item.record, item.position
        updates.setdefault(item_key(event.sku), []).append(
            (position, pair_with(event.sku, "", 0, event.popularity, event.pairs), item.event))
        for other, weight in event.pairs.items():
            updates.setdefault(item_key(other), []).append(
                (position, pair_with(other, event.sku, weight), item.event))
        if event.popularity > 0:
            risen[event.sku] = item
    failed: list[tuple[EventT, Exception]] = []
    for key, mine in updates.items():
        errors = update_many(item_neighbours, key, [(p, update) for p, update, _ in mine])
        failed.extend((mine[index][2], exc) for index, exc in errors)
    ranks = sorted(((item.position, _ranked(sku, item_neighbours[item_key(sku)]["popularity"]))
                    for sku, item in risen.items() if item_key(sku) in item_neighbours),
                   key=lambda rank: rank[0].offset)  # the guard skips what is not newer
    if ranks:
        update_many(item_neighbours, POPULAR, ranks)
    # Copied every time, also for a redelivery: the copy may not have been written before.
    for changed_key in [*updates, *([POPULAR] if ranks else [])]:
        row = item_neighbours.get(changed_key)
        if row is not None:
            item_model[changed_key] = {k: v for k, v in row.items() if not k.startswith("_")}
    return failed


def pair_with(sku: str, other: str, weight: int, popularity: int = 0,
              pairs: dict[str, int] | None = None) -> Callable[[Row | None], Row]:
    """Return the update that adds ``popularity`` and ``weight`` with ``other`` (or ``pairs``)
    to ``sku``'s row."""
    added = pairs if pairs is not None else {other: weight}
    return lambda row: add_pairs(row, sku, popularity, added)


def _ranked(sku: str, total: int) -> Callable[[Row | None], Row]:
    return lambda row: rank_popular(row, sku, total)


@app.agent(item_pairs_topic, name="recommendations.items")
async def keep_item_model(stream: StreamT[bytes]) -> None:
    """Consume the item-pairs topic, in batches, into the item model and its copies."""
    await handle_batches(stream, ITEM_EVENTS, apply_pairs_batch, agent="recommendations.items",
                         max_events=ITEM_BATCH, within=FOLD_WITHIN_S)
