"""Notification mail through the real brokers to a real SMTP server (aiosmtpd on loopback):
a confirmed order's receipt (after a refused first attempt: the retry), and promotion mail
only for users who did not opt out."""

from __future__ import annotations

import asyncio
import email
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.integration.fixtures import WorkerFactory
from tests.integration.notify import call, private_rabbit, register, start, until
from tests.integration.shop import ADMIN, Shop, customer

pytestmark = pytest.mark.integration


@pytest.fixture
def rabbit(workers: WorkerFactory) -> Iterator[str]:
    """Return a private RabbitMQ vhost's URL (the shared broker's queues see other runs)."""
    yield from private_rabbit(workers)


class Mailbox:
    """An aiosmtpd handler that keeps every mail; it refuses the first ``refuse`` of them."""

    def __init__(self, refuse: int = 0) -> None:
        self.mails: list[Message] = []
        self.refused = 0
        self.refuse = refuse
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if self.refused < self.refuse:
                self.refused += 1
                return "451 Try again later"
            content = envelope.content
            raw = content if isinstance(content, bytes) else str(content).encode()
            self.mails.append(email.message_from_bytes(raw))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        """Return the mails sent to ``address``."""
        with self._lock:
            return [mail for mail in self.mails if mail["To"] == address]

    async def wait_for(self, address: str, count: int = 1, within: float = 20.0) -> list[Message]:
        """Wait until ``address`` has ``count`` mails; return them."""
        deadline = time.monotonic() + within
        while len(self.to(address)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail to {address}: {[m['To'] for m in self.mails]}")
            await asyncio.sleep(0.1)
        return self.to(address)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    """Start a real SMTP server on a free loopback port; return its mailbox and URL."""
    box = Mailbox(refuse=1)
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


async def test_a_confirmed_order_notifies_and_mails_a_receipt_and_promotions_honour_opt_outs(
    workers: WorkerFactory, mailbox: tuple[Mailbox, str], rabbit: str,
) -> None:
    box, smtp_url = mailbox
    worker = await start(workers, SHOP_SMTP_URL=smtp_url, SHOP_RABBIT_URL=rabbit)
    async with aiohttp.ClientSession() as http:
        shop = Shop(http, worker.url)
        buyer = await register(http, worker.url, "buyer@example.com", "Bea")
        quiet = await register(http, worker.url, "quiet@example.com", "Quinn")

        # A confirmed order: a notification, and a receipt mail (the first attempt refused).
        await shop.add_product("MAIL-1", 10, price_cents=1999)
        await shop.wait_for_catalog(1)
        status, placed = await shop.place(buyer, [("MAIL-1", 1)])
        assert status == 201, placed
        order = await shop.settled(buyer, placed["id"])
        assert order["status"] == "confirmed", order
        page = await until(http, worker.url + "/api/notifications", customer(buyer),
                           lambda s, b: s == 200 and any(
                               i["kind"] == "order_confirmed" for i in b["items"]))
        assert page["unread"] == 2  # welcome and confirmed
        [receipt] = await box.wait_for("buyer@example.com")
        assert box.refused == 1  # the refused first attempt was retried
        assert receipt["Subject"].startswith("Your ShopStream receipt")
        assert "19.99 EUR" in receipt.get_payload() and "Bea" in receipt.get_payload()

        # Quinn opts out of marketing mail; Bea keeps the default (opted in).
        prefs: dict[str, Any] = {"marketing": False, "digest": True}
        status, answer = await call(http, "PUT", worker.url + "/api/notifications/preferences",
                                    customer(quiet), prefs)
        assert (status, answer) == (200, prefs)
        await until(http, worker.url + "/api/notifications/preferences", customer(quiet),
                    lambda s, b: s == 200 and b == prefs)
        status, mine = await call(http, "GET", worker.url + "/api/notifications/preferences",
                                  customer(buyer))
        assert (status, mine) == (200, {"marketing": True, "digest": True})
        status, answer = await call(http, "PUT", worker.url + "/api/notifications/preferences",
                                    customer(quiet), {"marketing": "no", "digest": True})
        assert status == 422, answer

        # A promotion goes live: Bea gets its mail, Quinn does not.
        status, created = await call(http, "POST", worker.url + "/api/promotions", ADMIN, {
            "code": "MAILTEN", "kind": "percent", "value": 10,
            "starts_at": datetime.now(UTC).isoformat()})
        assert status == 201, created
        mails = await box.wait_for("buyer@example.com", 2)
        promotion = mails[-1]
        assert "MAILTEN" in promotion["Subject"] and "10% off" in promotion["Subject"]
        await asyncio.sleep(2.0)  # time for a mail to Quinn, if one were wrongly sent
        assert box.to("quiet@example.com") == []
        assert len(box.to("buyer@example.com")) == 2  # each mail once
