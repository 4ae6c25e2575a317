"""One worker against two: the same orders through the whole saga, scaled out.

Each run has its own fresh Tansu broker (so the second starts from an empty group and topics)
and N real workers (``faust -A app worker``) in one consumer group. Once every worker answers
``/ready`` (the last one's ready means its assignment came in the same generation as the
others'), the products are created through the API, and the orders are produced straight to
the ``orders`` topic as ``OrderPlaced`` events (keyed by order id over all its partitions;
priced as the API prices them), so the machine's cores go to the workers, not to an HTTP
client. The clock runs from the first order to the last ``order_confirmed`` notice read from
the topic; every order must be confirmed. Every hop of the saga (orders, inventory, payments,
the notices' consumers) is keyed over all partitions. The figure is the ratio of the two
rates (goal: two workers >= 1.7 x one, on a machine with a core per worker to spare).

Scale-out as efficiency, which two workers sharing two cores can show: the workers' CPU
(user + system, all of them together) from the first order until every worker idles again
(everything the orders caused is done), an order; two workers against one (goal: at most
EFFICIENCY_GOAL x). Each worker's idle CPU (polling the broker) is measured over IDLE_S
before the orders and reported apart: *net* is the CPU less what the workers would have
used idling for as long.

Two workers run twice: with one standby replica (the default: each worker also keeps a copy
of the other's table partitions, for a fast failover) and with none (SHOP_STANDBY_REPLICAS=0;
on a machine whose cores the workers share, the standby copies cost throughput).

:func:`measure_scaling_floor` measures the same efficiency of Faust itself, under the shop:
the bare agent of bench/faust_app.py writing a RocksDB row an event (no shop code), its
workers' CPU an event from the first event until every worker idles again, with one worker,
then two with a standby replica and two without. A standby replica applies every changelog
record of the other worker's rows; what that costs a bare agent is the floor under the
saga's figure with a standby replica.

:func:`measure_analytics_scaling` does the same for tracking events through the analytics
agents (sessions, windows, the merge), the shop's other high-volume work, in packs as the
tracking collector writes them (bench/analytics.py), over 8 partitions: the clock runs from
the first event sent to the merged windows counting every event (checked exactly). The
saga's messages cost the broker about as much CPU as the workers; a pack of tracked events
costs it little, so this is the work where a second core goes to a second worker. Its
rounds alternate the three set-ups and report each one's median (single runs on a shared
2-core machine swing by a third).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.analytics import (
    PACK,
    PARTITIONS,
    _counted,
    expected_counts,
    make_tracking_events,
    tracking_packs,
)
from bench.errors import BenchError
from bench.faust_agent import start_faust_worker
from bench.kafka_raw import create_topic, measure_producer, new_producer, produce_all
from bench.report import UNLIMITED, PhaseResult, say
from bench.saga import (
    IDLE_SHARE,
    IDLE_WINDOW_S,
    Confirmations,
    add_products,
    bench_sku,
    cpu_seconds,
)
from bench.shop_agent import _check_alive, _require_rabbitmq, _wait_ready
from models.orders import OrderLine, OrderPlaced
from scripts.devstack import Broker, Worker, broker_env, start_tansu, start_worker

__all__ = ["EFFICIENCY_GOAL", "GOAL", "measure_analytics_scaling", "measure_scaling",
           "measure_scaling_floor"]

#: Goal for two workers' rate against one's.
GOAL = 1.7
#: Goal for two workers' CPU an order against one's.
EFFICIENCY_GOAL = 1.15
#: Seconds over which each worker's idle CPU is measured before the orders.
IDLE_S = 3.0
PRODUCTS = 50
PRICE_CENTS = 1000
#: Seconds every worker must stay ready before the clock starts.
SETTLE_S = 5.0
#: The set-ups of the floor under scale-out: (workers, standby replicas).
FLOOR_SETUPS = ((1, 0), (2, 1), (2, 0))
#: Partitions of the floor's topic (the bare app's own, bench/faust_app.py).
FLOOR_PARTITIONS = 4
#: Seconds two bare workers stay ready before the clock starts (both join in one generation:
#: Tansu holds a join for half the session timeout; this is for a late second rebalance).
FLOOR_SETTLE_S = 2.0
#: What a Faust worker logs once its partitions are assigned and its tables recovered.
READY_LINE = b"[^Worker]: Ready"


async def measure_scaling(orders: int, workdir: Path, rabbit_url: str,
                          deadline: float) -> list[PhaseResult]:
    """Return the saga's rate with one worker and with two, the second with the ratio."""
    _require_rabbitmq(rabbit_url)
    one = await _run(1, orders, workdir, rabbit_url, deadline)
    one.extra["ratio_to_one_worker"] = 1.0
    say(f"scaling: 1 worker {one.rate:,.0f} orders/s")
    results = [one]
    for standbys in (1, 0):
        two = await _run(2, orders, workdir, rabbit_url, deadline, standbys=standbys)
        ratio = two.rate / one.rate if one.rate else 0.0
        two.extra["ratio_to_one_worker"] = round(ratio, 3)
        cpu = two.extra["cpu_ms_per_order"] / one.extra["cpu_ms_per_order"]
        net = two.extra["net_cpu_ms_per_order"] / one.extra["net_cpu_ms_per_order"]
        two.extra["cpu_ratio_to_one_worker"] = round(cpu, 3)
        two.extra["net_cpu_ratio_to_one_worker"] = round(net, 3)
        say(f"scaling: 2 workers, {standbys} standby replica(s), {two.rate:,.0f} orders/s = "
            f"{ratio:.2f} x one (goal >= {GOAL}); worker CPU an order "
            f"{two.extra['cpu_ms_per_order']:.1f} ms = {cpu:.2f} x one's "
            f"{one.extra['cpu_ms_per_order']:.1f} ms (net of idle polling {net:.2f} x; goal "
            f"<= {EFFICIENCY_GOAL})")
        results.append(two)
    return results


