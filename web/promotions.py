"""Promotions HTTP: anyone lists the active codes; admins create, change and delete them.

Changes go to the one-partition ``promotions`` topic, whose agent is the single writer of the
global table every worker reads. An admin's change answers once every worker's copy shows it
(201/200), or 202 with a ``Shop-Position`` token if that takes longer than SHOP_WRITE_WAIT_S
(web/positions.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from faust.web import Request, Response
from pydantic import AwareDatetime, BaseModel, Field, ValidationError, model_validator

from agents.topics import promotions_topic
from app import app
from models.base import Event, utcnow
from models.positions import Written
from models.promotions import (
    PromotionDeleted,
    PromotionSaved,
    normalise_code,
    public_promotion,
    status_at,
)
from tables.promotions import promotions
from web.bodies import Unprocessable, read_body, read_query
from web.errors import Conflict, NotFound
from web.identity import Identity, identity, require
from web.openapi import WRITE_ACCEPTED, endpoint
from web.positions import accepted, visible, written
from web.views import ShopView

__all__ = ["PromotionIn", "PromotionOut", "PromotionPatch"]

CODE = r"^[A-Za-z0-9_-]{3,32}$"
CATEGORY = r"^[a-z0-9-]{1,64}$"



class PromotionRules(BaseModel):
    """What a promotion gives and when: the fields an admin sets."""

    kind: Literal["percent", "fixed"]
    value: int = Field(ge=1, le=100_000_000,
                       description="percent (1-100) or cents off, by kind")
    min_order_cents: int = Field(default=0, ge=0, le=100_000_000)
    starts_at: AwareDatetime | None = Field(default=None, description="default: now")
    ends_at: AwareDatetime | None = None
    usage_limit: int | None = Field(default=None, ge=1, le=100_000_000)
    per_customer_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    categories: list[str] = Field(default_factory=list, max_length=50,
                                  description="empty: every category")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.kind == "percent" and self.value > 100:
            raise ValueError("a percent promotion's value is from 1 to 100")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        for category in self.categories:
            if not 1 <= len(category) <= 64 or not category.replace("-", "").isalnum():
                raise ValueError(f"categories are lowercase names like 'books', not {category!r}")
        return self


class PromotionIn(PromotionRules):
    """A new promotion code."""

    code: str = Field(pattern=CODE, description="case-insensitive; stored upper-case")


class PromotionPatch(BaseModel):
    """Fields of a promotion to change (the others are kept)."""

    kind: Literal["percent", "fixed"] | None = None
    value: int | None = Field(default=None, ge=1, le=100_000_000)
    min_order_cents: int | None = Field(default=None, ge=0, le=100_000_000)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    usage_limit: int | None = Field(default=None, ge=1, le=100_000_000)
    per_customer_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    categories: list[str] | None = Field(default=None, max_length=50)


class PromotionOut(BaseModel):
    """A promotion as the API shows it (``used``: admins only)."""

    code: str
    kind: str
    value: int
    min_order_cents: int
    starts_at: str
    ends_at: str | None = None
    usage_limit: int | None = None
    per_customer_limit: int | None = None
    categories: list[str]
    status: Literal["scheduled", "active", "expired", "deleted"]
    used: int | None = None


class PromotionList(BaseModel):
    """The promotions the caller may see."""

    items: list[PromotionOut]


class PromotionGone(BaseModel):
    """A deleted promotion."""

    code: str
    deleted: Literal[True]


class ListQuery(BaseModel):
    """Admins may list scheduled and expired codes too."""

    status: Literal["scheduled", "active", "expired"] | None = None


def _visible(caller: Identity | None, row: dict[str, Any] | None, now: datetime) -> bool:
    if row is None or row.get("deleted"):
        return False
    return bool(caller and caller.is_admin) or status_at(row, now) == "active"


async def _save(event: Event) -> Written | None:
    """Send ``event``; return None once every worker's table shows it (or a later change of
    the code), or where it landed if that took longer than SHOP_WRITE_WAIT_S."""
    sent = written(await (await promotions_topic.send(key=event.code, value=event.dumps())))
    return None if await visible(app, [sent]) else sent


def _saved_event(code: str, rules: dict[str, Any], *, created: bool) -> PromotionSaved:
    starts = rules.get("starts_at") or utcnow()
    ends = rules.get("ends_at")
    return PromotionSaved.new(
        code=code, kind=rules["kind"], value=rules["value"],
        min_order_cents=rules["min_order_cents"],
        starts_at=_iso(starts), ends_at=_iso(ends) if ends else None,
        usage_limit=rules["usage_limit"], per_customer_limit=rules["per_customer_limit"],
        categories=sorted(set(rules["categories"])), created=created, correlation_id=code)


def _iso(at: datetime | str) -> str:
    """Return ``at`` as the table keeps times: ISO 8601 in UTC (so strings compare)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.astimezone(utcnow().tzinfo).isoformat()


