"""``faust -A app seed``: load the demo catalog (products and their first stock) into the shop.

For every product of the JSON file (default ``scripts/demo_catalog.json``) it sends a
``ProductSaved`` to the catalog topic and, when ``initial_stock`` > 0, a
``Restock(initial=True)`` to the inventory topic, both keyed by sku. Seeding again re-saves the
products (the file wins over edits) and leaves every stock as it is: a product's initial stock
is set once. ``--dry-run`` only validates the file. It ends once a worker (the one ``make run``
started, else the one the settings name) shows what it sent: it sends the positions its
messages landed at back as a ``Shop-Position`` (docs/guarantees.md) instead of polling.

``wiring.py`` registers the command with :func:`register_seed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar, NoReturn

import aiohttp
import click
import faust
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from faust.cli import AppCommand, option
from faust.transport.drivers.aiokafka import server_list
from faust.types import AppT, TopicT
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.topics import catalog_topic, inventory_topic
from config.running_stack import read_running_stack
from models.catalog import ProductSaved
from models.inventory import Restock
from models.positions import MAX_POSITIONS, Written, encode_token

__all__ = ["CatalogProduct", "SeedError", "load_catalog", "register_seed"]

#: The catalog shipped with the project.
DEMO_CATALOG = Path(__file__).with_name("demo_catalog.json")

#: How long to wait for Kafka to answer before giving up.
KAFKA_WAIT_S = 15.0

#: Products sent before waiting for the broker's acknowledgements (and moving the bar).
BATCH = 20


class SeedError(Exception):
    """The seed cannot go on; the message says why (and which setting or product to fix)."""


class CatalogProduct(BaseModel):
    """One product of the catalog file.

    Bounds as in ``POST /api/products``, except that a demo product needs a description and an
    image, and the sku pattern is the seed's own (``POST`` also wants a letter or digit first).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    sku: str = Field(pattern=r"^[A-Z0-9-]{3,32}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(min_length=1, max_length=5000)
    category: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    price_cents: int = Field(ge=0, le=100_000_000)
    image_url: str = Field(min_length=1, max_length=500)
    initial_stock: int = Field(ge=0, le=10_000_000)


# -- The file ------------------------------------------------------------------------------


