"""Promotions: codes that take money off an order, and the rules that decide when they do.

A promotion is a percent or a fixed amount off the lines it applies to (its categories, or
every line), for orders of at least ``min_order_cents``, between ``starts_at`` and
``ends_at``, at most ``usage_limit`` times in all and ``per_customer_limit`` times per
customer. Every worker keeps every promotion (a global table fed by the one-partition
``promotions`` topic), so the order API prices a code where the order arrives; the
promotions agent is the single writer of the table, so redemptions are counted race-free:
the saga asks it to redeem (``RedeemPromotion``) and waits for the answer like it waits for
stock. A redemption is held for the order and given back when the order ends without being
paid (rejected, payment failed, cancelled, expired).

Everything here is pure: rows in, rows and decisions out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from models.base import Event, event_types

__all__ = [
    "PROMOTION_EVENTS",
    "PromotionDeleted",
    "PromotionError",
    "PromotionRedeemed",
    "PromotionRefused",
    "PromotionSaved",
    "PromotionWindowChecked",
    "RedeemPromotion",
    "Redemption",
    "ReturnRedemption",
    "apply_redeem",
    "apply_return",
    "apply_saved",
    "discount_for",
    "normalise_code",
    "public_promotion",
    "status_at",
]


class PromotionError(ValueError):
    """A code that cannot be used for this order; the message says why, for the customer."""


# -- Events ----------------------------------------------------------------------------------


class PromotionSaved(Event):
    """An admin created or changed a promotion (the whole definition)."""

    event_type = "promotion_saved"
    code: str
    kind: str
    value: int
    min_order_cents: int
    starts_at: str
    ends_at: str | None
    usage_limit: int | None
    per_customer_limit: int | None
    categories: list[str]
    created: bool = False


class PromotionDeleted(Event):
    """An admin deleted a promotion: it can no longer be redeemed."""

    event_type = "promotion_deleted"
    code: str


class PromotionWindowChecked(Event):
    """The scheduler found a promotion whose window opened or closed (at ``at``)."""

    event_type = "promotion_window_checked"
    code: str
    at: str


class RedeemPromotion(Event):
    """The saga asks to redeem ``code`` for an order (answered on the orders topic)."""

    event_type = "redeem_promotion"
    code: str
    order_id: str
    user_id: str
    discount_cents: int
    placed_at: str


class ReturnRedemption(Event):
    """The order ended unpaid: its redemption of ``code`` is given back."""

    event_type = "return_redemption"
    code: str
    order_id: str


class PromotionRedeemed(Event):
    """The promotions agent counted the order's redemption (answer to RedeemPromotion)."""

    event_type = "promotion_redeemed"
    code: str
    order_id: str


class PromotionRefused(Event):
    """The promotions agent refused the redemption (used up, expired, ...), with why."""

    event_type = "promotion_refused"
    code: str
    order_id: str
    reason: str


PROMOTION_EVENTS = event_types(PromotionSaved, PromotionDeleted, PromotionWindowChecked,
                               RedeemPromotion, ReturnRedemption)


# -- Rules -----------------------------------------------------------------------------------


def normalise_code(code: str) -> str:
    """Return ``code`` as the table keys it (codes are case-insensitive)."""
    return code.strip().upper()


def status_at(row: Mapping[str, Any], now: datetime) -> str:
    """Return ``scheduled``, ``active``, ``expired`` or ``deleted`` for ``row`` at ``now``."""
    if row.get("deleted"):
        return "deleted"
    if now < datetime.fromisoformat(row["starts_at"]):
        return "scheduled"
    if row.get("ends_at") and now >= datetime.fromisoformat(row["ends_at"]):
        return "expired"
    return "active"


def discount_for(row: Mapping[str, Any] | None, lines: Iterable[tuple[str, int, int]],
                 user_id: str, now: datetime) -> int:
    """Return the discount in cents ``row`` gives these lines (category, quantity, unit price).

    Raise :class:`PromotionError` saying why the code cannot be used now.
    """
    if row is None or row.get("deleted"):
        raise PromotionError("unknown promotion code")
    code = row["code"]
    status = status_at(row, now)
    if status == "scheduled":
        raise PromotionError(f"promotion {code} is not active yet (it starts at "
                             f"{row['starts_at']})")
    if status == "expired":
        raise PromotionError(f"promotion {code} has expired (it ended at {row['ends_at']})")
    categories = set(row.get("categories") or ())
    applicable = sum(qty * price for category, qty, price in lines
                     if not categories or category in categories)
    if applicable == 0:
        raise PromotionError(f"promotion {code} does not apply to these products (only "
                             f"{', '.join(sorted(categories))})")
    if applicable < row["min_order_cents"]:
        raise PromotionError(f"promotion {code} needs {row['min_order_cents']} cents of "
                             f"eligible products; the order has {applicable}")
    refusal = _limit_refusal(row, user_id)
    if refusal:
        raise PromotionError(refusal)
    if row["kind"] == "percent":
        return applicable * row["value"] // 100
    return min(row["value"], applicable)


