"""Promotions: the promotions agent's own rows, and every worker's copy of them.

``promotion_counters`` is the truth: a table of the one-partition ``promotions`` topic, read
and written only by the promotions agent on the worker that owns that partition, so each
redemption is counted against the row as the previous one left it. A global table is no place
for counting: every worker, the writer included, also applies the global table's changelog,
and an older record applied after a newer local write undoes it (a limited code would be
redeemed past its limit). ``promotions`` is that global copy, for reading anywhere: the order
API prices a code with it, the views list it.
"""

from __future__ import annotations

from app import app

__all__ = ["promotion_counters", "promotions"]

#: code -> {code, kind, value, min_order_cents, starts_at, ends_at, usage_limit,
#: per_customer_limit, categories, deleted, status, used, by_user, orders, _applied}
promotion_counters = app.Table(
    "promotion-counters",
    key_type=str,
    partitions=1,
    help="Every promotion with its redemption counters (the promotions agent's own rows).",
)

#: code -> the same row without its replay bookkeeping, plus ``revision``: the promotions topic
#: offset of its last change; on every worker (may lag a little).
promotions = app.GlobalTable(
    "promotions",
    key_type=str,
    partitions=1,
    recovery_buffer_size=1,
    help="Every promotion code with its counters, replicated to every worker for reading.",
)
