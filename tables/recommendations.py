"""Recommendations tables: each user's recent behaviour, and the item model with its copy."""

from __future__ import annotations

from app import app

__all__ = ["POPULAR", "item_key", "item_model", "item_neighbours", "user_behaviour"]

#: The key of the popular list in the item tables (items are ``item:<sku>``).
POPULAR = "popular"

#: user id -> {user_id, recent: [[sku, weight]], purchased: [sku], _applied}
user_behaviour = app.Table("user-behaviour", key_type=str,
                           help="Each user's recent items and purchases, for recommendations.")

#: "item:<sku>" -> {sku, popularity, neighbours: {sku: weight}, _applied};
#: "popular" -> {items: {sku: popularity}, _applied}. One partition: read and written by the
#: one agent of the one-partition item-pairs topic only.
item_neighbours = app.Table("item-neighbours", key_type=str, partitions=1,
                            help="Item-to-item co-occurrence and popularity (the writer's).")

#: The same rows without bookkeeping, on every worker, for the views. A copy, never read to
#: update (a global table re-applies its changelog on the writer too).
item_model = app.GlobalTable("item-model", key_type=str, partitions=1, recovery_buffer_size=1,
                             help="A copy of the item model on every worker, for reading.")


def item_key(sku: str) -> str:
    """Return the key of ``sku``'s row in the item tables."""
    return f"item:{sku}"
