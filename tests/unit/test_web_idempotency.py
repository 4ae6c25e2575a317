"""Idempotency-Key semantics: the request fingerprint, the decision on a key, ids per customer.

Named test_web_* and importing the views inside the tests, as test_web_openapi.py does: the
views import every table, which test_shop_table.py wants to see built first.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.orders import Order, OrderLine, OrderPlaced, decide, key_reuse, request_digest
from models.support import Ticket, TicketOpened
from models.support import decide as decide_ticket

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

#: JSON values as a validated body dumps them (no NaN: it is not JSON).
scalars = (st.none() | st.booleans() | st.integers(-10**9, 10**9)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
bodies = st.dictionaries(st.text(max_size=6), values, max_size=6)


def reordered(value: Any, rng: random.Random) -> Any:
    """Return ``value`` with the keys of every object in another order (lists kept)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: reordered(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [reordered(item, rng) for item in value]
    return value


@given(bodies, st.randoms(use_true_random=False))
def test_the_same_body_in_any_key_order_and_layout_has_the_same_digest(
    body: dict[str, Any], rng: random.Random,
) -> None:
    shuffled = reordered(body, rng)
    assert request_digest(shuffled) == request_digest(body)
    spaced = json.loads(json.dumps(shuffled, indent=3))
    assert request_digest(spaced) == request_digest(body)


@given(bodies, bodies)
def test_different_bodies_have_different_digests(a: dict[str, Any], b: dict[str, Any]) -> None:
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        assert request_digest(a) != request_digest(b)


def test_the_digest_of_an_order_body_ignores_layout_and_key_order_but_not_its_content() -> None:
    from web.orders import OrderIn

    first = OrderIn.model_validate_json(
        '{"items": [{"sku": "A-1", "quantity": 2}], "payment_method": "pm_card_ok"}')
    again = OrderIn.model_validate_json(
        '{ "payment_method" : "pm_card_ok",\n  "items":[{"quantity":2,"sku":"A-1"}],'
        ' "promotion_code": null }')
    more = OrderIn.model_validate_json(
        '{"items": [{"sku": "A-1", "quantity": 3}], "payment_method": "pm_card_ok"}')
    digest = request_digest(first.model_dump(mode="json"))
    assert request_digest(again.model_dump(mode="json")) == digest
    assert request_digest(more.model_dump(mode="json")) != digest
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_a_key_finds_nothing_a_retry_or_another_body() -> None:
    assert key_reuse(None, "d1") == "new"
    assert key_reuse("d1", "d1") == "same"
    assert key_reuse("d2", "d1") == "other"
    assert key_reuse("", "d1") == "same"  # kept without a digest: nothing tells it apart


def placed(order_id: str, digest: str, quantity: int = 1) -> OrderPlaced:
    return OrderPlaced.new(order_id=order_id, user_id="u-1",
                           items=[OrderLine(sku="A-1", quantity=quantity, unit_price_cents=100)],
                           subtotal_cents=100 * quantity, discount_cents=0,
                           total_cents=100 * quantity, payment_method="pm_card_ok",
                           request_digest=digest, correlation_id=order_id)


def test_the_order_keeps_the_digest_of_the_first_placed_event() -> None:
    first = decide(None, placed("o-1", "d1"), NOW).order
    assert first is not None and first.request_digest == "d1"
    row = json.loads(json.dumps(first.to_row()))
    assert row["request_digest"] == "d1" and Order.from_row(row) == first
    # A second OrderPlaced of the key (a race lost) changes nothing: the first body wins.
    second = decide(first, placed("o-1", "d2", quantity=5), NOW)
    assert second.order == first and second.effects == []
    assert key_reuse(row["request_digest"], "d2") == "other"


def test_a_row_kept_before_digests_reads_as_none() -> None:
    row = decide(None, placed("o-1", ""), NOW).order.to_row()  # type: ignore[union-attr]
    del row["request_digest"]
    assert Order.from_row(row).request_digest == ""


def test_the_ticket_keeps_the_digest_out_of_the_api_document() -> None:
    from web.support import public_ticket

    opened = TicketOpened.new(ticket_id="t-1", actor_id="u-1", actor_role="customer",
                              subject="s", body="b", request_digest="d1", correlation_id="t-1")
    ticket = decide_ticket(None, opened).ticket
    assert ticket is not None and ticket.request_digest == "d1"
    row = json.loads(json.dumps(ticket.to_row()))
    assert row["_request_digest"] == "d1" and Ticket.from_row(row) == ticket
    assert "_request_digest" not in public_ticket(row)
    other = TicketOpened.new(ticket_id="t-1", actor_id="u-1", actor_role="customer",
                             subject="s", body="other", request_digest="d2",
                             correlation_id="t-1")
    assert decide_ticket(ticket, other).ticket == ticket


def test_keys_are_per_customer() -> None:
    from web.identity import Identity
    from web.orders import order_id_for
    from web.support import ticket_id_for

    ann, bob = Identity("ann", frozenset({"customer"})), Identity("bob", frozenset({"customer"}))
    for id_for in (order_id_for, ticket_id_for):
        assert id_for(ann, "k-1") == id_for(ann, "k-1")
        assert id_for(ann, "k-1") != id_for(bob, "k-1")
        assert id_for(ann, "k-1") != id_for(ann, "k-2")
        assert id_for(ann, None) != id_for(ann, None)
    assert order_id_for(ann, "k-1") != ticket_id_for(ann, "k-1")
