"""Notifications HTTP: the caller's notifications, marking one read, and mail preferences.

A user's row lives on the worker that owns their key, so every read is answered there
(``router.on_owner``, as the per-customer order list is). Changes go through the
``notifications`` topic, whose agent is the row's single writer. Admins also see the admins'
alerts row (key ``admins``), read from the worker that owns that key.
"""

from __future__ import annotations

from typing import Any, Literal

from faust.web import Request, Response
from pydantic import BaseModel, Field, StrictBool

from agents.topics import notifications_topic
from app import app
from models.inbox import preferences, public_item
from models.notifications import NotificationRead, PreferencesSet
from tables.notifications import inboxes
from web.bodies import read_body, read_query
from web.errors import NotFound
from web.identity import Forbidden, require
from web.middleware import forwarding_headers
from web.openapi import WRITE_ACCEPTED, endpoint
from web.positions import accepted, visible, written
from web.routing import on_owner, owner_url
from web.views import ShopView

__all__ = ["NotificationOut", "NotificationPage", "PreferencesIn", "admin_alerts"]

ADMINS = "admins"


class NotificationOut(BaseModel):
    """One notification (``seq`` is its number in the user's stream: the SSE event id)."""

    id: str
    seq: int
    kind: str
    title: str
    body: str
    link: str
    created_at: str
    read: bool


class AlertsOut(BaseModel):
    """The admins' alerts (ERROR log records), newest first."""

    items: list[NotificationOut]
    unread: int


class NotificationPage(BaseModel):
    """The caller's notifications, newest first, with the unread count (admins: alerts too)."""

    items: list[NotificationOut]
    unread: int
    total: int
    alerts: AlertsOut | None = None


class ListQuery(BaseModel):
    """How many notifications; ``scope=admins`` (admins only) reads the admins' alerts."""

    limit: int = Field(default=50, ge=1, le=200)
    unread_only: bool = False
    scope: Literal["mine", "admins"] = "mine"


class PreferencesIn(BaseModel):
    """Which optional mail the user gets (receipts always go out)."""

    marketing: StrictBool
    digest: StrictBool


class PreferencesOut(PreferencesIn):
    """The user's mail preferences."""


class ReadOut(BaseModel):
    """The notification is being marked read (by the user's row's writer)."""

    id: str
    read: bool


def listing(row: dict[str, Any] | None, query: ListQuery) -> dict[str, Any]:
    """Return the page of ``row``'s notifications ``query`` asks for, newest first."""
    items = list(reversed((row or {}).get("items", [])))
    if query.unread_only:
        items = [item for item in items if not item["read"]]
    return {"items": [public_item(item) for item in items[:query.limit]],
            "unread": int((row or {}).get("unread", 0)), "total": len(items)}


async def admin_alerts(request: Request, limit: int) -> dict[str, Any] | None:
    """Return the admins' alerts as the worker that owns them has them (None: unreachable)."""
    owner = await owner_url(inboxes.name, ADMINS)
    if owner is None:
        page = listing(inboxes.get(ADMINS), ListQuery(limit=limit))
        return {"items": page["items"], "unread": page["unread"]}
    headers = {k: v for k, v in request.headers.items()
               if k.lower().startswith("x-") or k.lower() == "authorization"}
    headers.update(forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret))
    url = f"{str(owner).rstrip('/')}/api/notifications?scope=admins&limit={limit}"
    try:
        async with app.http_client.get(url, headers=headers) as answer:
            if answer.status != 200:
                return None
            page = await answer.json()
    except Exception:  # the owner is being reassigned: list the caller's own without alerts
        return None
    return {"items": page["items"], "unread": page["unread"]}


@endpoint("GET", "/api/notifications", query=ListQuery, roles=(), response=NotificationPage,
          errors=(503,), summary="The caller's notifications, newest first, and the unread "
                                 "count (admins also get the admins' alerts).")
class NotificationsView(ShopView):
    """The caller's notifications (GET)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)
        query = read_query(request, ListQuery)
        if query.scope == ADMINS:
            if not caller.is_admin:
                raise Forbidden("only admins may read the admins' alerts")

            async def alerts() -> Response:
                return self.json(listing(inboxes.get(ADMINS), query))

            return await on_owner(inboxes.name, ADMINS, request, alerts)

        async def local() -> Response:
            page = listing(inboxes.get(caller.user_id), query)
            if caller.is_admin:
                page["alerts"] = await admin_alerts(request, query.limit)
            return self.json(page)

        return await on_owner(inboxes.name, caller.user_id, request, local)


@endpoint("POST", "/api/notifications/{notification_id}/read", roles=(),
          response=ReadOut, errors=(404, 503), also=WRITE_ACCEPTED,
          summary="Mark one of the caller's notifications as read.")
class ReadView(ShopView):
    """Mark one of the caller's notifications read (through the row's single writer)."""

    async def post(self, request: Request, notification_id: str) -> Response:
        caller = require(request)

        async def local() -> Response:
            items = (inboxes.get(caller.user_id) or {}).get("items", [])
            if not any(item["id"] == notification_id for item in items):
                raise NotFound(f"no notification {notification_id!r}")
            read = NotificationRead.new(user_id=caller.user_id, notification_id=notification_id,
                                        correlation_id=notification_id)
            sent = written(await (await notifications_topic.send(key=caller.user_id,
                                                                  value=read.dumps())))
            if not await visible(app, [sent]):
                return accepted(self, {"id": notification_id, "read": True},
                                "/api/notifications", [sent])
            items = (inboxes.get(caller.user_id) or {}).get("items", [])
            done = next((item for item in items if item["id"] == notification_id), None)
            return self.json({"id": notification_id, "read": bool(done and done.get("read"))})

        return await on_owner(inboxes.name, caller.user_id, request, local)


@endpoint("GET", "/api/notifications/preferences", roles=(), response=PreferencesOut,
          errors=(503,), summary="The caller's mail preferences.")
@endpoint("PUT", "/api/notifications/preferences", roles=(), body=PreferencesIn,
          response=PreferencesOut, errors=(503,), also=WRITE_ACCEPTED,
          summary="Choose which optional mail the caller gets (promotions, weekly digest).")
class PreferencesView(ShopView):
    """The caller's mail preferences: read them (GET) or choose them (PUT)."""

    async def get(self, request: Request) -> Response:
        caller = require(request)

        async def local() -> Response:
            return self.json(preferences(inboxes.get(caller.user_id)))

        return await on_owner(inboxes.name, caller.user_id, request, local)

    async def put(self, request: Request) -> Response:
        caller = require(request)
        body = await read_body(request, PreferencesIn)
        chosen = PreferencesSet.new(user_id=caller.user_id, marketing=body.marketing,
                                    digest=body.digest, correlation_id=caller.user_id)

        async def local() -> Response:
            sent = written(await (await notifications_topic.send(key=caller.user_id,
                                                                  value=chosen.dumps())))
            if not await visible(app, [sent]):
                return accepted(self, body.model_dump(), "/api/notifications/preferences",
                                [sent])
            return self.json(preferences(inboxes.get(caller.user_id)))

        return await on_owner(inboxes.name, caller.user_id, request, local)
