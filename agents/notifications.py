"""Notifications agents: decide who gets what, then keep each user's row and send the mail.

Source events are keyed by other ids (user, order, ticket), so deciding is one hop and
keeping the row another, like the per-customer order index:

- ``notifications.sources`` consumes ``users`` (registrations, profile changes),
  :func:`forward_order_notices` the ``order_<status>`` notices (agents/order_notices.py) and
  ``notifications.support`` the one-partition ``support-feed`` (staff answers,
  resolutions). All are stateless: the rules (models/notifications.py) give every
  notification an id derived from its source event, and forward it to the
  ``notifications`` topic keyed by the user.
- ``notifications.inbox`` consumes ``notifications`` [user id, or "admins"]; it is the single
  writer of each user's row (models/inbox.py) through the replay guard, skips a notification
  id it has seen, wakes the user's SSE streams on this worker and publishes the mail the row
  decided (receipts) to RabbitMQ ``shop.notifications`` with the mail's id as message id.

Promotion and digest mail are broadcasts: one event to every partition of ``notifications``
(:func:`request_broadcast`); each partition's owner mails the opted-in users whose rows live in
that partition (rows keep their partition, so a worker owning several does each user once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import faust
from faust.types import StreamT

from agents.batches import Decoded
from agents.dead_letters import for_each_event
from agents.order_notices import Failures, each_notice, reads_order_notices
from agents.sending import send_all, to_rabbit
from agents.support import support_feed_topic
from agents.topics import ensure_declared, notifications_topic, users_topic
from app import app
from models.base import Event, utcnow
from models.inbox import (
    Mail,
    digest_mail,
    mark_read,
    promotion_mail,
    receive,
    receive_alert,
    set_contact,
    set_preferences,
)
from models.notifications import (
    INBOX_EVENTS,
    AdminAlert,
    ContactChanged,
    DigestBroadcast,
    NotificationRead,
    Notify,
    PreferencesSet,
    PromotionBroadcast,
    notices_for,
)
from models.orders import OrderUpdate
from models.support import TicketChanged
from models.support_board import SlaBreached
from models.users import USER_EVENTS, ProfileUpdated, UserRegistered
from rabbit_bridge.topology import NOTIFICATIONS_QUEUE
from tables.notifications import inbox_watchers, inboxes
from tables.replay import Position, Send, decide_once

__all__ = [
    "broadcast_promotion",
    "decide_notifications",
    "decide_support_notifications",
    "keep_inboxes",
    "request_broadcast",
    "send_admin_alert",
    "send_weekly_digest",
]

log = logging.getLogger(__name__)

#: What the sources agent decodes of the users topic: registrations and profile changes.
SOURCE_EVENTS = {
    UserRegistered.event_type: UserRegistered,
    ProfileUpdated.event_type: ProfileUpdated,
}
#: Types on the users topic that notify nobody (passed over undecoded).
NOT_NOTIFYING = frozenset(set(USER_EVENTS) - set(SOURCE_EVENTS))


async def forward_notices(event: Event, position: Position) -> None:
    """Send the notifications ``event`` causes to the notifications topic, keyed by user."""
    for effect in notices_for(event):
        await notifications_topic.send(key=effect.key, value=effect.event.dumps())


@reads_order_notices("notifications")
async def forward_order_notices(notices: Sequence[Decoded[OrderUpdate]]) -> Failures:
    """Send the notifications order notices cause (agents/order_notices.py)."""
    return await each_notice(notices, forward_notices, reader="notifications.orders")


@app.agent(users_topic, name="notifications.sources")
async def decide_notifications(stream: StreamT[bytes]) -> None:
    """Consume users events into notifications for their users."""
    await for_each_event(stream, SOURCE_EVENTS, forward_notices, agent="notifications.sources",
                         skip=NOT_NOTIFYING)


@app.agent(support_feed_topic, name="notifications.support")
async def decide_support_notifications(stream: StreamT[bytes]) -> None:
    """Consume ticket changes into notifications for the tickets' customers."""
    await for_each_event(stream, {TicketChanged.event_type: TicketChanged}, forward_notices,
                         agent="notifications.support",
                         skip=frozenset({SlaBreached.event_type}))


def _partition() -> int:
    """Return the partition of the event being processed (the row's partition)."""
    event = faust.current_event()
    return int(event.message.partition) if event is not None else -1


