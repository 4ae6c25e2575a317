"""Offline evaluation of the recommendations: the model against popularity, on held-out data.

``python -m scripts.evaluate_recommendations [--users N] [--seed S]``

1. Generates a behaviour dataset with structure: categories of items, items that sell
   together (bundles of four in a category, some more popular than others), and users who
   each prefer one category (some a second), browsing in sessions: view two or three items
   of a bundle, cart one, sometimes buy it.
2. Splits each user's sessions by time: all but the last two train, the last two are
   held out; a user's held-out items are the items of those sessions they had not touched
   in training.
3. Replays the training split through the REAL agents: a Tansu broker and a ShopStream
   worker are started (as the tests do), views and carts go onto the ``analytics`` topic as
   the tracking endpoint writes them (with the user's id), and purchases onto the
   ``recommendations`` topic as the orders forwarder writes them (a ``BehaviourSeen``). It
   waits until the worker's consumer group has committed every event of the three hops.
4. Asks the worker for each user's recommendations (``GET /api/recommendations/{user}``) and
   computes hit-rate@10 (a held-out item among the ten) and recall@10 (the share of held-out
   items among the ten), side by side with the popularity baseline (the most popular
   items of the training split, weighted as the model weighs behaviour). Both lists leave
   out the items the user touched in training: the task is to find what they will want next.
   The read latency of the recommendations is reported too (p50, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from config.settings import DEV_JWT_SECRET
from models.base import new_event_id, utcnow
from models.recommendations import BEHAVIOUR_WEIGHTS, BehaviourSeen
from scripts.devstack import (
    Broker,
    broker_env,
    ensure_rabbitmq,
    rabbit_vhost,
    start_tansu,
    start_worker,
)
from web.tokens import issue_access_token

__all__ = ["Dataset", "evaluate", "main", "make_dataset", "popularity_ranking"]

K = 10
GROUP = "shopstream"
TEST_SESSIONS = 2
#: Tracking types of the behaviours, as the storefront reports them.
TRACKED = {"view": "product_view", "cart": "add_to_cart"}

Behaviour = tuple[str, str]  # (kind: view | cart | purchase, sku)


def say(message: str) -> None:
    """Print one progress line."""
    print(f"[evaluate] {message}", flush=True)


@dataclass
class Dataset:
    """Users' sessions split in time: behaviour to train on, items to find afterwards."""

    categories: dict[str, list[str]]
    train: dict[str, list[Behaviour]] = field(default_factory=dict)
    heldout: dict[str, set[str]] = field(default_factory=dict)

    def trained_items(self, user: str) -> set[str]:
        """Return the items ``user`` touched in the training split."""
        return {sku for _, sku in self.train.get(user, ())}


