"""Operations endpoints: ``/health`` (alive), ``/ready`` (Kafka, the topics the views write
to, RabbitMQ and the first admin ready) and ``/positions`` (the offsets this worker's tables
applied: web/positions.py).

``/metrics`` is Faust's Prometheus sensor, set up in ``app.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import aiohttp
from faust.tables.recovery import Recovery
from faust.types import TopicT
from faust.web import Request, Response

from agents.topics import (
    analytics_topic,
    catalog_topic,
    inventory_topic,
    notifications_topic,
    orders_topic,
    promotions_topic,
    support_topic,
    user_emails_topic,
    users_topic,
)
from app import app
from runtime.positions import positions
from runtime.tables import tables_ready
from runtime.transport import broker_topics
from tables.users import emails
from web.middleware import forwarding_headers, is_forwarded
from web.positions import POSITIONS_PATH
from web.routing import Unavailable, owner_url
from web.views import ShopView

__all__ = ["VIEW_TOPICS", "missing_topics", "partitions_not_fetched", "readiness", "restoring",
           "view_topics_ready"]

log = logging.getLogger(__name__)

#: The topics the HTTP views send to: a worker serves writes only once they all exist.
VIEW_TOPICS: tuple[TopicT, ...] = (
    analytics_topic, catalog_topic, inventory_topic, notifications_topic, orders_topic,
    promotions_topic, support_topic, user_emails_topic, users_topic)
#: Seconds between two looks at the broker's metadata while a topic is missing.
TOPICS_RECHECK_S = 1.0


async def readiness(forwarded: bool = False) -> dict[str, Any]:
    """Return whether this worker can serve, with detail per dependency (``forwarded``: asked
    by another worker, which this one does not ask in turn)."""
    recovery = cast(Recovery, app.tables.recovery)  # type: ignore[attr-defined]
    kafka_ready = tables_ready(app)
    kafka: dict[str, Any] = {
        "ready": kafka_ready,
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(recovery.in_recovery),
    }
    if recovery.in_recovery:
        kafka["restoring"] = restoring(recovery.active_stats())
    if kafka_ready:
        kafka["assigned_partitions"] = len(app.consumer.assignment())
        kafka["partitions_not_fetched"] = partitions_not_fetched()
    rabbit, publisher = app.services.rabbit, app.services.publisher
    rabbitmq: dict[str, Any] = {
        "ready": rabbit.is_connected, "error": rabbit.last_error,
        "outbox_depth": publisher.outbox_depth, "pending": publisher.pending}
    # An outage of a RabbitMQ this worker has reached does not stop it serving: what it
    # publishes waits in the outbox. A RabbitMQ never reached (a wrong SHOP_RABBIT_URL) does.
    degraded = rabbit.was_connected and not rabbit.is_connected
    if degraded:
        rabbitmq["degraded"] = True
    topics = await view_topics_ready() if kafka_ready else False
    kafka["topics"] = topics
    admin = await first_admin_ready(forwarded) if kafka_ready else False
    ready = kafka_ready and topics and admin and (rabbit.is_connected or degraded)
    return {"ready": ready, "kafka": kafka, "rabbitmq": rabbitmq, "first_admin": admin}


def restoring(stats: Mapping[Any, Any]) -> dict[str, int]:
    """Return, per changelog partition a restore still reads (Faust's ``active_stats``:
    topic partition -> highwater, offset, remaining), the records it still needs. A
    partition whose count stays the same for long is not being read. Until a new restore
    has read the highwaters, Faust's stats are the last restore's, some below zero: only
    records still needed are named."""
    return {f"{tp.topic}[{tp.partition}]": int(stat.remaining)
            for tp, stat in sorted(stats.items()) if stat.remaining > 0}


def missing_topics(partitions: dict[str, int], wanted: dict[str, int]) -> list[str]:
    """Return the topics of ``wanted`` (name: partitions) that ``partitions`` (the broker's
    metadata, name: partitions) lacks or has with another partition count, by name."""
    return sorted(name for name, count in wanted.items() if partitions.get(name) != count)


class _TopicsSeen:
    """Whether the view topics were seen on the broker (once seen, never asked again)."""

    ready = False
    checked_at = float("-inf")
    missing: list[str] = []


_topics_seen = _TopicsSeen()


async def view_topics_ready() -> bool:
    """Return True once the broker's metadata shows every topic the views write to, with its
    partitions (asked at most once a second until then, never after)."""
    if _topics_seen.ready:
        return True
    now = time.monotonic()
    if now - _topics_seen.checked_at < TOPICS_RECHECK_S:
        return False
    _topics_seen.checked_at = now
    wanted = {topic.get_topic_name(): int(topic.partitions or app.conf.topic_partitions)
              for topic in VIEW_TOPICS}
    try:
        found = await broker_topics(app)
    except Exception as exc:
        log.warning("cannot read the broker's topics yet: %s: %s", type(exc).__name__, exc)
        return False
    missing = missing_topics(found, wanted)
    if missing:
        if missing != _topics_seen.missing:  # said once, not at every look
            log.info("not ready: topics missing or with other partitions than set: %s",
                     ", ".join(missing))
        _topics_seen.missing = missing
        return False
    _topics_seen.ready = True
    return True


#: Seconds another worker has to say whether the first admin can log in there.
ASK_OWNER_S = 2.0


class _AdminSeen:
    """Whether the first admin could log in once (a row that, once there, stays)."""

    ready = False


async def first_admin_ready(forwarded: bool = False) -> bool:
    """Return False while the admin named by SHOP_ADMIN_EMAIL cannot log in yet.

    The worker that owns the address's ``emails`` row answers its logins, and says so only
    once the row is there; a deploy that waits for its workers' ``/ready`` then logs in.
    Any other worker routes the login there, so it asks that worker (once it said yes, never
    again); asked itself by another worker that takes it for the owner while it takes a third
    (ownership moving), it says no rather than ask on.
    """
    if _AdminSeen.ready or not (app.settings.admin_email and app.settings.admin_password):
        return True
    try:
        owner = await owner_url(emails.name, app.settings.admin_email)
    except Unavailable:
        return False
    if owner is None:
        ready = emails.get(app.settings.admin_email) is not None
    elif forwarded:
        return False
    else:
        ready = await _owner_says_admin_ready(str(owner))
    _AdminSeen.ready = ready
    return ready


async def _owner_says_admin_ready(owner: str) -> bool:
    headers = forwarding_headers(str(app.conf.canonical_url), app.settings.jwt_secret)
    try:
        async with app.http_client.get(
                f"{owner.rstrip('/')}/ready", headers=headers,
                timeout=aiohttp.ClientTimeout(total=ASK_OWNER_S)) as answer:
            body = await answer.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return False
    return isinstance(body, dict) and body.get("first_admin") is True


def partitions_not_fetched() -> dict[str, str]:
    """Return the stream partitions (not changelogs) assigned to this worker that its
    consumer does not fetch now, each with why: ``paused`` (Faust pauses them during a
    rebalance and resumes them once ready), ``back-pressure`` (an agent's buffer is full;
    fetched again as it drains) or ``unknown``.

    A ready, idle worker lists none; one listed for long is read by nobody.
    """
    consumer = cast(Any, app.consumer)
    changelogs = app.tables.changelog_topics
    active = consumer._active_partitions or set()
    not_fetched: dict[str, str] = {}
    for tp in sorted(consumer.assignment()):
        if tp.topic in changelogs or tp in active:
            continue
        why = ("paused" if tp in consumer._paused_partitions
               else "back-pressure" if tp in consumer._buffered_partitions else "unknown")
        not_fetched[f"{tp.topic}[{tp.partition}]"] = why
    return not_fetched


@app.page("/health")
class Health(ShopView):
    """The worker process is alive and its web server answers."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/ready")
class Ready(ShopView):
    """The worker has its Kafka assignment, the topics the views write to exist, it has
    reached RabbitMQ and, if it answers the first admin's logins, has the admin's row (503 if
    not)."""

    async def get(self, request: Request) -> Response:
        detail = await readiness(is_forwarded(request, app.settings.jwt_secret))
        return self.json(detail, status=200 if detail["ready"] else 503)


@app.page(POSITIONS_PATH)
class Positions(ShopView):
    """The offsets this worker's tables have applied, per topic partition; with a
    ``Shop-Position`` header, answered once they reach it (503 if they cannot in time)."""

    async def get(self, request: Request) -> Response:
        return self.json({"worker": str(app.conf.canonical_url),
                          "applied": positions.snapshot()})