def _mail_sends(mails: list[Mail]) -> list[Send]:
    """Return ``mails`` as sends for shop.notifications (a row keeps them; see send_all)."""
    return [to_rabbit("", NOTIFICATIONS_QUEUE, mail.id, mail.as_message()) for mail in mails]


def _row_step(event: Event, partition: int) -> Any:
    """Return the step of the user's row for ``event`` (see tables.replay.decide_once)."""

    def step(row: dict[str, Any] | None) -> tuple[dict[str, Any] | None, list[Send]]:
        if isinstance(event, Notify):
            new, mails = receive(row, event, partition)
            return new, _mail_sends(mails)
        if isinstance(event, AdminAlert):
            return receive_alert(row, event, partition), []
        if isinstance(event, NotificationRead):
            return mark_read(row, event.user_id, event.notification_id, partition), []
        if isinstance(event, PreferencesSet):
            return set_preferences(row, event.user_id, event.marketing, event.digest,
                                   partition), []
        if isinstance(event, ContactChanged):
            return set_contact(row, event.user_id, event.name, event.email, partition), []
        return None, []

    return step


async def apply_inbox_event(event: Any, position: Position) -> None:
    """Apply one event to its user's row, once; publish its mail and wake the user's streams."""
    if isinstance(event, PromotionBroadcast | DigestBroadcast):
        mailed = await broadcast_mail(event)
        log.info("%s for partition %d: %d mails", event.type, event.partition, mailed)
        return
    user_id: str = event.user_id
    sends = decide_once(inboxes, user_id, position, _row_step(event, _partition()),
                        table_name="notifications")
    await send_all(sends)
    inbox_watchers.changed(user_id)


async def broadcast_mail(event: PromotionBroadcast | DigestBroadcast) -> int:
    """Mail the opted-in users whose rows live in the event's partition; return how many."""
    mails: list[Mail] = []
    for _, row in inboxes.items():
        if not isinstance(row, dict) or row.get("partition") != event.partition:
            continue
        mail = (promotion_mail(row, event) if isinstance(event, PromotionBroadcast)
                else digest_mail(row, event))
        if mail is not None:
            mails.append(mail)
    await send_all(_mail_sends(mails))
    return len(mails)


@app.agent(notifications_topic, name="notifications.inbox")
async def keep_inboxes(stream: StreamT[bytes]) -> None:
    """Consume the notifications topic into each user's row."""
    await for_each_event(stream, INBOX_EVENTS, apply_inbox_event, agent="notifications.inbox")


async def request_broadcast(make: Any, **fields: Any) -> int:
    """Send ``make(partition=p, **fields)`` to every partition of notifications; return count."""
    partitions = app.conf.topic_partitions
    source = fields.get("source_id") or fields.get("week") or ""
    for partition in range(partitions):
        broadcast = make(type=make.event_type, event_id=f"{make.event_type}:{source}:{partition}",
                         occurred_at=utcnow(), correlation_id=str(source),
                         partition=partition, **fields)
        await notifications_topic.send(key=f"broadcast-{partition}", partition=partition,
                                       value=broadcast.dumps())
    return partitions


async def broadcast_promotion(*, code: str, title: str, body: str, source_id: str) -> int:
    """Ask every partition to mail a promotion that opened (the promotion mail service's
    ``broadcast``, rabbit_bridge/mail.py); return how many partitions were asked."""
    return await request_broadcast(PromotionBroadcast, code=code, title=title, body=body,
                                   source_id=source_id)


async def send_admin_alert(alert: dict[str, Any]) -> None:
    """Put an ``admin_alert`` event (of an ERROR log record) on the notifications topic, keyed
    ``admins`` (the central logs' ``send_alert``, rabbit_bridge/central_logs.py)."""
    # The central logs consume before Faust creates the app's topics (seen: 'notifications'
    # auto-created with 4 partitions against its table's 8, every notification of that
    # worker dead-lettered).
    await ensure_declared(notifications_topic)
    await notifications_topic.send(key="admins", value=json.dumps(alert).encode())


@app.crontab("0 8 * * 1", timezone=UTC, on_leader=True)
async def send_weekly_digest() -> None:
    """Ask every partition to mail the weekly digest (Mondays 08:00 UTC, the leader only)."""
    year, week, _ = utcnow().isocalendar()
    await request_broadcast(DigestBroadcast, week=f"{year}-W{week:02d}")
