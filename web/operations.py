"""Operations endpoints: ``/health`` (alive) and ``/ready`` (Kafka and RabbitMQ ready).

``/metrics`` is Faust's Prometheus sensor, set up in ``app.py``.
"""

from __future__ import annotations

from typing import Any, cast

from faust.tables.recovery import Recovery
from faust.web import Request, Response

from app import app, publisher, rabbit
from tables.base import tables_ready
from web.views import ShopView

__all__ = ["readiness"]


def readiness() -> dict[str, Any]:
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
    rabbitmq: dict[str, Any] = {
        "ready": rabbit.is_connected, "error": rabbit.last_error,
        "outbox_depth": publisher.outbox_depth, "pending": publisher.pending}
    # An outage of a RabbitMQ this worker has reached does not stop it serving: what it
    # publishes waits in the outbox. A RabbitMQ never reached (a wrong SHOP_RABBIT_URL) does.
    degraded = rabbit.was_connected and not rabbit.is_connected
    if degraded:
        rabbitmq["degraded"] = True
    ready = kafka_ready and (rabbit.is_connected or degraded)
    return {"ready": ready, "kafka": kafka, "rabbitmq": rabbitmq}


@app.page("/health")
class Health(ShopView):
    """The worker process is alive and its web server answers."""

    async def get(self, request: Request) -> Response:
        return self.json({"status": "ok"})


@app.page("/ready")
class Ready(ShopView):
    """The worker has its Kafka assignment and has reached RabbitMQ (503 if not)."""

    async def get(self, request: Request) -> Response:
        detail = readiness()
        return self.json(detail, status=200 if detail["ready"] else 503)