def _limit_refusal(row: Mapping[str, Any], user_id: str) -> str | None:
    code = row["code"]
    limit = row.get("usage_limit")
    if limit is not None and row.get("used", 0) >= limit:
        return f"promotion {code} is used up ({limit} redemptions)"
    per_customer = row.get("per_customer_limit")
    if per_customer is not None and row.get("by_user", {}).get(user_id, 0) >= per_customer:
        return f"promotion {code} was already used {per_customer} time(s) by this customer"
    return None


def apply_saved(row: Mapping[str, Any] | None, event: PromotionSaved) -> dict[str, Any]:
    """Return the promotion row after an admin saved its definition (counters are kept)."""
    kept = dict(row or {"used": 0, "by_user": {}, "orders": {}, "status": "",
                        "created_at": event.occurred_at.isoformat()})
    kept.update(code=event.code, kind=event.kind, value=event.value,
                min_order_cents=event.min_order_cents, starts_at=event.starts_at,
                ends_at=event.ends_at, usage_limit=event.usage_limit,
                per_customer_limit=event.per_customer_limit,
                categories=list(event.categories), deleted=False,
                updated_at=event.occurred_at.isoformat())
    return kept


@dataclass(frozen=True, slots=True)
class Redemption:
    """The promotion row after a redeem or a return, and the answer (None: nothing new)."""

    row: dict[str, Any] | None
    answer: Event | None
    redeemed: bool = False


def apply_redeem(row: Mapping[str, Any] | None, event: RedeemPromotion) -> Redemption:
    """Count the order's redemption if the code allows it; answer either way.

    Idempotent by state: an order already holding a redemption is answered "redeemed" again.
    The window is checked at the time the order was placed.
    """
    def refuse(reason: str) -> Redemption:
        return Redemption(dict(row) if row else None, PromotionRefused.new(
            code=event.code, order_id=event.order_id, reason=reason,
            correlation_id=event.order_id))

    if row is None or row.get("deleted"):
        return refuse("unknown promotion code")
    if event.order_id in row.get("orders", {}):
        return Redemption(dict(row), PromotionRedeemed.new(
            code=event.code, order_id=event.order_id, correlation_id=event.order_id))
    if event.order_id in row.get("returned", {}):
        # Asked again (a chase, a replay) after the ended order gave its redemption back.
        return refuse("the order gave its redemption of this code back")
    placed = datetime.fromisoformat(event.placed_at)
    status = status_at(row, placed)
    if status != "active":
        return refuse(f"promotion {row['code']} was not active when the order was placed")
    refusal = _limit_refusal(row, event.user_id)
    if refusal:
        return refuse(refusal)
    by_user = dict(row.get("by_user", {}))
    by_user[event.user_id] = by_user.get(event.user_id, 0) + 1
    orders = {**row.get("orders", {}), event.order_id: event.user_id}
    redeemed = {**row, "used": row.get("used", 0) + 1, "by_user": by_user, "orders": orders}
    return Redemption(redeemed, PromotionRedeemed.new(
        code=event.code, order_id=event.order_id, correlation_id=event.order_id),
        redeemed=True)


def apply_return(row: Mapping[str, Any] | None, event: ReturnRedemption) -> Redemption:
    """Give back the order's redemption, if it holds one (idempotent by state).

    The order is remembered as returned: a redemption asked for again afterwards is refused,
    so it never counts against the limit twice.
    """
    if row is None or event.order_id not in row.get("orders", {}):
        return Redemption(dict(row) if row else None, None)
    orders = dict(row["orders"])
    user_id = orders.pop(event.order_id)
    by_user = dict(row.get("by_user", {}))
    by_user[user_id] = max(0, by_user.get(user_id, 0) - 1)
    if not by_user[user_id]:
        del by_user[user_id]
    returned = {**row.get("returned", {}), event.order_id: user_id}
    return Redemption({**row, "used": max(0, row.get("used", 0) - 1), "by_user": by_user,
                       "orders": orders, "returned": returned}, None)


PUBLIC_FIELDS = ("code", "kind", "value", "min_order_cents", "starts_at", "ends_at",
                 "usage_limit", "per_customer_limit", "categories")


def public_promotion(row: Mapping[str, Any], now: datetime, *,
                     admin: bool = False) -> dict[str, Any]:
    """Return a promotion as the API shows it (admins also see its counters)."""
    shown = {k: row.get(k) for k in PUBLIC_FIELDS}
    shown["status"] = status_at(row, now)
    if admin:
        shown["used"] = row.get("used", 0)
    return shown
