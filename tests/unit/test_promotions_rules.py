"""models/promotions.py: when a code applies, what it takes off, and counting redemptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.promotions import (
    PromotionError,
    PromotionRedeemed,
    PromotionRefused,
    PromotionSaved,
    RedeemPromotion,
    ReturnRedemption,
    apply_redeem,
    apply_return,
    apply_saved,
    discount_for,
    normalise_code,
    public_promotion,
    status_at,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
BOOKS = [("books", 2, 1500), ("mugs", 1, 1000)]  # books 3000, mugs 1000


def promotion(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "code": "SPRING", "kind": "percent", "value": 10, "min_order_cents": 0,
        "starts_at": (NOW - timedelta(days=1)).isoformat(),
        "ends_at": (NOW + timedelta(days=1)).isoformat(), "usage_limit": None,
        "per_customer_limit": None, "categories": []}
    fields.update(changes)
    return apply_saved(None, PromotionSaved.new(**fields))


def redeem(order_id: str, user_id: str = "u-1", at: datetime = NOW) -> RedeemPromotion:
    return RedeemPromotion.new(code="SPRING", order_id=order_id, user_id=user_id,
                               discount_cents=100, placed_at=at.isoformat())


def test_codes_are_case_insensitive() -> None:
    assert normalise_code(" spring-24 ") == "SPRING-24"


@pytest.mark.parametrize(("at", "status"), [
    (NOW - timedelta(days=2), "scheduled"), (NOW, "active"),
    (NOW + timedelta(days=1), "expired"), (NOW + timedelta(days=9), "expired")])
def test_the_window_decides_the_status(at: datetime, status: str) -> None:
    assert status_at(promotion(), at) == status
    assert status_at({**promotion(), "deleted": True}, at) == "deleted"


def test_an_open_ended_promotion_never_expires() -> None:
    assert status_at(promotion(ends_at=None), NOW + timedelta(days=3650)) == "active"


def test_percent_and_fixed_discounts() -> None:
    assert discount_for(promotion(), BOOKS, "u-1", NOW) == 400
    assert discount_for(promotion(kind="fixed", value=700), BOOKS, "u-1", NOW) == 700
    assert discount_for(promotion(kind="fixed", value=9999), BOOKS, "u-1", NOW) == 4000
    assert discount_for(promotion(value=100), BOOKS, "u-1", NOW) == 4000


def test_categories_limit_what_the_discount_applies_to() -> None:
    assert discount_for(promotion(categories=["mugs"]), BOOKS, "u-1", NOW) == 100
    with pytest.raises(PromotionError, match="does not apply to these products"):
        discount_for(promotion(categories=["garden"]), BOOKS, "u-1", NOW)


@pytest.mark.parametrize(("row", "at", "why"), [
    (None, NOW, "unknown promotion code"),
    ({**promotion(), "deleted": True}, NOW, "unknown promotion code"),
    (promotion(), NOW - timedelta(days=2), "is not active yet"),
    (promotion(), NOW + timedelta(days=2), "has expired"),
    (promotion(min_order_cents=5000), NOW, "needs 5000 cents of eligible products"),
    ({**promotion(usage_limit=2), "used": 2}, NOW, "is used up"),
    ({**promotion(per_customer_limit=1), "by_user": {"u-1": 1}}, NOW, "already used 1 time"),
])
def test_a_code_that_cannot_be_used_says_why(row: dict[str, Any] | None, at: datetime,
                                             why: str) -> None:
    with pytest.raises(PromotionError, match=why):
        discount_for(row, BOOKS, "u-1", at)


def test_a_redemption_is_counted_once_per_order() -> None:
    first = apply_redeem(promotion(), redeem("o-1"))
    assert first.redeemed and isinstance(first.answer, PromotionRedeemed)
    assert first.row is not None
    assert (first.row["used"], first.row["by_user"], first.row["orders"]) == (
        1, {"u-1": 1}, {"o-1": "u-1"})
    again = apply_redeem(first.row, redeem("o-1"))
    assert not again.redeemed and isinstance(again.answer, PromotionRedeemed)
    assert again.row == first.row


def test_limits_refuse_with_a_reason() -> None:
    row = promotion(usage_limit=1, per_customer_limit=1)
    row = apply_redeem(row, redeem("o-1")).row
    used_up = apply_redeem(row, redeem("o-2", "u-2"))
    assert isinstance(used_up.answer, PromotionRefused) and not used_up.redeemed
    assert "used up" in used_up.answer.reason
    late = apply_redeem(promotion(), redeem("o-3", at=NOW + timedelta(days=5)))
    assert isinstance(late.answer, PromotionRefused)
    assert "not active when the order was placed" in late.answer.reason
    gone = apply_redeem(None, redeem("o-4"))
    assert isinstance(gone.answer, PromotionRefused) and gone.row is None


def test_a_returned_redemption_frees_the_code_once() -> None:
    row = apply_redeem(promotion(usage_limit=1), redeem("o-1")).row
    back = apply_return(row, ReturnRedemption.new(code="SPRING", order_id="o-1")).row
    assert back is not None and (back["used"], back["by_user"], back["orders"]) == (0, {}, {})
    assert apply_return(back, ReturnRedemption.new(code="SPRING", order_id="o-1")).row == back
    assert apply_redeem(back, redeem("o-2")).redeemed


def test_a_redemption_asked_again_after_its_return_is_refused() -> None:
    """A chase or a replay can ask again after the ended order gave its redemption back: it
    must not count against the limit a second time (nor be announced twice)."""
    row = apply_redeem(promotion(usage_limit=1), redeem("o-1")).row
    back = apply_return(row, ReturnRedemption.new(code="SPRING", order_id="o-1")).row
    again = apply_redeem(back, redeem("o-1"))
    assert not again.redeemed and isinstance(again.answer, PromotionRefused)
    assert again.row is not None and again.row["used"] == 0
    assert apply_redeem(again.row, redeem("o-2", "u-2")).redeemed, "the one use is still free"


def test_saving_again_keeps_the_counters() -> None:
    row = apply_redeem(promotion(), redeem("o-1")).row
    changed = apply_saved(row, PromotionSaved.new(
        code="SPRING", kind="fixed", value=500, min_order_cents=0, starts_at=NOW.isoformat(),
        ends_at=None, usage_limit=5, per_customer_limit=None, categories=[]))
    assert (changed["kind"], changed["value"], changed["used"]) == ("fixed", 500, 1)


def test_only_admins_see_the_counters() -> None:
    row = apply_redeem(promotion(), redeem("o-1")).row
    assert row is not None
    assert "used" not in public_promotion(row, NOW)
    assert public_promotion(row, NOW, admin=True)["used"] == 1
    assert public_promotion(row, NOW)["status"] == "active"


Step = tuple[str, int, int]  # (redeem | return, order number, user number)


@given(st.integers(1, 5), st.one_of(st.none(), st.integers(1, 3)),
       st.lists(st.tuples(st.sampled_from(("redeem", "return")), st.integers(0, 9),
                          st.integers(0, 2)), max_size=60))
def test_counters_never_pass_the_limits_and_always_add_up(limit: int, per_customer: int | None,
                                                          steps: list[Step]) -> None:
    row: dict[str, Any] | None = promotion(usage_limit=limit, per_customer_limit=per_customer)
    owner: dict[str, str] = {}
    for kind, order, user in steps:
        order_id, user_id = f"o-{order}", owner.setdefault(f"o-{order}", f"u-{user}")
        if kind == "redeem":
            row = apply_redeem(row, redeem(order_id, user_id)).row
        else:
            row = apply_return(row, ReturnRedemption.new(code="SPRING", order_id=order_id)).row
        assert row is not None
        assert row["used"] == len(row["orders"]) <= limit
        assert sum(row["by_user"].values()) == row["used"]
        if per_customer is not None:
            assert max(row["by_user"].values(), default=0) <= per_customer
