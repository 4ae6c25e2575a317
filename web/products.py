"""Catalog and inventory HTTP: listings for anyone, product and stock admin for admins."""

from __future__ import annotations

from typing import Any

from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.topics import catalog_topic, inventory_topic
from models.catalog import ProductSaved, choose_listing
from models.inventory import Restock, Stock
from models.positions import Written
from tables.catalog import catalog
from tables.inventory import stock
from web.bodies import read_body, read_query
from web.errors import Conflict, NotFound
from web.identity import require
from web.openapi import WRITE_ACCEPTED, endpoint
from web.positions import accepted, pending, visible, written
from web.routing import on_owner, route_to_owner
from web.views import ShopView

__all__ = ["InventoryOut", "ProductIn", "ProductOut", "ProductPage", "ProductPatch", "RestockIn",
           "RestockOut"]


# -- Answers -------------------------------------------------------------------------------


class ProductOut(BaseModel):
    """A product as the catalog shows it (``stock_level`` is the availability band)."""

    sku: str
    name: str | None = None
    description: str | None = None
    category: str | None = None
    price_cents: int | None = None
    image_url: str | None = None
    stock_level: str | None = None


class ProductPage(BaseModel):
    """A page of the catalog."""

    items: list[ProductOut]
    total: int
    page: int
    per_page: int


class InventoryOut(BaseModel):
    """The exact stock of a sku."""

    sku: str
    available: int
    reserved: int
    sold: int


class RestockOut(BaseModel):
    """A restock: the units added and the sku's stock once applied (none in a 202)."""

    sku: str
    quantity: int
    stock: InventoryOut | None = None

SKU = r"^[A-Z0-9][A-Z0-9-]{2,31}$"



class ProductIn(BaseModel):
    """A new product; ``initial_stock`` units are put on the shelf with it."""

    sku: str = Field(pattern=SKU)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")
    price_cents: int = Field(ge=0, le=100_000_000)
    image_url: str = Field(default="", max_length=500)
    initial_stock: int = Field(default=0, ge=0, le=10_000_000)


class ProductPatch(BaseModel):
    """Fields of a product to change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    category: str | None = Field(default=None, min_length=1, max_length=64,
                                 pattern=r"^[a-z0-9-]+$")
    price_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    image_url: str | None = Field(default=None, max_length=500)


class RestockIn(BaseModel):
    """Units to add to a sku's stock."""

    quantity: int = Field(gt=0, le=10_000_000)


class ListingQuery(BaseModel):
    """The filters of a listing."""

    category: str | None = Field(default=None, max_length=64)
    q: str | None = Field(default=None, max_length=200)
    page: int = Field(default=1, ge=1, le=10_000)
    per_page: int = Field(default=20, ge=1, le=100)


PRODUCT_FIELDS = ("sku", "name", "description", "category", "price_cents", "image_url",
                  "stock_level")


def public_product(row: dict[str, Any]) -> dict[str, Any]:
    """Return a catalog row as the API shows it."""
    return {k: row.get(k) for k in PRODUCT_FIELDS}


async def save_product(fields: dict[str, Any]) -> Written:
    """Send the product to the catalog topic (every worker's catalog follows); return where."""
    saved = ProductSaved.new(
        sku=fields["sku"], name=fields["name"], description=fields["description"],
        category=fields["category"], price_cents=fields["price_cents"],
        image_url=fields["image_url"])
    return written(await (await catalog_topic.send(key=saved.sku, value=saved.dumps())))


@endpoint("GET", "/api/products", query=ListingQuery, response=ProductPage,
          summary="List the catalog with availability (anyone).")
@endpoint("POST", "/api/products", body=ProductIn, roles=("admin",), status=201,
          response=ProductOut, errors=(409,), summary="Create a product (admin).",
          also=WRITE_ACCEPTED)
