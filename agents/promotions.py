"""Promotions agent: the single writer of every promotion and its redemption counters.

The ``promotions`` topic has one partition, so one agent instance in the cluster applies
every change to its ``promotion_counters`` table in order: admin edits, the saga's
``RedeemPromotion`` / ``ReturnRedemption`` and the scheduler's window checks; it then copies
the row to the global ``promotions`` table every worker reads. Counting in one
place is what makes a limit of 10 mean 10 under any number of concurrent orders. What
changed is announced on RabbitMQ's ``shop.promotions`` exchange
(promotion.created/updated/deleted/activated/expired/redeemed), each message with an id
derived from the event, so a redelivery is recognisable.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.sending import send_all, to_rabbit
from agents.topics import promotions_topic
from app import app
from models.base import Event, utcnow
from models.promotions import (
    PROMOTION_EVENTS,
    PromotionDeleted,
    PromotionSaved,
    PromotionWindowChecked,
    RedeemPromotion,
    ReturnRedemption,
    apply_redeem,
    apply_return,
    apply_saved,
    public_promotion,
    status_at,
)
from rabbit_bridge.topology import PROMOTIONS_EXCHANGE
from tables.promotions import promotion_counters, promotions
from tables.replay import Position, Row, Send, decide_once

__all__ = ["apply_promotion_windows", "count_promotion", "maintain_promotions"]

log = logging.getLogger(__name__)

#: The announcement a promotion's new status makes (none for scheduled or deleted).
STATUS_NEWS = {"active": "activated", "expired": "expired"}


def announcement(kind: str, row: dict[str, Any], event: Event, **extra: Any) -> Send:
    """Return ``promotion.<kind>`` about ``row`` for shop.promotions, as a send of the row."""
    at = event.occurred_at
    body = {"type": f"promotion.{kind}", "code": row["code"], "at": at.isoformat(),
            "event_id": event.event_id,
            "promotion": public_promotion(row, at, admin=True), **extra}
    return to_rabbit(PROMOTIONS_EXCHANGE, f"promotion.{kind}",
                     f"promotion.{kind}:{row['code']}:{event.event_id}", body)


def _with_status(row: dict[str, Any], at: datetime) -> tuple[dict[str, Any], str | None]:
    """Return ``row`` with its status at ``at``, and the news if it changed."""
    status = status_at(row, at)
    if status == row.get("status"):
        return row, None
    return {**row, "status": status}, STATUS_NEWS.get(status)


def promotion_step(row: dict[str, Any] | None,
                   event: Event) -> tuple[dict[str, Any] | None, list[Send]]:
    """Return a code's row after ``event`` and what it sends: the answer to a redemption, and
    the announcements of what changed (kept with the row, so a redelivery publishes them
    again under the same message ids)."""
    news: list[str] = []
    sends: list[Send] = []
    after: dict[str, Any] | None
    if isinstance(event, PromotionSaved):
        news.append("created" if row is None or row.get("deleted") else "updated")
        after, changed = _with_status(apply_saved(row, event), event.occurred_at)
        news.extend([changed] if changed else [])
    elif isinstance(event, PromotionDeleted):
        assert row is not None
        news.append("deleted")
        after = {**row, "deleted": True, "status": "deleted"}
    elif isinstance(event, PromotionWindowChecked):
        assert row is not None
        after, changed = _with_status(row, datetime.fromisoformat(event.at))
        news.extend([changed] if changed else [])
    elif isinstance(event, RedeemPromotion):
        redemption = apply_redeem(row, event)
        if redemption.redeemed:
            news.append("redeemed")
        assert redemption.answer is not None
        after = redemption.row
        sends.append(("orders", event.order_id, redemption.answer.dumps().decode()))
    elif isinstance(event, ReturnRedemption):
        assert row is not None
        after = apply_return(row, event).row or {}
    else:
        return None, []
    if after is not None:
        extra = {"order_id": event.order_id} if isinstance(event, RedeemPromotion) else {}
        sends.extend(announcement(kind, after, event, **extra) for kind in news)
    return after, sends


def count_promotion(table: MutableMapping[str, Row], event: Any,
                    position: Position) -> list[Send]:
    """Apply a promotion event to its code's row in ``table``, once; return its sends."""
    needs_row = (PromotionDeleted, PromotionWindowChecked, ReturnRedemption)
    if isinstance(event, needs_row) and table.get(event.code) is None:
        return []
    return decide_once(table, event.code, position, lambda row: promotion_step(row, event))


async def apply_promotion_event(event: Any, position: Position) -> None:
    """Apply one promotion event to its code's row, once; send and announce what changed."""
    code: str = event.code
    await send_all(count_promotion(promotion_counters, event, position))
    row = promotion_counters.get(code)
    if row is None:
        return
    copy = {k: v for k, v in row.items() if k != "_applied"}
    # The topic offset of the last change in this row: an admin's view waits for its own.
    copy["revision"] = row.get("_applied", {}).get("offsets", {}).get(position.topic, -1)
    if promotions.get(code) != copy:
        promotions[code] = copy  # every worker's copy, for pricing and listing


@app.agent(promotions_topic, name="promotions.codes")
async def maintain_promotions(stream: StreamT[bytes]) -> None:
    """Consume the promotions topic into the promotions table."""
    await for_each_event(stream, PROMOTION_EVENTS, apply_promotion_event,
                         agent="promotions.codes")


async def apply_promotion_windows() -> int:
    """Ask the promotions agent to update every code whose window opened or closed.

    The promotion-windows task calls this; every worker has every promotion, and the agent
    re-checks at the time it names, so a repeated or late check changes nothing.
    """
    now = utcnow()
    asked = 0
    for code, row in list(promotions.items()):
        if row.get("deleted") or status_at(row, now) == row.get("status"):
            continue
        check = PromotionWindowChecked.new(code=code, at=now.isoformat(),
                                           correlation_id=f"window:{code}")
        await promotions_topic.send(key=code, value=check.dumps())
        asked += 1
    if asked:
        log.info("promotion windows: %d code(s) opened or closed", asked)
    return asked
