"""The RabbitMQ services of a worker, as one typed record: ``app.services`` (``wiring.py``
makes them and adds them to the app).

Every module reaches a service through the app (``app.services.publisher``) when it needs
it, never as a module global, so importing a module creates no service.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from mode import ServiceT

from rabbit_bridge.central_logs import CentralLogs
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.log_shipping import LogShipping
from rabbit_bridge.mail import MailSender, PromotionMail
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.tasks import TaskWorkers

__all__ = ["Services"]


@dataclass(frozen=True, slots=True)
class Services:
    """A worker's services, in the order they start (each after those it uses)."""

    #: The connection every other service uses.
    rabbit: RabbitConnection
    #: Confirmed, durable publishing through an on-disk outbox.
    publisher: RabbitPublisher
    #: The worker's log records to the logs exchange.
    log_shipping: LogShipping
    #: Every worker's log records, kept here for GET /api/admin/logs; ERROR ones become alerts.
    central_logs: CentralLogs
    #: The background tasks' queues and their handlers.
    task_workers: TaskWorkers
    #: Mail to customers through SHOP_SMTP_URL.
    mail_sender: MailSender
    #: promotion.activated -> a mail broadcast.
    promotion_mail: PromotionMail

    def in_order(self) -> tuple[ServiceT, ...]:
        """Return every service, each after the services it uses."""
        return tuple(getattr(self, field.name) for field in fields(self))