def workers_cpu(workers: list[Worker]) -> float:
    """Return the CPU seconds the ``workers`` have used together."""
    return sum(cpu_seconds(w.process.pid) for w in workers if w.process is not None)


async def wait_all_idle(workers: list[Worker], deadline: float) -> tuple[float, float]:
    """Wait until every one of ``workers`` idles (each below IDLE_SHARE of a core over
    IDLE_WINDOW_S); return when that window began and the workers' CPU seconds then."""
    pids = [w.process.pid for w in workers if w.process is not None]
    used = [cpu_seconds(pid) for pid in pids]
    while True:
        began = time.perf_counter()
        await asyncio.sleep(IDLE_WINDOW_S)
        now = [cpu_seconds(pid) for pid in pids]
        if all(b - a < IDLE_SHARE * IDLE_WINDOW_S for a, b in zip(used, now, strict=True)):
            return began, sum(used)
        if time.monotonic() > deadline:
            raise BenchError("the workers did not work off the orders' backlog in time")
        used = now


def placed_orders(count: int, run: int) -> list[OrderPlaced]:
    """Return ``count`` orders of one to three products each, priced like the API prices."""
    rng = random.Random(run)
    placed = []
    for n in range(count):
        skus = rng.sample(range(PRODUCTS), rng.randint(1, 3))
        lines = [OrderLine(sku=bench_sku("SCALE", s), quantity=1, unit_price_cents=PRICE_CENTS)
                 for s in sorted(skus)]
        total = PRICE_CENTS * len(lines)
        placed.append(OrderPlaced.new(
            order_id=f"scale-{run}-{n:06d}", user_id=f"scale-customer-{n % 200}", items=lines,
            subtotal_cents=total, discount_cents=0, total_cents=total,
            payment_method="pm_card_ok"))
    return placed


async def _run(count: int, orders: int, workdir: Path, rabbit_url: str,
               deadline: float, *, standbys: int = 1) -> PhaseResult:
    """One run of ``count`` workers, each keeping ``standbys`` standby copies of the other's
    table partitions (SHOP_STANDBY_REPLICAS; the default is 1; one worker has none)."""
    base = workdir / f"scaling-{count}-standby-{standbys}"
    base.mkdir(parents=True, exist_ok=True)
    broker = start_tansu(log_path=base / "tansu.log")
    workers: list[Worker] = []
    try:
        spawned = time.monotonic()
        env = {**UNLIMITED, "SHOP_STANDBY_REPLICAS": str(standbys)}
        workers = [start_worker(f"w{n}", broker_env(broker), rabbit_url, base, extra_env=env)
                   for n in range(count)]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _wait_settled(http, workers)
            startup = time.monotonic() - spawned
            await add_products(http, [w.url for w in workers], "SCALE", PRODUCTS,
                               price_cents=PRICE_CENTS)
        placed = placed_orders(orders, count)
        async with Confirmations(broker.bootstrap) as confirmations:
            producer = new_producer(broker.bootstrap)
            await producer.start()
            try:
                await wait_all_idle(workers, deadline)
                idle_before = workers_cpu(workers)
                await asyncio.sleep(IDLE_S)
                idle_per_s = (workers_cpu(workers) - idle_before) / IDLE_S
                cpu_before = workers_cpu(workers)
                started = time.perf_counter()
                sent = [await producer.send("orders", key=p.order_id.encode(), value=p.dumps())
                        for p in placed]
                await asyncio.gather(*sent)
                partitions = len(await producer.partitions_for("orders"))
            finally:
                await producer.stop()
            await confirmations.wait_for([p.order_id for p in placed], deadline)
            seconds = max(confirmations.seen[p.order_id] for p in placed) - started
            done, cpu_done = await wait_all_idle(workers, deadline)
            cpu_used = cpu_done - cpu_before
            busy = done - started
    finally:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        broker.stop()
    standby = f", {standbys} standby" if count > 1 else ""
    return PhaseResult(f"{count} worker{'s' if count > 1 else ''}{standby}: the saga, "
                       f"{orders:,} orders ({partitions} partitions)", orders, seconds,
                       startup_seconds=startup,
                       extra={"phase": "scaling", "workers": count, "partitions": partitions,
                              "standby_replicas": standbys if count > 1 else 0,
                              "confirmed": orders,
                              "cpu_ms_per_order": round(cpu_used / orders * 1000, 3),
                              "net_cpu_ms_per_order": round(
                                  max(cpu_used - idle_per_s * busy, 0.0) / orders * 1000, 3),
                              "idle_cpu_share": round(idle_per_s, 3),
                              "seconds_until_idle": round(busy, 2)})