class ProductsView(ShopView):
    """The catalog: list (anyone) and create (admin)."""

    async def get(self, request: Request) -> Response:
        query = read_query(request, ListingQuery)
        listing = choose_listing(catalog.values(), category=query.category, q=query.q,
                                 page=query.page, per_page=query.per_page)
        return self.json({"items": [public_product(p) for p in listing.items],
                          "total": listing.total, "page": listing.page,
                          "per_page": listing.per_page})

    async def post(self, request: Request) -> Response:
        require(request, "admin")
        product = await read_body(request, ProductIn)
        if product.sku in catalog:
            raise Conflict(f"product {product.sku} exists; PATCH /api/products/{product.sku}")
        fields = product.model_dump()
        sent = [await save_product(fields)]
        if product.initial_stock:
            restock = Restock.new(sku=product.sku, quantity=product.initial_stock, initial=True)
            sent.append(written(await (await inventory_topic.send(key=product.sku,
                                                                  value=restock.dumps()))))
        location = f"/api/products/{product.sku}"
        later = await pending(self.app, sent)  # the stock: its level in the catalog too
        row = None if later else catalog.get(product.sku)
        if row is None:
            return accepted(self, {**fields, "stock_level": None}, location, later or sent)
        return self.json(public_product(row), status=201, headers={"Location": location})


@endpoint("GET", "/api/products/{sku}", response=ProductOut,
          summary="Read one product (anyone).")
@endpoint("PATCH", "/api/products/{sku}", body=ProductPatch, roles=("admin",),
          response=ProductOut, summary="Change a product (admin).", also=WRITE_ACCEPTED)
class ProductView(ShopView):
    """One product: read (anyone), change (admin)."""

    async def get(self, request: Request, sku: str) -> Response:
        row = catalog.get(sku)
        if row is None or "name" not in row:
            raise NotFound(f"no product {sku!r}")
        return self.json(public_product(row))

    async def patch(self, request: Request, sku: str) -> Response:
        require(request, "admin")
        row = catalog.get(sku)
        if row is None or "name" not in row:
            raise NotFound(f"no product {sku!r}")
        patch = await read_body(request, ProductPatch)
        fields = {**row, **patch.model_dump(exclude_none=True)}
        sent = await save_product(fields)
        if not await visible(self.app, [sent]):
            return accepted(self, public_product(fields), f"/api/products/{sku}", [sent])
        return self.json(public_product(catalog.get(sku) or fields))


@endpoint("POST", "/api/inventory/{sku}/restock", body=RestockIn, roles=("admin",),
          response=RestockOut, errors=(503,), also=WRITE_ACCEPTED)
class RestockView(ShopView):
    """Add stock to a sku (admin)."""

    async def post(self, request: Request, sku: str) -> Response:
        require(request, "admin")
        body = await read_body(request, RestockIn)
        if sku not in catalog:
            raise NotFound(f"no product {sku!r}")

        async def local() -> Response:
            restock = Restock.new(sku=sku, quantity=body.quantity)
            sent = written(await (await inventory_topic.send(key=sku, value=restock.dumps())))
            answer = {"sku": sku, "quantity": body.quantity}
            # The stock, and its level in every worker's catalog, one hop later.
            later = await pending(self.app, [sent])
            row = None if later else stock.get(sku)
            if row is None:
                return accepted(self, answer, f"/api/inventory/{sku}", later or [sent])
            return self.json({**answer, "stock": Stock.from_row(sku, row).public()})

        return await on_owner(stock.name, sku, request, local)


@endpoint("GET", "/api/inventory/{sku}", roles=("admin",), response=InventoryOut,
          errors=(503,))
class InventoryView(ShopView):
    """The exact stock of a sku (admin), from the worker that owns it."""

    @route_to_owner(stock, match_info="sku")
    async def get(self, request: Request, sku: str) -> Response:
        require(request, "admin")
        row = stock.get(sku)
        if row is None:
            raise NotFound(f"no stock for {sku!r}")
        return self.json(Stock.from_row(sku, row).public())