def make_dataset(users: int, *, seed: int = 1, categories: int = 8, per_category: int = 16,
                 sessions: tuple[int, int] = (5, 8)) -> Dataset:
    """Return a dataset of ``users`` users with category preferences and bundles of items."""
    rng = random.Random(seed)
    catalog = {f"cat{c}": [f"C{c}-I{i:02d}" for i in range(per_category)]
               for c in range(categories)}
    bundles = {name: [items[i:i + 4] for i in range(0, len(items), 4)]
               for name, items in catalog.items()}
    # Some bundles sell more than others (the popularity baseline's signal).
    bundle_weights = [1.0 / (rank + 1) for rank in range(per_category // 4)]
    names = sorted(catalog)
    data = Dataset(categories=catalog)
    for u in range(users):
        user = f"eval-user-{u:04d}"
        favourites = [rng.choice(names)]
        if rng.random() < 0.3:
            favourites.append(rng.choice(names))
        history: list[list[Behaviour]] = []
        for _ in range(rng.randint(*sessions)):
            category = rng.choice(favourites) if rng.random() < 0.85 else rng.choice(names)
            bundle = rng.choices(bundles[category], weights=bundle_weights)[0]
            viewed = rng.sample(bundle, rng.randint(2, 3))
            session: list[Behaviour] = [("view", sku) for sku in viewed]
            if rng.random() < 0.5:
                carted = rng.choice(viewed)
                session.append(("cart", carted))
                if rng.random() < 0.5:
                    session.append(("purchase", carted))
            history.append(session)
        train = [b for s in history[:-TEST_SESSIONS] for b in s]
        seen = {sku for _, sku in train}
        later = {sku for s in history[-TEST_SESSIONS:] for _, sku in s} - seen
        data.train[user] = train
        if later:
            data.heldout[user] = later
    return data


def popularity_ranking(train: Mapping[str, Sequence[Behaviour]]) -> list[str]:
    """Return every trained item, most popular first (behaviour weighted as the model does)."""
    score: Counter[str] = Counter()
    for behaviours in train.values():
        for kind, sku in behaviours:
            score[sku] += BEHAVIOUR_WEIGHTS[kind]
    return [sku for sku, _ in sorted(score.items(), key=lambda item: (-item[1], item[0]))]


def top_unseen(ranked: Iterable[str], seen: set[str], k: int = K) -> list[str]:
    """Return the first ``k`` of ``ranked`` that are not in ``seen``."""
    return [sku for sku in ranked if sku not in seen][:k]


def evaluate(recommended: Mapping[str, Sequence[str]],
             heldout: Mapping[str, set[str]]) -> tuple[float, float]:
    """Return (hit-rate, recall) of ``recommended`` lists over the users of ``heldout``."""
    hits, recalls = [], []
    for user, wanted in heldout.items():
        found = wanted & set(recommended.get(user, ()))
        hits.append(1.0 if found else 0.0)
        recalls.append(len(found) / len(wanted))
    return statistics.fmean(hits), statistics.fmean(recalls)


# -- The replay through a real worker -------------------------------------------------------


def tracked_value(user: str, kind: str, sku: str) -> bytes:
    """Return a tracking event as POST /api/events writes it for a signed-in user."""
    return json.dumps({"type": TRACKED[kind], "event_id": new_event_id(),
                       "occurred_at": utcnow().isoformat(), "correlation_id": "evaluation",
                       "schema_version": 1, "session_id": f"session-{user}",
                       "user_id": user, "sku": sku}, separators=(",", ":")).encode()


async def replay(bootstrap: str, train: Mapping[str, Sequence[Behaviour]]) -> dict[str, int]:
    """Produce the training split; return how many events went to each topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    sent: Counter[str] = Counter()
    try:
        pending = []
        for user, behaviours in train.items():
            for kind, sku in behaviours:
                if kind == "purchase":
                    seen = BehaviourSeen(type=BehaviourSeen.event_type, event_id=new_event_id(),
                                         occurred_at=utcnow(), correlation_id="evaluation",
                                         user_id=user, kind="purchase", skus=[sku])
                    pending.append(await producer.send(
                        "recommendations", key=user.encode(), value=seen.dumps()))
                    sent["recommendations"] += 1
                else:
                    pending.append(await producer.send(
                        "analytics", key=f"session-{user}".encode(),
                        value=tracked_value(user, kind, sku)))
                    sent["analytics"] += 1
                    sent["recommendations"] += 1  # forwarded by analytics.tracked
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return dict(sent)


async def committed(consumer: AIOKafkaConsumer, topic: str) -> int:
    """Return the worker group's committed offsets on ``topic``, summed."""
    partitions = consumer.partitions_for_topic(topic) or set()
    total = 0
    for partition in partitions:
        total += await consumer.committed(TopicPartition(topic, partition)) or 0
    return total


async def count_messages(bootstrap: str, topic: str) -> int:
    """Return how many messages ``topic`` holds (read from the start until it is quiet)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        seen = 0
        while batch := await consumer.getmany(timeout_ms=1500):
            seen += sum(len(records) for records in batch.values())
        return seen
    finally:
        await consumer.stop()


async def wait_applied(bootstrap: str, sent: Mapping[str, int], deadline: float) -> None:
    """Wait until the worker has committed every event of the three hops."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        for topic in ("analytics", "recommendations"):
            while (done := await committed(consumer, topic)) < sent.get(topic, 0):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: {done} of {sent[topic]} applied in time")
                say(f"{topic}: {done:,} of {sent[topic]:,} applied")
                await asyncio.sleep(2)
        pairs = await count_messages(bootstrap, "item-pairs")
        await consumer.topics()
        while (done := await committed(consumer, "item-pairs")) < pairs:
            if time.monotonic() > deadline:
                raise TimeoutError(f"item-pairs: {done} of {pairs} applied in time")
            say(f"item-pairs: {done:,} of {pairs:,} applied")
            await asyncio.sleep(2)
        say(f"all applied ({pairs:,} item updates)")
    finally:
        await consumer.stop()


async def ask(url: str, users: Iterable[str]) -> tuple[dict[str, list[str]], list[float]]:
    """Return each user's recommendations (50, best first) and every read's latency (ms)."""
    token = issue_access_token("evaluation", ["admin"], secret=DEV_JWT_SECRET, ttl=3600)
    headers = {"Authorization": f"Bearer {token}"}
    lists: dict[str, list[str]] = {}
    latencies: list[float] = []
    async with aiohttp.ClientSession(headers=headers) as http:
        for user in users:
            for _ in range(3):  # the first read of a user warms nothing; keep all three
                started = time.perf_counter()
                async with http.get(f"{url}/api/recommendations/{user}?limit=50") as answer:
                    body: Any = await answer.json()
                latencies.append((time.perf_counter() - started) * 1000)
                if answer.status != 200:
                    raise RuntimeError(f"recommendations of {user}: {answer.status} {body}")
            lists[user] = [item["sku"] for item in body["items"]]
    return lists, latencies


@dataclass(frozen=True)
class Report:
    """The evaluation's figures."""

    users: int
    train_events: int
    model: tuple[float, float]
    popularity: tuple[float, float]
    p50_ms: float
    p99_ms: float


async def run_evaluation(data: Dataset, broker: Broker, rabbit_url: str, workdir: Path,
                         within: float = 600.0) -> Report:
    """Replay ``data``'s training split through a worker on ``broker``; evaluate."""
    deadline = time.monotonic() + within
    with rabbit_vhost(rabbit_url, prefix="shopeval") as vhost_url:
        worker = start_worker("eval", broker_env(broker), vhost_url, workdir,
                              extra_env={"SHOP_RATE_LIMIT": "100000",
                                         "SHOP_RATE_BURST": "100000"})
        try:
            say("starting a worker ...")
            await asyncio.to_thread(worker.wait_ready, 120.0)
            sent = await replay(broker.bootstrap, data.train)
            say(f"train split produced: {sent}")
            await wait_applied(broker.bootstrap, sent, deadline)
            say(f"asking for the recommendations of {len(data.heldout):,} users ...")
            lists, latencies = await ask(worker.url, sorted(data.heldout))
        finally:
            await asyncio.to_thread(worker.stop)
    model = {u: top_unseen(lists[u], data.trained_items(u)) for u in data.heldout}
    ranking = popularity_ranking(data.train)
    popular = {u: top_unseen(ranking, data.trained_items(u)) for u in data.heldout}
    latencies.sort()
    return Report(users=len(data.heldout),
                  train_events=sum(len(b) for b in data.train.values()),
                  model=evaluate(model, data.heldout),
                  popularity=evaluate(popular, data.heldout),
                  p50_ms=statistics.median(latencies),
                  p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])


def print_report(report: Report) -> None:
    """Print the model and the baseline side by side."""
    print()
    print(f"{report.users} users with held-out items, {report.train_events:,} training events")
    print(f"{'':12} | {'hit-rate@10':>11} | {'recall@10':>9}")
    print(f"{'-' * 12}-+-{'-' * 11}-+-{'-' * 9}")
    for name, (hit, recall) in (("model", report.model), ("popularity", report.popularity)):
        print(f"{name:12} | {hit:11.3f} | {recall:9.3f}")
    print(f"recommendation reads: p50 {report.p50_ms:.1f} ms, p99 {report.p99_ms:.1f} ms")


def main(argv: list[str] | None = None) -> int:
    """Generate, replay, evaluate, print; exit 1 if the model does not beat popularity."""
    parser = argparse.ArgumentParser(prog="python -m scripts.evaluate_recommendations",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rabbit-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args(argv)
    data = make_dataset(args.users, seed=args.seed)
    say(f"dataset: {args.users} users, {sum(len(v) for v in data.categories.values())} items "
        f"in {len(data.categories)} categories, {len(data.heldout)} users with held-out items")
    ensure_rabbitmq(args.rabbit_url, log=say)
    workdir = Path(tempfile.mkdtemp(prefix="shopstream-eval-"))
    broker = start_tansu(log_path=workdir / "tansu.log")
    try:
        report = asyncio.run(run_evaluation(data, broker, args.rabbit_url, workdir))
    finally:
        broker.stop()
    print_report(report)
    return 0 if report.model[0] > report.popularity[0] else 1


if __name__ == "__main__":
    raise SystemExit(main())
