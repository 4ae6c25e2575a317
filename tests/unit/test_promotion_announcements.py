"""agents/promotions.py: a code's step answers redemptions and announces what changed, as
sends the row keeps (so a redelivery publishes the same messages again)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agents.promotions import promotion_step
from agents.sending import RABBIT
from models.promotions import PromotionDeleted, PromotionSaved, RedeemPromotion
from rabbit_bridge.topology import PROMOTIONS_EXCHANGE
from tables.replay import Position, decide_once

NOW = datetime.now(UTC)


def saved() -> PromotionSaved:
    return PromotionSaved.new(
        code="SPRING", kind="percent", value=10, min_order_cents=0,
        starts_at=(NOW - timedelta(days=1)).isoformat(),
        ends_at=(NOW + timedelta(days=1)).isoformat(), usage_limit=None,
        per_customer_limit=None, categories=[])


def announced(sends: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """Return (routing key, message id, body type) of the RabbitMQ sends."""
    found = []
    for topic, key, value in sends:
        if topic == RABBIT:
            exchange, routing_key, message_id = json.loads(key)
            assert exchange == PROMOTIONS_EXCHANGE
            found.append((routing_key, message_id, json.loads(value)["type"]))
    return found


def test_a_new_code_is_announced_created_and_activated() -> None:
    event = saved()
    row, sends = promotion_step(None, event)
    assert row is not None and row["status"] == "active"
    assert announced(sends) == [
        ("promotion.created", f"promotion.created:SPRING:{event.event_id}", "promotion.created"),
        ("promotion.activated", f"promotion.activated:SPRING:{event.event_id}",
         "promotion.activated")]


def test_a_redemption_answers_the_order_and_is_announced_with_the_order() -> None:
    row, _ = promotion_step(None, saved())
    redeem = RedeemPromotion.new(code="SPRING", order_id="o-1", user_id="u-1",
                                 discount_cents=100, placed_at=NOW.isoformat())
    after, sends = promotion_step(row, redeem)
    assert after is not None
    assert [(t, k) for t, k, _ in sends if t != RABBIT] == [("orders", "o-1")]
    [(key, message_id, kind)] = announced(sends)
    assert key == kind == "promotion.redeemed"
    assert message_id == f"promotion.redeemed:SPRING:{redeem.event_id}"
    body = json.loads(next(v for t, _, v in sends if t == RABBIT))
    assert body["order_id"] == "o-1"


def test_a_redelivered_redemption_publishes_the_same_announcement_again() -> None:
    table: dict[str, dict[str, object]] = {}
    first = saved()
    decide_once(table, "SPRING", Position("promotions", 0, first.event_id),
                lambda row: promotion_step(row, first))
    redeem = RedeemPromotion.new(code="SPRING", order_id="o-1", user_id="u-1",
                                 discount_cents=100, placed_at=NOW.isoformat())
    position = Position("promotions", 1, redeem.event_id)
    sends = decide_once(table, "SPRING", position, lambda row: promotion_step(row, redeem))
    again = decide_once(table, "SPRING", position, lambda row: promotion_step(row, redeem))
    assert again == sends and announced(again)


def test_deleting_a_code_is_announced() -> None:
    row, _ = promotion_step(None, saved())
    deleted = PromotionDeleted.new(code="SPRING")
    after, sends = promotion_step(row, deleted)
    assert after is not None and after["status"] == "deleted"
    assert [k for k, _, _ in announced(sends)] == ["promotion.deleted"]
