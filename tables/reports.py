"""Reports tables: sales counted per orders partition and day, and the reports made from them."""

from __future__ import annotations

from app import app

__all__ = ["reports", "sales", "sales_partials"]

#: "<day>/<partition>" -> {statuses: {status: {orders, cents}}, units: {sku: n}, _applied}.
#: Written only while processing that orders partition's events (the replay guard's rule),
#: so its changelog partition is the orders partition it counts.
sales_partials = app.Table("sales-partials", key_type=str,
                           help="Each orders partition's running count of a day's sales.")

#: "sales:<day>" -> {day, partitions: {p: newest count}}; "report:<day>" -> the daily report;
#: "popular" -> {as_of, days, generated_at, items: [{sku, units}]}. Read and written by the
#: one agent of the one-partition sales topic only.
sales = app.Table("sales", key_type=str, partitions=1,
                  help="Daily sales totals, daily reports and popular products (the writer's).")

#: The same rows without bookkeeping, on every worker, for the views. A copy, never read to
#: update: a global table re-applies its changelog on the writer too, so a read-modify-write
#: of it can start from an older row (see docs/services.md, "Promotions").
reports = app.GlobalTable("reports", key_type=str, partitions=1, recovery_buffer_size=1,
                          help="A copy of the sales table on every worker, for reading.")
