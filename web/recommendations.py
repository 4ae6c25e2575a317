"""Recommendations HTTP: items for a user, and the items seen with a product.

``GET /api/recommendations/{user_id}`` (self or admin) is answered by the worker that owns
the user's key (``app.table_route`` on ``user_behaviour``): it reads the user's recent items
and purchases there, and the neighbours of each recent item and the popular list from
``item_model``, the global copy of the item model that every worker holds (see
agents/recommendations.py). So one request is one local read of the user's row plus at most
``RECENT_LIMIT`` local reads of item rows, never a call to another worker for an item: the
simplest design that reads each table where it is complete. The price is that the item
model is written by one agent on one partition and copied to every worker; both are bounded
(``NEIGHBOUR_LIMIT`` neighbours an item, ``POPULAR_LIMIT`` popular items).

``GET /api/products/{sku}/similar`` (anyone) reads the item's row of the same copy.
"""

from __future__ import annotations

from faust.web import Request, Response
from pydantic import BaseModel, Field

from models.recommendations import recent_skus, recommend, similar
from tables.catalog import catalog
from tables.recommendations import POPULAR, item_key, item_model, user_behaviour
from web.bodies import read_query
from web.errors import NotFound
from web.identity import may_see, require
from web.openapi import endpoint
from web.routing import route_to_owner
from web.views import ShopView

__all__ = ["LimitQuery", "RecommendationsOut", "ScoredItem", "SimilarOut"]


class LimitQuery(BaseModel):
    """How many items to answer with."""

    limit: int = Field(default=10, ge=1, le=50)


class ScoredItem(BaseModel):
    """A recommended product and its score (higher is better)."""

    sku: str
    score: float


class RecommendationsOut(BaseModel):
    """Products for a user, best first."""

    user_id: str
    items: list[ScoredItem]


class SimilarOut(BaseModel):
    """Products seen together with a product, most often first."""

    sku: str
    items: list[ScoredItem]


def scored(items: list[tuple[str, float]]) -> list[dict[str, object]]:
    """Return (sku, score) pairs as the API shows them."""
    return [{"sku": sku, "score": score} for sku, score in items]


@endpoint("GET", "/api/recommendations/{user_id}", query=LimitQuery, roles=(),
          response=RecommendationsOut, errors=(404, 503),
          summary="Recommended products for a user (self or admin).")
class RecommendationsView(ShopView):
    """Recommended products for a user, never one they bought (self or admin)."""

    @route_to_owner(user_behaviour, match_info="user_id")
    async def get(self, request: Request, user_id: str) -> Response:
        caller = require(request)
        if not may_see(caller, user_id):
            raise NotFound(f"no recommendations for user {user_id!r}")
        limit = read_query(request, LimitQuery).limit
        behaviour = user_behaviour.get(user_id)
        neighbours = {sku: (item_model.get(item_key(sku)) or {}).get("neighbours", {})
                      for sku in recent_skus(behaviour)}
        popular = (item_model.get(POPULAR) or {}).get("items", {})
        items = recommend(behaviour, neighbours, popular, limit)
        return self.json({"user_id": user_id, "items": scored(items)})


@endpoint("GET", "/api/products/{sku}/similar", query=LimitQuery, response=SimilarOut,
          errors=(404,), summary="Products seen together with a product (anyone).")
class SimilarView(ShopView):
    """Products that the same users viewed, carted or bought with this one (anyone)."""

    async def get(self, request: Request, sku: str) -> Response:
        limit = read_query(request, LimitQuery).limit
        if sku not in catalog:
            raise NotFound(f"no product {sku!r}")
        items = similar(item_model.get(item_key(sku)), limit)
        return self.json({"sku": sku, "items": scored(items)})