async def _wait_settled(http: aiohttp.ClientSession, workers: list[Worker]) -> None:
    """Wait until every worker is ready, and still is a few seconds later (a worker that
    joins the group triggers a second rebalance just after the first one's readiness)."""
    while True:
        for worker in workers:
            await _wait_ready(http, worker)
        if len(workers) == 1:
            return
        await asyncio.sleep(SETTLE_S)
        if all([await _is_ready(http, worker) for worker in workers]):
            return


async def _is_ready(http: aiohttp.ClientSession, worker: Worker) -> bool:
    async with http.get(worker.url + "/ready") as response:
        return response.status == 200


#: The set-ups of the analytics rounds: (workers, standby replicas).
ANALYTICS_SETUPS = ((1, 0), (2, 1), (2, 0))


async def measure_analytics_scaling(events: int, workdir: Path, rabbit_url: str,
                                    deadline: float, rounds: int = 3) -> list[PhaseResult]:
    """Return the analytics rate with one worker and with two (medians of ``rounds``)."""
    _require_rabbitmq(rabbit_url)
    tracked = make_tracking_events(events)
    rates: dict[tuple[int, int], list[float]] = {setup: [] for setup in ANALYTICS_SETUPS}
    for round_ in range(rounds):
        for count, standbys in ANALYTICS_SETUPS:
            rate = await _run_analytics(count, standbys, tracked, workdir / f"round-{round_}",
                                        rabbit_url, deadline)
            rates[(count, standbys)].append(rate)
            say(f"scaling (analytics), round {round_ + 1} of {rounds}: {count} worker(s), "
                f"{standbys} standby: {rate:,.0f} events/s")
    one = statistics.median(rates[(1, 0)])
    results = []
    for (count, standbys), values in rates.items():
        median = statistics.median(values)
        standby = f", {standbys} standby" if count > 1 else ""
        results.append(PhaseResult(
            f"{count} worker{'s' if count > 1 else ''}{standby}: tracked events, packs of "
            f"{PACK}", events, events / median,
            extra={"phase": "scaling-analytics", "workers": count, "partitions": PARTITIONS,
                   "standby_replicas": standbys, "rounds": rounds, "pack": PACK,
                   "rates": [round(r) for r in values],
                   "ratio_to_one_worker": round(median / one, 3) if one else 0.0}))
    for result in results[1:]:
        say(f"scaling (analytics): {result.name}: {result.rate:,.0f} events/s (median) = "
            f"{result.extra['ratio_to_one_worker']:.2f} x one (goal >= {GOAL})")
    return results


async def _run_analytics(count: int, standbys: int, tracked: list[tuple[str, bytes]],
                         base: Path, rabbit_url: str, deadline: float) -> float:
    """One run: ``count`` workers on a fresh broker; return the tracked events/s."""
    base = base / f"analytics-{count}-standby-{standbys}"
    base.mkdir(parents=True, exist_ok=True)
    broker = start_tansu(log_path=base / "tansu.log")
    workers: list[Worker] = []
    expected = sum(expected_counts(tracked).values())
    try:
        await create_topic(broker.bootstrap, "analytics", PARTITIONS)
        env = {**UNLIMITED, "SHOP_STANDBY_REPLICAS": str(standbys),
               "SHOP_TOPIC_PARTITIONS": str(PARTITIONS)}
        workers = [start_worker(f"w{n}", broker_env(broker), rabbit_url, base, extra_env=env)
                   for n in range(count)]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _wait_settled(http, workers)
            started = time.perf_counter()
            await measure_producer(broker.bootstrap, "analytics", tracking_packs(tracked, PACK))
            while (done := sum((await _counted(http, workers[0].url)).values())) < expected:
                for worker in workers:
                    _check_alive(worker)
                if time.monotonic() > deadline:
                    raise BenchError(f"the windows counted {done:,} of {expected:,} events in "
                                     f"time; see {base}")
                await asyncio.sleep(0.1)
            seconds = time.perf_counter() - started
            if done != expected:
                raise BenchError(f"the windows counted {done:,} events of {expected:,}")
    finally:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
        broker.stop()
    return len(tracked) / seconds