@endpoint("GET", "/api/promotions", query=ListQuery, response=PromotionList,
          summary="List the active promotions (anyone; admins see every code and its use).")
@endpoint("POST", "/api/promotions", body=PromotionIn, roles=("admin",), status=201,
          response=PromotionOut, errors=(409,), summary="Create a promotion code (admin).",
          also=WRITE_ACCEPTED)
class PromotionsView(ShopView):
    """The promotions: active codes for anyone (admins: all), create (admin)."""

    async def get(self, request: Request) -> Response:
        caller = identity(request)
        query = read_query(request, ListQuery)
        now = utcnow()
        admin = bool(caller and caller.is_admin)
        items = [public_promotion(row, now, admin=admin) for row in promotions.values()
                 if _visible(caller, row, now)]
        if query.status:
            items = [item for item in items if item["status"] == query.status]
        return self.json({"items": sorted(items, key=lambda item: item["code"])})

    async def post(self, request: Request) -> Response:
        require(request, "admin")
        body = await read_body(request, PromotionIn)
        code = normalise_code(body.code)
        existing = promotions.get(code)
        if existing is not None and not existing.get("deleted"):
            raise Conflict(f"promotion {code} exists; PATCH /api/promotions/{code}")
        saved = _saved_event(code, body.model_dump(), created=True)
        pending = await _save(saved)
        location = f"/api/promotions/{code}"
        if pending:
            return accepted(self, public_promotion(_row_of(saved), utcnow(), admin=True),
                            location, [pending])
        row = promotions.get(code) or _row_of(saved)
        return self.json(public_promotion(row, utcnow(), admin=True), status=201,
                         headers={"Location": location})


@endpoint("GET", "/api/promotions/{code}", response=PromotionOut,
          summary="Read a promotion (anyone while it is active; admins: any).")
@endpoint("PATCH", "/api/promotions/{code}", body=PromotionPatch, roles=("admin",),
          response=PromotionOut, summary="Change a promotion (admin).",
          also=WRITE_ACCEPTED)
@endpoint("DELETE", "/api/promotions/{code}", roles=("admin",), response=PromotionGone,
          summary="Delete a promotion: it can no longer be redeemed (admin).",
          also=WRITE_ACCEPTED)
class PromotionView(ShopView):
    """One promotion: read (anyone, if active; admins: any), change and delete (admin)."""

    async def get(self, request: Request, code: str) -> Response:
        caller = identity(request)
        row = promotions.get(normalise_code(code))
        now = utcnow()
        if row is None or not _visible(caller, row, now):
            raise NotFound(f"no promotion {code!r}")
        return self.json(public_promotion(row, now, admin=bool(caller and caller.is_admin)))

    async def patch(self, request: Request, code: str) -> Response:
        require(request, "admin")
        code = normalise_code(code)
        row = promotions.get(code)
        if row is None or row.get("deleted"):
            raise NotFound(f"no promotion {code!r}")
        patch = await read_body(request, PromotionPatch)
        merged = {**row, **patch.model_dump(exclude_none=True)}
        try:
            PromotionRules.model_validate({k: merged[k] for k in PromotionRules.model_fields})
        except ValidationError as exc:
            raise Unprocessable("the promotion would not be valid after this change",
                                details=[{"field": ".".join(map(str, e["loc"])) or "body",
                                          "problem": e["msg"]} for e in exc.errors()]) from None
        saved = _saved_event(code, merged, created=False)
        pending = await _save(saved)
        now = utcnow()
        if pending:
            return accepted(self, public_promotion(_row_of(saved), now, admin=True),
                            f"/api/promotions/{code}", [pending])
        return self.json(public_promotion(promotions.get(code) or row, now, admin=True))

    async def delete(self, request: Request, code: str) -> Response:
        require(request, "admin")
        code = normalise_code(code)
        row = promotions.get(code)
        if row is None or row.get("deleted"):
            raise NotFound(f"no promotion {code!r}")
        deleted = PromotionDeleted.new(code=code, correlation_id=code)
        pending = await _save(deleted)
        if pending:
            return accepted(self, {"code": code, "deleted": True}, f"/api/promotions/{code}",
                            [pending])
        return self.json({"code": code, "deleted": True})


def _row_of(saved: PromotionSaved) -> dict[str, Any]:
    """Return the row ``saved`` will make (for a 202, before the table shows it)."""
    return {**saved.asdict(), "used": 0, "deleted": False}