def load_catalog(path: Path) -> list[CatalogProduct]:
    """Read and validate the catalog at ``path``; raise SeedError naming each bad product."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SeedError(f"{path} is not UTF-8 text: {exc.reason}") from None
    except json.JSONDecodeError as exc:
        raise SeedError(f"{path} is not JSON: {exc.msg} (line {exc.lineno}, "
                        f"column {exc.colno})") from None
    if not isinstance(data, list) or not data:
        raise SeedError(f"{path} must hold a non-empty JSON list of products")
    products: list[CatalogProduct] = []
    problems: list[str] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(data):
        try:
            product = CatalogProduct.model_validate(item)
        except ValidationError as exc:
            problems.extend(_describe(index, item, exc))
            continue
        if product.sku in first_index:
            problems.append(f"product {index} ({product.sku}): sku: the same sku as "
                            f"product {first_index[product.sku]}")
            continue
        first_index[product.sku] = index
        products.append(product)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise SeedError(f"{path}: {len(problems)} problem(s), nothing was sent:\n  "
                        f"{shown}{more}")
    return products


def _describe(index: int, item: Any, exc: ValidationError) -> list[str]:
    """Return one line per error: ``product 3 (BOOK-0004): price_cents: <what is wrong>``."""
    sku = item.get("sku") if isinstance(item, dict) else None
    who = f"product {index} ({sku})" if isinstance(sku, str) and sku else f"product {index}"
    lines = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "(the product)"
        got = "" if error["type"] == "missing" else f" (got {error['input']!r:.60})"
        lines.append(f"{who}: {field}: {error['msg']}{got}")
    return lines


# -- Progress ------------------------------------------------------------------------------


class ProgressBar:
    """``[#####.....] 60/120 products`` redrawn in place on ``stream``."""

    def __init__(self, total: int, stream: IO[str], width: int = 30) -> None:
        self.total = total
        self.stream = stream
        self.width = width

    def show(self, done: int) -> None:
        """Draw the bar for ``done`` of ``total``."""
        filled = self.width * done // self.total if self.total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done}/{self.total} products")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
        self.stream.write("\n")
        self.stream.flush()


# -- Kafka ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """What a seed sent."""

    products: int
    restocks: int
    units: int
    #: The last position each partition's messages landed at.
    landed: tuple[Written, ...] = ()


async def wait_for_kafka(app: AppT, within: float = KAFKA_WAIT_S) -> None:
    """Return once the brokers of SHOP_KAFKA_URL answer; raise SeedError after ``within`` s."""
    servers = server_list(app.conf.broker, 9092)
    deadline = time.monotonic() + within
    while True:
        client = AIOKafkaClient(bootstrap_servers=servers, request_timeout_ms=5000)
        try:
            with _silenced("aiokafka"):  # it logs an ERROR per failed try: one line is ours
                await asyncio.wait_for(client.bootstrap(), max(deadline - time.monotonic(), 0.1))
            return
        except (KafkaError, OSError, TimeoutError):
            if time.monotonic() >= deadline:
                raise SeedError(
                    f"Kafka is not reachable at {','.join(servers)} (tried for {within:.0f} s):"
                    " start it or fix SHOP_KAFKA_URL") from None
        finally:
            await client.close()
        await asyncio.sleep(0.5)


@contextlib.contextmanager
def _silenced(logger_name: str) -> Iterator[None]:
    """Drop the records below CRITICAL of ``logger_name`` inside the block."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


async def send_catalog(products: Sequence[CatalogProduct], catalog: TopicT,
                       inventory: TopicT, progress: ProgressBar) -> Summary:
    """Send every product and its first stock; return once the broker acknowledged all."""
    restocks = units = 0
    latest: dict[tuple[str, int], Written] = {}
    progress.show(0)
    for start in range(0, len(products), BATCH):
        sent: list[Awaitable[Any]] = []
        for product in products[start:start + BATCH]:
            saved = ProductSaved.new(
                sku=product.sku, name=product.name, description=product.description,
                category=product.category, price_cents=product.price_cents,
                image_url=product.image_url)
            sent.append(await catalog.send(key=product.sku, value=saved.dumps()))
            if product.initial_stock > 0:
                restock = Restock.new(sku=product.sku, quantity=product.initial_stock,
                                      initial=True)
                sent.append(await inventory.send(key=product.sku, value=restock.dumps()))
                restocks += 1
                units += product.initial_stock
        for metadata in await asyncio.gather(*sent):
            latest[(metadata.topic, metadata.partition)] = Written(
                metadata.topic, metadata.partition, metadata.offset)
        progress.show(min(start + BATCH, len(products)))
    progress.close()
    return Summary(len(products), restocks, units, tuple(latest.values()))


async def shown_by(url: str, landed: Sequence[Written], secret: str) -> str:
    """Ask the worker at ``url`` to answer once it shows ``landed``; return what it said."""
    chunks = [landed[i:i + MAX_POSITIONS] for i in range(0, len(landed), MAX_POSITIONS)]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            for chunk in chunks:
                header = {"Shop-Position": encode_token(chunk, secret)}
                async with http.get(f"{url}/positions", headers=header) as answer:
                    if answer.status != 200:
                        return f"not shown yet by {url} ({answer.status})"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"no worker answered at {url} ({type(exc).__name__})"
    return f"shown by {url}"


def worker_url(app: AppT) -> str:
    """Return the URL of the worker to ask: the first ``make run`` started, else this app's."""
    stack = read_running_stack() or {}
    workers = stack.get("workers")
    if isinstance(workers, list) and workers:
        return str(workers[0])
    return str(app.conf.canonical_url).rstrip("/")


async def seed_kafka(app: AppT, products: Sequence[CatalogProduct],
                     progress: ProgressBar) -> Summary:
    """Start the app's producer, create the topics if needed, send, flush and stop."""
    await wait_for_kafka(app)
    producer = app.producer
    try:
        await asyncio.wait_for(producer.maybe_start(), KAFKA_WAIT_S)
        # Created as a worker would (partitions from the settings) if no worker ran yet.
        await catalog_topic.maybe_declare()
        await inventory_topic.maybe_declare()
        summary = await send_catalog(products, catalog_topic, inventory_topic, progress)
        await producer.flush()
        return summary
    except (KafkaError, TimeoutError) as exc:
        raise SeedError(f"sending to Kafka failed: {exc!r} (check SHOP_KAFKA_URL)") from None
    finally:
        await producer.stop()


# -- The command ---------------------------------------------------------------------------


class ExitStatusCommand(AppCommand):
    """An app command that may end with ``exit_status`` != 0 without a traceback."""

    abstract: ClassVar[bool] = True
    exit_status: int = 0

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        try:
            self.run_using_worker(*args, **kwargs)
        except SystemExit as exc:
            if self.exit_status and exc.code in (0, None):
                raise SystemExit(self.exit_status) from None
            raise


async def run_seed(command: ExitStatusCommand, path: Path, *, dry_run: bool) -> None:
    """Validate ``path`` and (unless ``dry_run``) send it; one error line and status 1 if not."""
    started = time.monotonic()
    try:
        products = load_catalog(path)
        if dry_run:
            categories = len({p.category for p in products})
            units = sum(p.initial_stock for p in products)
            command.say(f"seed: {path} is valid: {len(products)} products in {categories} "
                        f"categories, {units} units of stock (dry run: nothing sent)")
            return
        summary = await seed_kafka(command.app, products,
                                   ProgressBar(len(products), command.stderr))
    except SeedError as exc:
        print(f"seed: error: {exc}", file=command.stderr)
        command.exit_status = 1
        return
    shown = await shown_by(worker_url(command.app), summary.landed,
                           command.app.settings.jwt_secret)  # type: ignore[attr-defined]
    command.say(f"seed: {summary.products} products, {summary.units} units of stock "
                f"({summary.restocks} initial restocks) in {time.monotonic() - started:.2f} s, "
                f"{shown}")


def register_seed(app: faust.App) -> None:
    """Add the ``seed`` command to ``app``'s command line (``faust -A app seed``)."""

    @app.command(
        option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
               default=DEMO_CATALOG, show_default=True, help="Catalog JSON file to load."),
        option("--dry-run", is_flag=True, default=False,
               help="Only validate the file; send nothing."),
        base=ExitStatusCommand,
    )
    async def seed(self: ExitStatusCommand, path: Path, dry_run: bool) -> None:
        """Load the demo catalog: products to the catalog topic, first stock to inventory."""
        await run_seed(self, path, dry_run=dry_run)

