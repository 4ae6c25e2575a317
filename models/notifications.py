"""Notifications: who gets what for each source event, as pure functions.

``notices_for(event)`` turns one source event (a registration, an order notice, a support
change) into the notifications it causes, each an ``Effect`` on the ``notifications`` topic
keyed by the user it is for. A notification's id derives from the source event's id and its
kind (:func:`notification_id`), so a source event delivered twice notifies once: the user's
row (models/inbox.py) keeps the ids it has seen.

Channels: every notification is real time (the user's row, then their SSE streams); some
also go out as mail through RabbitMQ: a receipt when an order is confirmed (transactional,
always), promotions and the weekly digest (marketing, only for users who have not opted out).
"""

from __future__ import annotations

import uuid
from typing import Any

from models.base import Effect, Event, event_types
from models.orders import OrderUpdate
from models.support import STAFF, TicketChanged
from models.users import ProfileUpdated, UserRegistered

__all__ = [
    "INBOX_EVENTS",
    "MARKETING_MAIL",
    "ORDER_KINDS",
    "RECEIPT_KINDS",
    "AdminAlert",
    "ContactChanged",
    "DigestBroadcast",
    "NotificationRead",
    "Notify",
    "PreferencesSet",
    "PromotionBroadcast",
    "notices_for",
    "notification_id",
]

#: Namespace of notification ids (uuid5 of "<source event id>:<kind>").
NOTIFICATION_IDS = uuid.UUID("4b3b8f0c-9d0e-4f38-8a43-2f7f5c1de6a9")

#: Order statuses that notify the customer (``order_<status>`` notices).
ORDER_KINDS = frozenset({"confirmed", "shipped", "delivered", "cancelled", "rejected",
                         "payment_failed", "expired"})
#: Notification kinds that also send a receipt mail (transactional: preferences do not apply).
RECEIPT_KINDS = frozenset({"order_confirmed"})
#: Mail kinds a user may opt out of, and the preference that governs each.
MARKETING_MAIL = {"promotion": "marketing", "digest": "digest"}


def notification_id(source_event_id: str, kind: str) -> str:
    """Return the id of the ``kind`` notification caused by event ``source_event_id``."""
    return uuid.uuid5(NOTIFICATION_IDS, f"{source_event_id}:{kind}").hex


class Notify(Event):
    """Notify ``user_id`` (on the notifications topic, keyed by the user)."""

    event_type = "notify"
    notification_id: str
    user_id: str
    kind: str
    title: str
    body: str
    link: str
    created_at: str
    #: The user's address and name when the source event carries them (registration).
    email: str = ""
    name: str = ""


class AdminAlert(Event):
    """An ERROR log record for the admins (rabbit_bridge/central_logs.py, keyed "admins")."""

    event_type = "admin_alert"
    user_id: str
    level: str | None = None
    service: str | None = None
    message: str | None = None
    logged_at: str | None = None
    worker: str | None = None


class ContactChanged(Event):
    """The user's name (and e-mail, when it changes) for their notifications row."""

    event_type = "contact_changed"
    user_id: str
    name: str
    email: str = ""


class NotificationRead(Event):
    """The user marked one of their notifications as read."""

    event_type = "notification_read"
    user_id: str
    notification_id: str


class PreferencesSet(Event):
    """The user chose which optional mail they get."""

    event_type = "preferences_set"
    user_id: str
    marketing: bool
    digest: bool


class PromotionBroadcast(Event):
    """A promotion went live: mail the opted-in users of ``partition`` (one per partition)."""

    event_type = "promotion_broadcast"
    partition: int
    code: str
    title: str
    body: str
    source_id: str


class DigestBroadcast(Event):
    """Time for the weekly digest: mail the opted-in users of ``partition``."""

    event_type = "digest_broadcast"
    partition: int
    week: str


#: Events on the notifications topic, by type.
INBOX_EVENTS = event_types(Notify, AdminAlert, ContactChanged, NotificationRead, PreferencesSet,
                           PromotionBroadcast, DigestBroadcast)

_ORDER_TEXT = {
    "confirmed": ("Order confirmed", "Your order {short} is confirmed and paid ({total})."),
    "shipped": ("Order shipped", "Your order {short} is on its way."),
    "delivered": ("Order delivered", "Your order {short} was delivered."),
    "cancelled": ("Order cancelled", "Your order {short} was cancelled{reason}."),
    "rejected": ("Order rejected", "We could not take your order {short}{reason}."),
    "payment_failed": ("Payment failed", "The payment for your order {short} failed{reason}."),
    "expired": ("Order expired", "Your order {short} expired before it was paid."),
}


def notices_for(event: Event) -> list[Effect]:
    """Return the notifications (and row changes) ``event`` causes, keyed by user."""
    if isinstance(event, UserRegistered):
        return [_notify(event, event.user_id, "welcome", f"Welcome, {event.name}!",
                        "Your ShopStream account is ready. Happy shopping!", "/",
                        email=event.email, name=event.name)]
    if isinstance(event, ProfileUpdated):
        changed = ContactChanged(type=ContactChanged.event_type,
                                 event_id=f"{event.event_id}-contact",
                                 occurred_at=event.occurred_at,
                                 correlation_id=event.correlation_id,
                                 user_id=event.user_id, name=event.name)
        return [Effect("notifications", event.user_id, changed)]
    if isinstance(event, OrderUpdate):
        return _order_notice(event)
    if isinstance(event, TicketChanged):
        return _ticket_notice(event)
    return []


def _order_notice(event: OrderUpdate) -> list[Effect]:
    if event.status not in ORDER_KINDS:
        return []
    title, text = _ORDER_TEXT[event.status]
    body = text.format(short=event.order_id[:8], total=_money(event.total_cents),
                       reason=f": {event.reason}" if event.reason else "")
    return [_notify(event, event.user_id, f"order_{event.status}", title, body,
                    f"/orders/{event.order_id}", order_id=event.order_id,
                    total_cents=event.total_cents)]


def _ticket_notice(event: TicketChanged) -> list[Effect]:
    link = f"/support/tickets/{event.ticket_id}"
    if (event.change == "commented" and event.actor_role in STAFF
            and event.actor_id != event.user_id):
        return [_notify(event, event.user_id, "ticket_answered", "Support answered",
                        f"Support answered your ticket \u201c{event.subject}\u201d.", link)]
    if event.change == "resolved":
        return [_notify(event, event.user_id, "ticket_resolved", "Ticket resolved",
                        f"Your ticket \u201c{event.subject}\u201d is resolved.", link)]
    return []


def _notify(source: Event, user_id: str, kind: str, title: str, body: str, link: str, *,
            email: str = "", name: str = "", **_: Any) -> Effect:
    """Return the ``Notify`` effect for ``user_id`` (its id derives from the source event)."""
    note = Notify(type=Notify.event_type, event_id=notification_id(source.event_id, kind),
                  occurred_at=source.occurred_at,
                  correlation_id=source.correlation_id or source.event_id,
                  notification_id=notification_id(source.event_id, kind), user_id=user_id,
                  kind=kind, title=title, body=body, link=link,
                  created_at=source.occurred_at.isoformat(), email=email, name=name)
    return Effect("notifications", user_id, note)


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d} EUR"
