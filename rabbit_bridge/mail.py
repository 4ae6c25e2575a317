"""The mail sender: notification mail from ``shop.notifications`` over SMTP, with retries.

The notifications agent publishes each mail (receipt, promotion, digest) to the durable queue
``shop.notifications`` through the default exchange, its id as the message id. The sender
renders the mail's template (models/mail_templates.py) and hands it to ``SHOP_SMTP_URL`` with
the standard library's smtplib in a thread. Topology (declared by the sender, all durable)::

    shop.notifications  (x-dead-letter-exchange: shop.notifications.dead)
        |  sending fails, attempt n < MAX_ATTEMPTS: a copy (x-attempt n + 1) goes to the
        v  retry queue of its delay (exponential backoff, as rabbit_bridge/tasks.py does)
    shop.notifications.retry.<delay>ms  (x-message-ttl, dead-lettered back to the queue)
    the last attempt fails: rejected -> shop.notifications.dead

A mail is sent at most once per worker: the sender remembers the ids it sent (bounded), on top
of the consumer's message-id memory, and retries carry their own message ids (``<id>#n``).

Promotion mail starts here too: :class:`PromotionMail` consumes ``promotion.activated`` from
``shop.promotions`` (its own queue, one delivery per activation across workers) and hands it
to ``broadcast`` (given by ``wiring.py``: the notifications agent asks every partition of the
notifications topic to mail its opted-in users).
"""

from __future__ import annotations

import asyncio
import json
import logging
import smtplib
from collections.abc import Awaitable, Iterable
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from mode import Service, ServiceT
from prometheus_client import Counter

from models.mail_templates import promotion_text, render
from models.tracing import REQUEST_ID, REQUEST_ID_HEADER, TRACE_LOGGER
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.consumer import QueueConsumer, RecentIds
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.topology import NOTIFICATIONS_QUEUE, PROMOTIONS_EXCHANGE, declare_exchange

__all__ = ["MAIL_DEAD_QUEUE", "Broadcast", "MailSender", "PromotionMail", "declare_mail",
           "retry_queue"]

log = logging.getLogger(__name__)
#: One record per mail sent: the mail's step in the trace of the request that caused it
#: (a ``trace`` logger: the bridge's own loggers are never shipped).
mail_steps = logging.getLogger(f"{TRACE_LOGGER}.mail")


class Broadcast(Protocol):
    """Ask for a promotion's mail to every opted-in user; return how many partitions were
    asked (the notifications agent's ``broadcast_promotion``)."""

    def __call__(self, *, code: str, title: str, body: str, source_id: str) -> Awaitable[int]:
        ...

MAILS = Counter("shop_mail_total", "Notification mail by kind and outcome "
                "(sent, retry, dead, duplicate)", ["kind", "outcome"])

MAIL_DEAD_EXCHANGE = "shop.notifications.dead"
MAIL_DEAD_QUEUE = "shop.notifications.dead"
#: The queue of promotion.activated announcements for promotion mail.
PROMOTION_MAIL_QUEUE = "notifications.promotions"
ATTEMPT_HEADER = "x-attempt"
#: Attempts at one mail before it is dead-lettered, and the waits between them (s).
MAX_ATTEMPTS = 5
RETRY_DELAYS = (1.0, 4.0, 15.0, 60.0)
FROM = "ShopStream <no-reply@shopstream.local>"


def retry_queue(delay: float) -> str:
    """Return the name of the retry queue that holds mail for ``delay`` seconds."""
    return f"{NOTIFICATIONS_QUEUE}.retry.{round(delay * 1000)}ms"


async def declare_mail(channel: AbstractChannel,
                       delays: Iterable[float] = RETRY_DELAYS) -> AbstractQueue:
    """Declare the mail queue, its retry queues and dead-letter queue; return the queue."""
    dead_exchange = await channel.declare_exchange(MAIL_DEAD_EXCHANGE, ExchangeType.DIRECT,
                                                   durable=True)
    dead = await channel.declare_queue(MAIL_DEAD_QUEUE, durable=True)
    await dead.bind(dead_exchange, NOTIFICATIONS_QUEUE)
    for delay in sorted(set(delays)):
        await channel.declare_queue(retry_queue(delay), durable=True, arguments={
            "x-message-ttl": round(delay * 1000),
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": NOTIFICATIONS_QUEUE,
        })
    return await channel.declare_queue(NOTIFICATIONS_QUEUE, durable=True, arguments={
        "x-dead-letter-exchange": MAIL_DEAD_EXCHANGE,
        "x-dead-letter-routing-key": NOTIFICATIONS_QUEUE,
    })


