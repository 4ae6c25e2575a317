"""The RabbitMQ connection: one robust aio-pika connection, started and stopped with the app.

The worker starts even when RabbitMQ is down: the service keeps trying in the background
(logging where it tries, without the password), ``/ready`` answers 503 until it is connected,
and aio-pika's robust connection reconnects by itself after that.
"""

from __future__ import annotations

import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from mode import Service
from yarl import URL

__all__ = ["RabbitConnection", "redact_url"]

log = logging.getLogger(__name__)

#: Backoff between first-connection attempts, in seconds (doubles up to the maximum).
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


def redact_url(url: str) -> str:
    """Return ``url`` with its password hidden, fit for logs and error messages."""
    parsed = URL(url)
    return str(parsed.with_password("***")) if parsed.password else url


class RabbitConnection(Service):
    """Keeps one robust connection to RabbitMQ for the bridge's channels."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.url = url
        self.connection: AbstractRobustConnection | None = None
        self.last_error: str | None = None

    @property
    def is_connected(self) -> bool:
        """Return True while the connection to RabbitMQ is open."""
        connection = self.connection
        return connection is not None and not connection.is_closed and (
            connection.connected.is_set()
        )

    @property
    def was_connected(self) -> bool:
        """Return True once the first connection succeeded (the robust connection then
        reconnects by itself after an outage)."""
        return self.connection is not None

    @Service.task
    async def _connect_until_connected(self) -> None:
        delay = RETRY_FIRST_S
        while not self.should_stop:
            try:
                self.connection = await aio_pika.connect_robust(self.url, timeout=5)
            except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "RabbitMQ unreachable at %s (SHOP_RABBIT_URL): %s; retrying in %.1f s",
                    redact_url(self.url), self.last_error, delay,
                )
                await self.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                self.last_error = None
                log.info("RabbitMQ connected at %s", redact_url(self.url))
                return

    async def on_stop(self) -> None:
        """Close the connection."""
        if self.connection is not None:
            await self.connection.close()
            self.connection = None
