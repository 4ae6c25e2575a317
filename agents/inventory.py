"""Inventory agent: the single writer of each sku's stock; answers reservations."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from faust.types import EventT, StreamT

from agents.batches import (
    Decoded,
    WriteBack,
    decode_batch,
    in_partition_of,
    note_applied,
    ready_batches,
)
from agents.dead_letters import dead_letter, request_held
from agents.sending import send_all, to_sends
from agents.topics import inventory_topic
from app import app
from models.inventory import (
    INVENTORY_EVENTS,
    LEDGER_ARCHIVE_OVER,
    Entry,
    Restock,
    Stock,
    apply_inventory_event,
    archive_entries,
    archive_row,
)
from runtime.positions import causes_of, positions
from tables.inventory import archive_key, stock
from tables.replay import Position, Row, Send, decide_once

__all__ = ["apply_stock_commands", "change_stock", "change_stocks", "keep_stock"]

#: Row field: the offset of the inventory event that last wrote each archive row (by bucket).
WRITTEN = "_archived"


#: The most inventory commands handled in one batch.
BATCH = 500
AGENT = "inventory.stock"


async def apply_stock_commands(events: Sequence[EventT]) -> None:
    """Apply a batch of inventory commands (see :func:`change_stocks`), then send each
    command's answers with its request's id; each command counts as applied (its caused
    sends noted for read-your-writes) once its rows are written and its answers handed over.
    """
    batch: list[Decoded[Any]] = await decode_batch(events, INVENTORY_EVENTS, agent=AGENT)
    by_partition: dict[int, list[Decoded[Any]]] = defaultdict(list)
    for item in batch:
        by_partition[item.event.message.partition].append(item)
    failed: list[tuple[EventT, Exception]] = []
    for items in by_partition.values():
        with in_partition_of(items[-1].event):
            outcomes = change_stocks(stock, [(item.record, item.position) for item in items],
                                     keep=int(app.settings.order_ttl))
        for item, outcome in zip(items, outcomes, strict=True):
            message = item.event.message
            with causes_of(message.topic) as caused, \
                    request_held(item.event, item.record, AGENT):
                try:
                    if isinstance(outcome, Exception):
                        raise outcome
                    await send_all(outcome)
                except Exception as exc:
                    failed.append((item.event, exc))
            positions.handled(message.topic, message.partition, message.offset, caused)
    for event, failure in failed:
        await dead_letter(event, failure, agent=AGENT, stage="handle")
    note_applied(events, AGENT)


def change_stocks(table: MutableMapping[str, Row], commands: Sequence[tuple[Any, Position]],
                  *, keep: int, archive_over: int = LEDGER_ARCHIVE_OVER,
                  ) -> list[list[Send] | Exception]:
    """Apply a batch of one partition's inventory commands in order, each once, and write
    each row they change once; return each command's sends, or the error it raised.

    Every command is decided on its own by :func:`change_stock`, with its own replay guard,
    against its sku's rows as the commands before it left them (``WriteBack``); the table
    gets one write a changed row. A command that writes more than its sku's row (archive
    rows, written or deleted, or rewritten on a redelivery) is written as one at a time
    would be: what the commands before it changed first, then its archive rows, its row and
    its deletions, so that an archive row is never ahead of a row the changelog holds by
    more than the one command that wrote both (tables.replay._skip rewrites them for it). A
    command that raises changes nothing and the others still apply.
    """
    rows = WriteBack(table)
    outcomes: list[list[Send] | Exception] = []
    for event, position in commands:
        step = WriteBack(rows)
        try:
            outcomes.append(change_stock(step, event, position, keep=keep,
                                         archive_over=archive_over))
        except Exception as exc:
            outcomes.append(exc)
            continue
        if step.writes > 1:
            rows.write()
            step.write()
            rows.write()
        else:
            step.write()
    rows.write()
    return outcomes


def change_stock(table: MutableMapping[str, Row], event: Any, position: Position,
                 *, keep: int, archive_over: int = LEDGER_ARCHIVE_OVER) -> list[Send]:
    """Apply an inventory command to its sku's row in ``table``, once; return its sends.

    ``keep`` is how long the sku's ledger remembers a finished order, ``archive_over`` how
    many finished orders the sku's row keeps before it archives them (models.inventory).
    The sku's archive rows are written before its row and deleted after it. The row notes
    which event last wrote each archive row, so that a redelivery the guard skips writes
    again those the row depends on, before the row itself (tables.replay._skip).
    """
    sku: str = event.sku
    dropped: list[int] = []

    def archived(bucket: int) -> Mapping[str, Entry]:
        return archive_entries(table.get(archive_key(sku, bucket)))

    def decide(row: Row | None) -> tuple[Row | None, list[Send]]:
        change = apply_inventory_event(Stock.from_row(sku, row), event, keep, archived,
                                       archive_over)
        if row is None and not isinstance(event, Restock):  # no row for unknown skus
            return None, to_sends(change.effects)
        for bucket, entries in change.archives.items():
            table[archive_key(sku, bucket)] = archive_row(entries)
        dropped.extend(change.dropped)
        after = change.stock.to_row()
        written = {b: offset for b, offset in (row or {}).get(WRITTEN, {}).items()
                   if int(b) in change.stock.buckets}
        written.update({str(b): position.offset for b in change.archives})
        if written:
            after[WRITTEN] = written
        return after, to_sends(change.effects)

    def rewrite_archives(row: Row) -> None:
        for bucket, offset in row.get(WRITTEN, {}).items():
            if offset >= position.offset:
                key = archive_key(sku, int(bucket))
                kept = table.get(key)
                if kept is not None:
                    table[key] = kept

    if "@" in sku:  # not a sku (web/products.SKU), and never an archive row's key
        return to_sends(apply_inventory_event(Stock(sku), event, keep).effects)
    sends = decide_once(table, sku, position, decide, rewrite_first=rewrite_archives)
    for bucket in dropped:
        table.pop(archive_key(sku, bucket), None)
    return sends


@app.agent(inventory_topic, name=AGENT)
async def keep_stock(stream: StreamT[bytes]) -> None:
    """Consume the inventory topic into the stock table, in batches of what arrived while the
    last batch was handled (no linger: a reservation is on its order's path)."""
    async for events in ready_batches(stream, BATCH, within=None, agent=AGENT):
        await apply_stock_commands(events)
