"""Catalog agent: keeps every worker's copy of the catalog (the global table) up to date."""

from __future__ import annotations

from faust.types import StreamT

from agents.dead_letters import for_each_event
from agents.topics import catalog_topic
from app import app
from models.catalog import CATALOG_EVENTS, ProductSaved, StockLevelChanged, apply_catalog_event
from tables.catalog import catalog
from tables.replay import Position, update_once

__all__ = ["maintain_catalog"]


async def apply_product_change(event: ProductSaved | StockLevelChanged,
                               position: Position) -> None:
    """Merge a product or a stock level into the catalog, once."""
    update_once(catalog, event.sku, position, lambda row: apply_catalog_event(row, event))


@app.agent(catalog_topic, name="catalog.products")
async def maintain_catalog(stream: StreamT[bytes]) -> None:
    """Consume the catalog topic into the catalog table."""
    await for_each_event(stream, CATALOG_EVENTS, apply_product_change, agent="catalog.products")
