"""Every Kafka topic of the shop, declared once (key in the comment).

Keys are strings serialized as raw UTF-8 bytes on every topic and every table, so that the
partition a producer picks, the partition a table row lives in and the worker that
``app.table_route`` sends a keyed read to are the same. Values are raw bytes: agents decode
them with :func:`agents.dead_letters.for_each_event`, which dead-letters what does not decode.
"""

from __future__ import annotations

import weakref
from typing import Any

from faust import Topic
from faust.types import TopicT
from faust.types.core import HeadersArg, OpenHeadersArg

from app import app
from models.tracing import REQUEST_ID, REQUEST_ID_HEADER

__all__ = [
    "TOPICS",
    "ShopTopic",
    "analytics_topic",
    "catalog_topic",
    "dead_letters_topic",
    "ensure_declared",
    "inventory_topic",
    "notifications_topic",
    "order_saga_topics",
    "orders_topic",
    "payments_topic",
    "promotions_topic",
    "recommendations_topic",
    "revocations_topic",
    "shop_topic",
    "support_topic",
    "user_emails_topic",
    "user_orders_topic",
    "users_topic",
]


class ShopTopic(Topic):
    """A topic whose messages carry the id of the request being handled, if any.

    Every send, by a view or by an agent, passes here (Faust prepares a message's headers
    before its key and value), so the header is added in this one place: the request id
    held in ``models.tracing.REQUEST_ID`` (by the gateway for an HTTP request, by
    ``for_each_event`` for an event that carried one) becomes the ``shop-request-id`` header.
    """

    def prepare_headers(self, headers: HeadersArg | None) -> OpenHeadersArg:
        """Return ``headers`` with the current request id added (when there is one)."""
        request_id = REQUEST_ID.get()
        if not request_id:
            return super().prepare_headers(headers)
        if headers is None:
            return [(REQUEST_ID_HEADER, request_id.encode())]
        prepared = super().prepare_headers(headers)
        if isinstance(prepared, list):
            prepared.append((REQUEST_ID_HEADER, request_id.encode()))
        elif prepared is not None:
            prepared.setdefault(REQUEST_ID_HEADER, request_id.encode())
        return prepared


def shop_topic(*names: str, **options: Any) -> TopicT:
    """Declare a topic with string keys and raw JSON values, created with SHOP_TOPIC_PARTITIONS.

    ``internal=True`` makes Faust create the topic at start with the configured partitions
    (instead of leaving it to the broker's auto-create and its own default), so every topic
    and table changelog of the shop is co-partitioned.
    """
    options.setdefault("partitions", app.conf.topic_partitions)
    return ShopTopic(
        app,
        topics=names,
        key_type=str,
        key_serializer="raw",
        value_type=bytes,
        value_serializer="raw",
        internal=True,
        **options,
    )


_declared: weakref.WeakSet[Any] = weakref.WeakSet()


async def ensure_declared(topic: TopicT) -> None:
    """Create ``topic`` with its configured partitions unless this process already has.

    For a send that may come before Faust creates the app's topics at start: the broker would
    auto-create the topic with its own partition count, not the app's, and the tables fed by
    it would refuse every event. Faust's ``maybe_declare`` asks the broker each time it is
    called; this asks once per process.
    """
    if topic not in _declared:
        await topic.maybe_declare()
        _declared.add(topic)


#: analytics [session id]: tracking events (page_view, product_view, search, cart changes).
analytics_topic = shop_topic("analytics")

#: orders [order id]: OrderPlaced, the inventory's answers, requests from the API and the
#: scheduler, and order_<status> notices.
orders_topic = shop_topic("orders")

#: inventory [sku]: ReserveStock, ReleaseStock, CommitStock, ReturnStock, Restock.
inventory_topic = shop_topic("inventory")

#: payments [order id]: PaymentRequested, PaymentSucceeded/Failed, RefundRequested, Refunded.
payments_topic = shop_topic("payments")

#: The orders agent's subscription: an order's saga is driven by both topics (co-partitioned
#: by order id, so an order's row is written from one partition number).
order_saga_topics = shop_topic("orders", "payments")

#: user-orders [user id]: OrderIndexed, for the per-customer list of orders.
user_orders_topic = shop_topic("user-orders")

#: revocations [user id], one partition: AccessRevoked (every worker checks tokens against
#: the whole list, kept in a global table).
revocations_topic = shop_topic("revocations", partitions=1)

#: catalog [sku], one partition: ProductSaved, StockLevelChanged (every worker keeps the
#: whole catalog in a global table; its changes are few).
catalog_topic = shop_topic("catalog", partitions=1)

#: promotions [code], one partition: PromotionSaved, PromotionDeleted, PromotionWindowChecked,
#: RedeemPromotion, ReturnRedemption. Its agent is the single writer of every promotion's
#: counters (race-free limits); every worker keeps every promotion (a global table).
promotions_topic = shop_topic("promotions", partitions=1)

#: users [user id]: UserRegistered, ProfileUpdated, PasswordChanged, UserDeactivated and the
#: refresh-token sessions (SessionStarted, SessionRotated, SessionEnded).
users_topic = shop_topic("users")

#: user-emails [normalised e-mail]: ClaimEmail (registration), LoginChanged (from the users
#: agent); the single writer that keeps e-mail addresses unique.
user_emails_topic = shop_topic("user-emails")

#: support [ticket id]: TicketOpened, TicketAssigned, TicketCommented, TicketResolved,
#: TicketReopened (from the support API; the support agent's tickets table).
support_topic = shop_topic("support")

#: notifications [user id, or "admins"]: notifications for people, e.g. admin_alert (an ERROR
#: log record, from rabbit_bridge/central_logs.py) for the notifications service.
notifications_topic = shop_topic("notifications")

#: recommendations [user id]: BehaviourSeen (views and carts from the analytics topic,
#: purchases from confirmed orders), for each user's recent behaviour.
recommendations_topic = shop_topic("recommendations")

#: Topics by name, for sending an effect to the topic it names.
TOPICS: dict[str, TopicT] = {
    "orders": orders_topic,
    "inventory": inventory_topic,
    "payments": payments_topic,
    "catalog": catalog_topic,
    "promotions": promotions_topic,
    "analytics": analytics_topic,
    "user-orders": user_orders_topic,
    "revocations": revocations_topic,
    "users": users_topic,
    "user-emails": user_emails_topic,
    "support": support_topic,
    "recommendations": recommendations_topic,
}

#: dead-letters [source topic]: events that failed to decode or to be handled, with the error.
dead_letters_topic = app.topic(
    "dead-letters",
    key_type=str,
    key_serializer="raw",
    value_serializer="json",
    partitions=app.conf.topic_partitions,
    internal=True,
)