async def measure_scaling_floor(events: Sequence[tuple[str, bytes]], workdir: Path,
                                deadline: float) -> list[PhaseResult]:
    """Return the bare agent's workers' CPU an event (a row written each) in every set-up of
    FLOOR_SETUPS, on one broker of its own, with the ratio to one worker's."""
    base = workdir / "scaling-floor"
    base.mkdir(parents=True, exist_ok=True)
    broker = start_tansu(log_path=base / "tansu.log")
    try:
        results = [await _floor_run(broker, count, standbys, events, base, deadline)
                   for count, standbys in FLOOR_SETUPS]
    finally:
        broker.stop()
    one = results[0].extra["cpu_us_per_event"]
    for result in results:
        result.extra["cpu_ratio_to_one_worker"] = round(
            result.extra["cpu_us_per_event"] / one, 3) if one else 0.0
    return results


async def _floor_run(broker: Broker, count: int, standbys: int,
                     events: Sequence[tuple[str, bytes]], base: Path,
                     deadline: float) -> PhaseResult:
    """One set-up: ``count`` bare workers in a group of their own take ``events``."""
    setup = f"floor-{count}-standby-{standbys}"
    topic, app_id = f"bench-{setup}", f"bench-{setup}"
    await create_topic(broker.bootstrap, topic, FLOOR_PARTITIONS)
    workers: list[Worker] = []
    try:
        # A target past the last event: the workers share the events, none counts them all.
        workers = [start_faust_worker(broker, len(events) + 1, base, "write", topic,
                                      name=f"{setup}-w{n}", app_id=app_id,
                                      standbys=standbys)[0] for n in range(count)]
        await _wait_logged_ready(workers, deadline)
        await asyncio.sleep(FLOOR_SETTLE_S if count > 1 else 0.0)
        await wait_all_idle(workers, deadline)
        cpu_before = workers_cpu(workers)
        started = time.perf_counter()
        await produce_all(broker.bootstrap, topic, events)
        # Every row written first: a few hundred events keep a worker below the idle share,
        # so idleness alone could end the clock before they were taken.
        written = await _records_reach(broker.bootstrap, f"{app_id}-raw-rows-changelog",
                                       len(events), deadline)
        done, cpu_done = await wait_all_idle(workers, deadline)
    finally:
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in workers))
    cpu_used = cpu_done - cpu_before
    return PhaseResult(
        f"Faust's floor, {count} worker{'s' if count > 1 else ''}, {standbys} standby: a bare "
        f"agent writing a row an event", len(events), done - started,
        extra={"phase": "scaling-floor", "workers": count, "standby_replicas": standbys,
               "partitions": FLOOR_PARTITIONS, "changelog_records": written,
               "cpu_us_per_event": round(cpu_used / len(events) * 1e6, 1)})


async def _records_reach(bootstrap: str, topic: str, count: int, deadline: float) -> int:
    """Read ``topic`` from its beginning until it holds ``count`` records; return how many."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        while not partitions:  # created by the workers as they start: here by now
            if time.monotonic() > deadline:
                raise BenchError(f"{topic} was not created in time")
            await asyncio.sleep(0.2)
            await consumer.topics()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, partition) for partition in partitions]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        while seen < count:
            if time.monotonic() > deadline:
                raise BenchError(f"{topic} holds {seen:,} records, not {count:,}, in time")
            batches = await consumer.getmany(timeout_ms=200, max_records=20_000)
            seen += sum(len(records) for records in batches.values())
        return seen
    finally:
        await consumer.stop()


async def _wait_logged_ready(workers: list[Worker], deadline: float) -> None:
    """Wait until every bare worker has logged that it is ready (it has no /ready)."""
    waiting = list(workers)
    while waiting:
        for worker in list(waiting):
            assert worker.process is not None and worker.log_path is not None
            if worker.process.poll() is not None:
                raise BenchError(f"the bare Faust worker {worker.name} exited with "
                                 f"{worker.process.returncode}; see {worker.log_path}")
            if READY_LINE in worker.log_path.read_bytes():
                waiting.remove(worker)
        if time.monotonic() > deadline:
            raise BenchError(f"the bare Faust workers did not start in time; see "
                             f"{workers[0].log_path}")
        await asyncio.sleep(0.2)
