"""``faust -A app simulate``: drive realistic customer traffic through a worker's HTTP API.

Customers register, log in, browse and search the catalog, view products, send tracking
events, buy (some with an active promotion code, some with a declined card), cancel orders
and open support tickets; what each does next comes from ``scripts/traffic.py``. The load is
open-loop: an action is due every ``1/rate`` seconds whether or not earlier ones finished,
at most ``--concurrency`` run at once and a due action with no room is shed (counted). A
progress line is printed every second and a summary table at the end (``scripts/load_stats``).

``wiring.py`` registers the command with :func:`register_simulate`; this module needs only
HTTP.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import IO, Any, cast

import aiohttp
import click
import faust
from faust.cli import option

from config.running_stack import read_running_stack
from scripts.load_stats import Tally
from scripts.seed import ExitStatusCommand
from scripts.traffic import (
    Action,
    Customer,
    Product,
    choose_action,
    choose_items,
    choose_payment_method,
    choose_product,
    choose_promotion,
    prefer_categories,
    search_word,
)

__all__ = ["Simulation", "SimulationError", "register_simulate", "run_simulation"]

#: Seconds one request may take before it counts as an error.
REQUEST_TIMEOUT_S = 30.0

#: Seconds the list of active promotions is reused before it is asked again.
PROMOTIONS_TTL_S = 5.0

#: Seconds the final look at each placed order waits for it to settle.
SETTLE_WAIT_S = 3


class SimulationError(Exception):
    """The simulation cannot start; the message says what to fix."""


class Simulation:
    """One run: its customers, the catalog they shop in, the HTTP client and the tally."""

    def __init__(self, http: aiohttp.ClientSession, url: str, *, users: int,
                 concurrency: int, rng: random.Random) -> None:
        self.http = http
        self.url = url.rstrip("/")
        self.users = users
        self.concurrency = concurrency
        self.rng = rng
        self.run_id = os.urandom(4).hex()  # e-mails must be new on every run, seeded or not
        self.tally = Tally()
        self.products: list[Product] = []
        self.customers: list[Customer] = []
        self.placed: list[tuple[Customer, str]] = []
        self._promotions: tuple[float, list[str]] = (-PROMOTIONS_TTL_S, [])
        self._keys = 0
        self.actions: dict[Action, Callable[[Customer], Awaitable[None]]] = {
            "register": self.register, "login": self.login, "browse": self.browse,
            "search": self.search, "view": self.view, "add_to_cart": self.add_to_cart,
            "buy": self.buy, "cancel": self.cancel, "ticket": self.ticket}

    # -- HTTP --------------------------------------------------------------------------------

    async def call(self, method: str, path: str, endpoint: str, *,
                   customer: Customer | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int | None, Any]:
        """Send one request, count it under ``endpoint``; return (status or None, JSON body)."""
        headers = dict(headers or {})
        position = customer.position if customer is not None else None
        if customer is not None and customer.token:
            headers["Authorization"] = f"Bearer {customer.token}"
        if position:
            headers["Shop-Position"] = position
        started = time.monotonic()
        status: int | None = None
        body: Any = None
        try:
            async with self.http.request(method, self.url + path, json=json,
                                         headers=headers) as response:
                status = response.status
                body = await response.json(content_type=None)
                if customer is not None:
                    if position and customer.position == position and status != 503:
                        customer.position = None  # applied (or refused): sent no more
                    customer.position = response.headers.get("Shop-Position",
                                                             customer.position)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        self.tally.record(endpoint, status, time.monotonic() - started)
        if status == 401 and customer is not None:
            customer.token = None  # expired or revoked: log in again next time
        return status, body

    def _key(self, customer: Customer) -> str:
        self._keys += 1
        return f"sim-{self.run_id}-{customer.number}-{self._keys}"

    async def track(self, customer: Customer, **event: str) -> None:
        """Send one tracking event of the customer's session."""
        await self.call("POST", "/api/events", "POST /api/events", customer=customer,
                        json={"session_id": customer.session_id, "events": [event]})

    # -- Set-up ------------------------------------------------------------------------------

    async def load_catalog(self) -> None:
        """Read every product (up to 2,000); raise SimulationError if none or no answer."""
        for page in range(1, 21):
            status, body = await self.call("GET", f"/api/products?per_page=100&page={page}",
                                           "GET /api/products")
            if status != 200:
                raise SimulationError(
                    f"GET {self.url}/api/products answered {status or 'nothing'}: is a worker "
                    "running there? (--url, or SHOP_WEB_CANONICAL_URL)")
            self.products += [Product.from_api(item) for item in body["items"]]
            if len(self.products) >= body["total"] or not body["items"]:
                break
        if not self.products:
            raise SimulationError("the catalog is empty: run `faust -A app seed` first")
        categories = sorted({p.category for p in self.products})
        self.customers = [
            Customer(number=n, email=f"sim-{self.run_id}-{n}@example.com",
                     password=f"simulated-{self.run_id}-{n}",
                     session_id=f"sim{self.run_id}{n:06d}",
                     preferences=prefer_categories(categories, self.rng))
            for n in range(self.users)]

    async def active_promotions(self) -> list[str]:
        """Return the codes ``GET /api/promotions`` lists (asked at most every 5 s)."""
        at, codes = self._promotions
        if time.monotonic() - at >= PROMOTIONS_TTL_S:
            status, body = await self.call("GET", "/api/promotions", "GET /api/promotions")
            codes = [item["code"] for item in body["items"]] if status == 200 else codes
            self._promotions = (time.monotonic(), codes)
        return codes

    # -- Actions -----------------------------------------------------------------------------

    async def register(self, customer: Customer) -> None:
        """Create the customer's account (a 409 means it exists already)."""
        status, _ = await self.call("POST", "/api/users", "POST /api/users", json={
            "email": customer.email, "password": customer.password,
            "name": f"Simulated Customer {customer.number}"})
        customer.registered = status in (201, 409)

    async def login(self, customer: Customer) -> None:
        """Sign in and keep the access token."""
        status, body = await self.call("POST", "/api/auth/login", "POST /api/auth/login",
                                       json={"email": customer.email,
                                             "password": customer.password})
        if status == 200:
            customer.token = body["access_token"]

    async def browse(self, customer: Customer) -> None:
        """List a page of a liked category."""
        category = choose_product(self.products, customer.preferences, self.rng).category
        await self.call("GET", f"/api/products?category={category}&per_page=20",
                        "GET /api/products?category", customer=customer)
        await self.track(customer, type="page_view", path=f"/category/{category}")

    async def search(self, customer: Customer) -> None:
        """Search for a word of a liked product's name."""
        word = search_word(choose_product(self.products, customer.preferences, self.rng),
                           self.rng)
        await self.call("GET", f"/api/products?q={word}&per_page=20", "GET /api/products?q",
                        customer=customer)
        await self.track(customer, type="search", query=word)

    async def view(self, customer: Customer) -> None:
        """Open a liked product's page."""
        product = choose_product(self.products, customer.preferences, self.rng)
        await self.call("GET", f"/api/products/{product.sku}", "GET /api/products/{sku}",
                        customer=customer)
        await self.track(customer, type="product_view", sku=product.sku)

    async def add_to_cart(self, customer: Customer) -> None:
        """Put a liked product in the cart."""
        product = choose_product(self.products, customer.preferences, self.rng)
        customer.cart.append(product.sku)
        await self.track(customer, type="add_to_cart", sku=product.sku)

    async def buy(self, customer: Customer) -> None:
        """Order the cart (or one liked product), sometimes with a code or a declined card."""
        order: dict[str, Any] = {
            "items": [{"sku": sku, "quantity": quantity}
                      for sku, quantity in choose_items(customer, self.products, self.rng)],
            "payment_method": choose_payment_method(self.rng)}
        code = choose_promotion(await self.active_promotions(), self.rng)
        if code:
            order["promotion_code"] = code
        status, body = await self.call("POST", "/api/orders", "POST /api/orders",
                                       customer=customer, json=order,
                                       headers={"Idempotency-Key": self._key(customer)})
        if status in (201, 202):
            customer.cart.clear()
            customer.orders.append(body["id"])
            self.placed.append((customer, body["id"]))
            self.tally.orders_placed += 1
            self.tally.orders_with_code += bool(code)
            self.tally.orders_declined_card += order["payment_method"] != "pm_card_ok"

    async def cancel(self, customer: Customer) -> None:
        """Cancel one of the customer's orders (a 409 when it is past cancelling)."""
        order_id = self.rng.choice(customer.orders)
        await self.call("POST", f"/api/orders/{order_id}/cancel",
                        "POST /api/orders/{id}/cancel", customer=customer)

    async def ticket(self, customer: Customer) -> None:
        """Open a support ticket, about one of the customer's orders when there is one."""
        ticket: dict[str, Any] = {"subject": "Question about my order",
                                  "body": "Hello, when will it arrive? Thanks."}
        if customer.orders and self.rng.random() < 0.7:
            ticket["order_id"] = self.rng.choice(customer.orders)
        await self.call("POST", "/api/support/tickets", "POST /api/support/tickets",
                        customer=customer, json=ticket,
                        headers={"Idempotency-Key": self._key(customer)})

    async def act(self, customer: Customer) -> None:
        """Do the customer's next action and free the customer."""
        action = choose_action(customer, self.rng)
        try:
            await self.actions[action](customer)
        finally:
            self.tally.actions[action] += 1
            customer.busy = False

    # -- The run -----------------------------------------------------------------------------

    async def run(self, rate: float, duration: float, out: IO[str]) -> None:
        """Start an action every ``1/rate`` s for ``duration`` s; print progress every second."""
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        next_at, next_progress = started, started + 1.0
        while (now := time.monotonic()) < started + duration:
            if now >= next_progress:
                print(self.tally.progress_line(now - started, len(tasks)), file=out, flush=True)
                next_progress += 1.0
            if now < next_at:
                await asyncio.sleep(min(next_at, next_progress, started + duration) - now)
                continue
            next_at += 1.0 / rate
            idle = [c for c in self.customers if not c.busy]
            if not idle or len(tasks) >= self.concurrency:
                self.tally.shed += 1
                continue
            customer = self.rng.choice(idle)
            customer.busy = True
            task = asyncio.create_task(self.act(customer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        print(self.tally.progress_line(time.monotonic() - started, 0), file=out, flush=True)

    async def settle(self) -> None:
        """Look at every placed order once more (waiting a little) and count its status."""
        room = asyncio.Semaphore(self.concurrency)

        async def look(customer: Customer, order_id: str) -> None:
            async with room:
                status, body = await self.call(
                    "GET", f"/api/orders/{order_id}?wait={SETTLE_WAIT_S}",
                    "GET /api/orders/{id}?wait", customer=customer)
            self.tally.order_statuses[body["status"] if status in (200, 202) else "unknown"] += 1

        await asyncio.gather(*(look(customer, order_id) for customer, order_id in self.placed))


async def run_simulation(url: str, *, users: int, rate: float, duration: float, concurrency: int,
                   seed: int | None, out: IO[str]) -> Tally:
    """Run a whole simulation against ``url``; return its tally (SimulationError: no start)."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        run = Simulation(http, url, users=users, concurrency=concurrency,
                         rng=random.Random(seed))
        await run.load_catalog()
        print(f"simulate: {users} customers, {len(run.products)} products, {rate:g} actions/s "
              f"for {duration:g} s against {run.url}", file=out, flush=True)
        started = time.monotonic()
        await run.run(rate, duration, out)
        await run.settle()
        print(run.tally.summary(time.monotonic() - started), file=out, flush=True)
        return run.tally


def default_url(canonical_url: str) -> str:
    """Return SHOP_WEB_CANONICAL_URL if set, else the first worker of ``make run``'s stack,
    else ``canonical_url`` (this machine's default worker)."""
    if os.environ.get("SHOP_WEB_CANONICAL_URL"):
        return canonical_url
    stack = read_running_stack()
    workers = stack.get("workers") if stack else None
    if isinstance(workers, list) and workers:
        return str(workers[0])
    return canonical_url


def register_simulate(app: faust.App) -> None:
    """Add the ``simulate`` command to ``app``'s command line (``faust -A app simulate``)."""

    @app.command(
        option("--users", type=click.IntRange(1, 100_000), default=20, show_default=True,
               help="Simulated customers."),
        option("--rate", type=click.FloatRange(0.1, 10_000), default=10.0, show_default=True,
               help="Actions a second (open loop)."),
        option("--duration", type=click.FloatRange(0.1), default=30.0, show_default=True,
               help="Seconds to run."),
        option("--url", default=None, help="Worker URL (default: SHOP_WEB_CANONICAL_URL, "
               "else the worker make run started)."),
        option("--seed", type=int, default=None, help="Seed of the customers' choices."),
        option("--concurrency", type=click.IntRange(1, 10_000), default=32,
               show_default=True, help="Most actions in flight at once."),
        base=ExitStatusCommand,
    )
    async def simulate(self: ExitStatusCommand, users: int, rate: float,
                               duration: float, url: str | None, seed: int | None,
                               concurrency: int) -> None:
        """Drive realistic customer traffic through a worker's HTTP API."""
        target = url or default_url(cast(Any, self.app).settings.canonical_url)
        try:
            await run_simulation(target, users=users, rate=rate, duration=duration,
                           concurrency=concurrency, seed=seed, out=self.stdout)
        except SimulationError as exc:
            print(f"simulate: error: {exc}", file=self.stderr)
            self.exit_status = 1

