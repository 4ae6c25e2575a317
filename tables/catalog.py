"""The catalog: every product, on every worker (a global table fed by the catalog topic)."""

from __future__ import annotations

from app import app

__all__ = ["catalog"]

#: sku -> {sku, name, description, category, price_cents, image_url, stock_level, available}
#: One partition, as Faust advises for global tables shared by several workers.
catalog = app.GlobalTable(
    "catalog",
    key_type=str,
    partitions=1,
    recovery_buffer_size=1,
    help="Every product with its stock level, replicated to every worker.",
)
