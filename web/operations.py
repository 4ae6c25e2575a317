"""Operations endpoints: ``/health`` (alive), ``/ready`` (Kafka, RabbitMQ and the first
admin ready) and ``/positions`` (the offsets this worker's tables applied: web/positions.py).

``/metrics`` is Faust's Prometheus sensor, set up in ``app.py``.
"""

from __future__ import annotations

from typing import Any, cast

from faust.tables.recovery import Recovery
from faust.web import Request, Response

from app import app, publisher, rabbit, settings
from tables.base import tables_ready
from tables.positions import positions
from tables.routing import ShopRouter, Unavailable
from tables.users import emails
from web.positions import POSITIONS_PATH
from web.views import ShopView

__all__ = ["partitions_not_fetched", "readiness"]


async def readiness() -> dict[str, Any]:
    """Return whether this worker can serve, with detail per dependency."""
    recovery = cast(Recovery, app.tables.recovery)  # type: ignore[attr-defined]
    kafka_ready = tables_ready(app)
    kafka: dict[str, Any] = {
        "ready": kafka_ready,
        "rebalancing": bool(app.rebalancing),
        "recovering": bool(recovery.in_recovery),
    }
    if kafka_ready:
        kafka["assigned_partitions"] = len(app.consumer.assignment())
        kafka["partitions_not_fetched"] = partitions_not_fetched()
    rabbitmq: dict[str, Any] = {
        "ready": rabbit.is_connected, "error": rabbit.last_error,
        "outbox_depth": publisher.outbox_depth, "pending": publisher.pending}
    # An outage of a RabbitMQ this worker has reached does not stop it serving: what it
    # publishes waits in the outbox. A RabbitMQ never reached (a wrong SHOP_RABBIT_URL) does.
    degraded = rabbit.was_connected and not rabbit.is_connected
    if degraded:
        rabbitmq["degraded"] = True
    admin = await first_admin_ready() if kafka_ready else False
    ready = kafka_ready and admin and (rabbit.is_connected or degraded)
    return {"ready": ready, "kafka": kafka, "rabbitmq": rabbitmq, "first_admin": admin}


async def first_admin_ready() -> bool:
    """Return False while the admin named by SHOP_ADMIN_EMAIL cannot log in yet.

    The worker that owns the address's ``emails`` row answers its logins, and says so only
    once the row is there; a deploy that waits for its workers' ``/ready`` then logs in.
    Any other worker only routes the login there.
    """
    if not (settings.admin_email and settings.admin_password):
        return True
    try:
        owner = await cast(ShopRouter, app.router).owner_url(emails.name, settings.admin_email)
    except Unavailable:
        return False
    return owner is not None or emails.get(settings.admin_email) is not None


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
    """The worker has its Kafka assignment, has reached RabbitMQ and, if it answers the first
    admin's logins, has the admin's row (503 if not)."""

    async def get(self, request: Request) -> Response:
        detail = await readiness()
        return self.json(detail, status=200 if detail["ready"] else 503)


@app.page(POSITIONS_PATH)
class Positions(ShopView):
    """The offsets this worker's tables have applied, per topic partition; with a
    ``Shop-Position`` header, answered once they reach it (503 if they cannot in time)."""

    async def get(self, request: Request) -> Response:
        return self.json({"worker": str(app.conf.canonical_url),
                          "applied": positions.snapshot()})
