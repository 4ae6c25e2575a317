"""The one place ShopStream's services are made and put together: ``app.services``.

Above every layer: it makes the RabbitMQ services (rabbit_bridge/), gives them what they call
in the agents (the task handlers, where an admin alert and a promotion's mail go), adds them
to the app so they start and stop with the worker, and registers the ``seed`` and
``simulate`` commands. The bridge never imports the agents: what it runs of theirs is handed
to it here.

Faust's autodiscovery imports this module (``app.LAYERS``) at worker start and for every
``faust -A app`` command, before the command line is read. Tests that need the services
import it.
"""

from __future__ import annotations

from agents.notifications import broadcast_promotion, send_admin_alert
from agents.task_handlers import SHOP_HANDLERS
from app import ShopApp, app
from config import Settings
from models.tasks import shop_tasks
from rabbit_bridge.central_logs import CentralLogs
from rabbit_bridge.connection import RabbitConnection
from rabbit_bridge.log_shipping import LogShipping
from rabbit_bridge.mail import MailSender, PromotionMail
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.services import Services
from rabbit_bridge.tasks import TaskWorkers
from scripts.seed import register_seed
from scripts.simulate import register_simulate

__all__ = ["make_services", "wire"]


def make_services(settings: Settings) -> Services:
    """Make a worker's services from ``settings`` (nothing is started or connected here)."""
    rabbit = RabbitConnection(settings.rabbit_url)
    publisher = RabbitPublisher(rabbit, settings.datadir / "outbox.sqlite3")
    tasks = shop_tasks(promotion_windows_every=settings.task_promotion_windows_every,
                       popularity_every=settings.task_popularity_every,
                       daily_report_cron=settings.task_daily_report_cron)
    return Services(
        rabbit=rabbit,
        publisher=publisher,
        log_shipping=LogShipping(publisher, worker=settings.canonical_url,
                                 level=settings.log_level,
                                 enabled=settings.log_shipping == "on"),
        central_logs=CentralLogs(rabbit, settings.datadir / "logs", send_alert=send_admin_alert),
        task_workers=TaskWorkers(rabbit, publisher, tasks.values(), SHOP_HANDLERS),
        mail_sender=MailSender(rabbit, publisher, settings.smtp_url),
        promotion_mail=PromotionMail(rabbit, broadcast_promotion),
    )


def wire(shop: ShopApp) -> None:
    """Give ``shop`` its services (started with the app, in order) and its commands."""
    shop.services = make_services(shop.settings)
    for service in shop.services.in_order():
        shop.add_dependency(service)
    register_seed(shop)
    register_simulate(shop)


wire(app)