class MailSender(Service):
    """Consumes ``shop.notifications`` and sends each mail once over SMTP, with retries."""

    def __init__(self, connection: RabbitConnection, publisher: RabbitPublisher, smtp_url: str,
                 *, max_attempts: int = MAX_ATTEMPTS,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        parsed = urlsplit(smtp_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 25
        self.publisher = publisher
        self.max_attempts = max_attempts
        self.retry_delays = retry_delays
        self.sent = RecentIds(50_000)
        self.consumer = QueueConsumer(
            connection, name=NOTIFICATIONS_QUEUE, prefetch=20,
            declare=lambda channel: declare_mail(channel, retry_delays), handle=self.deliver)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        """Start the queue's consumer with the sender."""
        return [self.consumer]

    async def deliver(self, message: AbstractIncomingMessage) -> None:
        """Send one mail; on failure retry it later, or dead-letter it after the last attempt."""
        attempt = _int((message.headers or {}).get(ATTEMPT_HEADER), 1)
        mail = json.loads(message.body)
        mail_id, kind = str(mail["id"]), str(mail.get("kind", "?"))
        if self.sent.seen(mail_id):
            MAILS.labels(kind, "duplicate").inc()
            return
        try:
            subject, text = render(kind, str(mail.get("name", "")), dict(mail.get("values", {})))
            await asyncio.to_thread(self._send, str(mail["to"]), subject, text, mail_id)
        except Exception as exc:
            self.sent.forget(mail_id)
            if attempt >= self.max_attempts:
                MAILS.labels(kind, "dead").inc()
                log.error("mail %s (%s) failed attempt %d of %d; to %s", mail_id, kind,
                          attempt, self.max_attempts, MAIL_DEAD_QUEUE)
                raise  # rejected without requeue: the queue dead-letters it
            delay = self.retry_delays[min(attempt, len(self.retry_delays)) - 1]
            MAILS.labels(kind, "retry").inc()
            log.warning("mail %s (%s) failed attempt %d of %d (%s: %s); again in %.1f s",
                        mail_id, kind, attempt, self.max_attempts, type(exc).__name__, exc,
                        delay)
            self.publisher.publish("", retry_queue(delay), message.body,
                                   message_id=f"{mail_id}#{attempt + 1}",
                                   headers={ATTEMPT_HEADER: attempt + 1,
                                            "x-last-error": str(exc)[:500],
                                            **_request_header()})
            await self.publisher.flush()  # confirmed or in the outbox before the ack
            return
        MAILS.labels(kind, "sent").inc()
        if REQUEST_ID.get():
            mail_steps.info("mail %s (%s) sent, attempt %d", mail_id, kind, attempt,
                            extra={"trace": {"kind": "mail", "queue": NOTIFICATIONS_QUEUE,
                                             "mail_id": mail_id, "type": kind,
                                             "attempt": attempt}})

    def _send(self, to: str, subject: str, text: str, mail_id: str) -> None:
        """Hand one mail to the SMTP server (blocking: runs in a thread)."""
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = FROM, to, subject
        mail["Message-ID"] = f"<{mail_id}@shopstream.local>"
        mail["X-Notification-Id"] = mail_id
        mail.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=10.0) as smtp:
            smtp.send_message(mail)


async def declare_promotion_mail(channel: AbstractChannel) -> AbstractQueue:
    """Declare the queue of promotion activations, bound to shop.promotions."""
    exchange = await declare_exchange(channel, PROMOTIONS_EXCHANGE)
    queue = await channel.declare_queue(PROMOTION_MAIL_QUEUE, durable=True)
    await queue.bind(exchange, "promotion.activated")
    return queue


class PromotionMail(Service):
    """Turns each promotion.activated into a mail broadcast to every notifications partition."""

    def __init__(self, connection: RabbitConnection, broadcast: Broadcast, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.broadcast = broadcast
        self.consumer = QueueConsumer(connection, name=PROMOTION_MAIL_QUEUE, prefetch=4,
                                      declare=declare_promotion_mail, handle=self.announce,
                                      requeue_on_error=True)

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        """Start the queue's consumer with the service."""
        return [self.consumer]

    async def announce(self, message: AbstractIncomingMessage) -> None:
        """Ask every partition of the notifications topic to mail the promotion."""
        news = json.loads(message.body)
        promotion = dict(news.get("promotion") or {})
        title, text = promotion_text(promotion)
        try:
            count = await self.broadcast(
                code=str(news["code"]), title=title, body=text,
                source_id=str(news.get("event_id") or message.message_id))
        except Exception:
            await asyncio.sleep(1.0)  # requeued: not at once
            raise
        log.info("promotion %s: promotion mail asked of %d partitions", news["code"], count)


def _request_header() -> dict[str, str]:
    """Return the header that carries the current request id on (none if there is none)."""
    request_id = REQUEST_ID.get()
    return {REQUEST_ID_HEADER: request_id} if request_id else {}


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
