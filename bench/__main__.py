"""``python -m bench``: every throughput phase against one embedded Tansu broker."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.analytics import measure_analytics_alone, print_analytics_table
from bench.errors import BenchError
from bench.events import SESSIONS, make_events
from bench.faust_agent import measure_faust_agent, measure_faust_floor
from bench.http import measure_http
from bench.kafka_raw import create_topic, measure_consumer, measure_producer
from bench.ledger import SIZES as LEDGER_SIZES
from bench.ledger import measure_ledger, print_ledger
from bench.logs import measure_logs, print_logs_table
from bench.notifications import STREAMS, measure_notifications
from bench.report import (
    PhaseResult,
    environment,
    print_faust_floor,
    print_http_table,
    print_saga_figures,
    print_scaling_floor,
    print_scaling_table,
    print_table,
    result_document,
    say,
    write_results,
)
from bench.saga import PRODUCTS, measure_saga
from bench.scaling import (
    EFFICIENCY_GOAL,
    measure_analytics_scaling,
    measure_scaling,
    measure_scaling_floor,
)
from bench.scaling import GOAL as SCALING_GOAL
from bench.shop_agent import measure_shop_agent
from bench.soak import add_soak_arguments, print_soak_figures, soak_arguments, soak_phase
from scripts.devstack import Broker, StackError, start_tansu

RAW_TOPIC = "bench-raw-events"
DEFAULT_RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
HTTP_CONCURRENCY = 50


@dataclass(frozen=True)
class Options:
    """What to run: message counts per phase, where to write, which RabbitMQ to use."""

    messages: int
    faust_messages: int
    shop_messages: int
    saga_orders: int
    saga_latency_seconds: float
    http_requests: int
    json_path: Path | None
    rabbit_url: str
    quick: bool
    keep_logs: bool
    log_records: int = 50_000
    log_requests: int = 10_000
    only: str | None = None
    tracking_events: int = 200_000
    scaling_rounds: int = 3
    http_rounds: int = 3
    saga_products: int = PRODUCTS
    soak_seconds: float = 600.0
    soak_idle_seconds: float = 60.0
    soak_users: int = 40
    soak_rate: float = 60.0
    soak_settings: tuple[tuple[str, str], ...] = ()


def parse_options(argv: list[str] | None = None) -> Options:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--messages", type=int, help="raw producer/consumer messages "
                        "(default 200000; --quick 20000)")
    parser.add_argument("--faust-messages", type=int, help="bare Faust agent messages "
                        "(default 30000; --quick 5000): Faust is ~100x slower than raw")
    parser.add_argument("--shop-messages", type=int, help="shop agent events "
                        "(default 20000; --quick 2000)")
    parser.add_argument("--saga-orders", type=int, help="orders through the saga, saturated "
                        "(default 2000; --quick 200)")
    parser.add_argument("--saga-products", type=int, help="skus the saga's orders spread over "
                        f"(default {PRODUCTS}; 1: every order on one sku, a flash sale)")
    parser.add_argument("--saga-latency-seconds", type=float, help="seconds of orders at half "
                        "the saturated rate, for latency (default 10; --quick 3)")
    parser.add_argument("--http-requests", type=int, help="requests per HTTP endpoint, "
                        f"{HTTP_CONCURRENCY} connections (default 20000; --quick 2000)")
    parser.add_argument("--log-records", type=int, help="log records through the central "
                        "log and raw aio-pika messages (default 50000; --quick 5000)")
    parser.add_argument("--log-requests", type=int, help="requests to a view that logs, with "
                        "log shipping off and on (default 10000; --quick 1000)")
    parser.add_argument("--tracking-events", type=int, help="tracking events through the "
                        "analytics windows, one worker and two (default 200000; --quick 20000)")
    parser.add_argument("--scaling-rounds", type=int, help="rounds of one worker against two "
                        "on the tracking events; medians (default 3; --quick 1)")
    parser.add_argument("--http-rounds", type=int, help="rounds of the HTTP reads, each "
                        "endpoint loaded in turn in each round; medians (default 3; --quick 1)")
    parser.add_argument("--only", choices=["http", "saga", "logs", "soak", "scaling"],
                        help="run just this phase "
                        "(http: the HTTP reads against the bare handler; saga: the raw "
                        "producer, then the order saga; logs: centralized logging against raw "
                        "aio-pika, and a view's p99 with shipping off and on; soak: one worker "
                        "under simulate, its memory over time (only run alone); scaling: the "
                        "saga through one worker then two, rate and CPU an order; writes only "
                        "--json if given)")
    add_soak_arguments(parser)
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the results to PATH")
    parser.add_argument("--rabbit-url", default=os.environ.get("SHOP_RABBIT_URL",
                                                               DEFAULT_RABBIT_URL),
                        help="RabbitMQ for the shop worker (default: SHOP_RABBIT_URL or "
                        f"{DEFAULT_RABBIT_URL})")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the work dir (broker and worker logs) after a good run")
    args = parser.parse_args(argv)
    defaults = (20_000, 5_000, 2_000) if args.quick else (200_000, 30_000, 20_000)
    counts = (args.messages, args.faust_messages, args.shop_messages)
    messages, faust_messages, shop_messages = (
        given if given is not None else default
        for given, default in zip(counts, defaults, strict=True)
    )
    saga_orders = args.saga_orders or (200 if args.quick else 2000)
    saga_seconds = args.saga_latency_seconds or (3.0 if args.quick else 10.0)
    http_requests = args.http_requests or (2000 if args.quick else 20_000)
    if min(messages, faust_messages, shop_messages, saga_orders, http_requests) < 1:
        parser.error("message counts must be at least 1")
    log_records = args.log_records or (5_000 if args.quick else 50_000)
    log_requests = args.log_requests or (1_000 if args.quick else 10_000)
    tracking_events = args.tracking_events or (20_000 if args.quick else 200_000)
    scaling_rounds = args.scaling_rounds or (1 if args.quick else 3)
    http_rounds = args.http_rounds or (1 if args.quick else 3)
    saga_products = args.saga_products or PRODUCTS
    if min(log_records, log_requests, tracking_events, scaling_rounds, http_rounds,
           saga_products) < 1:
        parser.error("message counts and rounds must be at least 1")
    soak = soak_arguments(parser, args)
    return Options(messages, faust_messages, shop_messages, saga_orders, saga_seconds,
                   http_requests, args.json, args.rabbit_url, args.quick, args.keep_logs,
                   log_records=log_records, log_requests=log_requests, only=args.only,
                   tracking_events=tracking_events, scaling_rounds=scaling_rounds,
                   http_rounds=http_rounds, saga_products=saga_products, **soak)


async def http_phase(options: Options, broker: Broker, workdir: Path) -> list[PhaseResult]:
    """Run the HTTP reads against the bare handler; return their results."""
    deadline = time.monotonic() + 180 + options.http_requests * options.http_rounds / 200
    return await measure_http(broker, workdir, options.rabbit_url, options.http_requests,
                              HTTP_CONCURRENCY, deadline, rounds=options.http_rounds)


async def saga_phase(options: Options, broker: Broker, workdir: Path,
                     producer: PhaseResult) -> list[PhaseResult]:
    """Run the saga (saturated, then latency); its rate is compared with ``producer``'s."""
    deadline = time.monotonic() + 180 + options.saga_orders / 50
    saga = await measure_saga(broker, workdir, options.rabbit_url, options.saga_orders, 64,
                              options.saga_latency_seconds, deadline, options.saga_products)
    saga[0].extra["ratio_to_raw_producer"] = round(saga[0].rate / producer.rate, 5)
    say("stock commands against ledgers of " + ", ".join(f"{n:,}" for n in LEDGER_SIZES)
        + " orders")
    saga[0].extra["stock_command_us_by_ledger"] = {
        size: round(us, 1) for size, us in measure_ledger().items()}
    return saga


async def logs_phase(options: Options, broker: Broker, workdir: Path) -> list[PhaseResult]:
    """Run centralized logging against raw aio-pika and a view's p99 with shipping off/on."""
    say(f"centralized logging: {options.log_records:,} records against raw aio-pika; "
        f"{options.log_requests:,} requests to a view that logs, shipping off and on")
    logs = await measure_logs(broker, workdir, options.rabbit_url, options.log_records,
                              options.log_requests, HTTP_CONCURRENCY)
    for result in logs:
        result.extra["phase"] = "logs"
    return logs


async def faust_floor(options: Options, broker: Broker, workdir: Path,
                      events: Sequence[tuple[str, bytes]]) -> list[PhaseResult]:
    """Run the bare agent on ``events`` as raw bytes, without and with a table write each."""
    say(f"Faust's floor: {len(events):,} raw events through a bare agent, then through one "
        "that writes a RocksDB row an event")
    deadline = time.monotonic() + 240 + len(events) / 250
    floor = await measure_faust_floor(broker, events, workdir, deadline)
    say(f"Faust's floor done: {floor[0].extra['event_us']:.0f} µs an event, "
        f"{floor[0].extra['table_write_us']:.0f} µs a table write, "
        f"{floor[0].extra['bulk_table_write_us']:.0f} µs the shop's")
    return floor


async def saga_only(options: Options, broker: Broker, workdir: Path) -> list[PhaseResult]:
    """Run the raw producer (the saga's yardstick), Faust's floor and the saga phase; return
    their results."""
    await create_topic(broker.bootstrap, RAW_TOPIC, 4)
    say(f"raw producer: {options.messages:,} messages to {RAW_TOPIC!r} (4 partitions)")
    producer = await measure_producer(broker.bootstrap, RAW_TOPIC, make_events(options.messages))
    floor = await faust_floor(options, broker, workdir, make_events(options.faust_messages))
    say(f"order saga end to end (real worker): {options.saga_orders:,} orders")
    return [producer, *await saga_phase(options, broker, workdir, producer), *floor]


async def scaling_phase(options: Options, broker: Broker, workdir: Path
                        ) -> list[PhaseResult]:
    """Run the saga through one worker, then two (each on a broker of its own); then Faust's
    floor under scale-out (a bare agent writing a row an event, in the same set-ups)."""
    say(f"scaling: {options.saga_orders:,} orders through the saga with one worker, then "
        "two with a standby replica and two without (each run on its own fresh broker)")
    deadline = time.monotonic() + 360 + options.saga_orders / 10
    saga = await measure_scaling(options.saga_orders, workdir, options.rabbit_url, deadline)
    say(f"scaling: Faust's floor, {options.faust_messages:,} events through a bare agent "
        "writing a row each, one worker, then two with a standby replica and two without")
    floor = await measure_scaling_floor(make_events(options.faust_messages), workdir,
                                        time.monotonic() + 240 + options.faust_messages / 250)
    say("scaling: Faust's floor: two workers' CPU an event "
        + ", ".join(f"{r.extra['cpu_ratio_to_one_worker']:.2f} x one's with "
                    f"{r.extra['standby_replicas']} standby" for r in floor[1:]))
    return [*saga, *floor]


#: The phases ``--only`` runs alone.
PHASES: dict[str, Callable[[Options, Broker, Path], Awaitable[list[PhaseResult]]]] = {
    "http": http_phase, "saga": saga_only, "logs": logs_phase, "soak": soak_phase,
    "scaling": scaling_phase}


async def until_sigterm(run: Awaitable[list[PhaseResult]]) -> list[PhaseResult]:
    """Await ``run``, cancelled by SIGTERM (the bench then stops its brokers and workers)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run


async def run_phases(options: Options, broker: Broker, workdir: Path) -> list[PhaseResult]:
    """Run the phases in order; return their results."""
    bootstrap = broker.bootstrap
    started = time.perf_counter()
    events = make_events(max(options.messages, options.faust_messages, options.shop_messages))
    size = sum(len(value) for _, value in events) / len(events)
    say(f"{len(events):,} events generated ({size:.0f} bytes on average, {SESSIONS:,} "
        f"sessions) in {time.perf_counter() - started:.1f} s")
    results: list[PhaseResult] = []

    await create_topic(bootstrap, RAW_TOPIC, 4)
    say(f"1/6 raw producer: {options.messages:,} messages to {RAW_TOPIC!r} (4 partitions)")
    results.append(await measure_producer(bootstrap, RAW_TOPIC, events[:options.messages]))
    say(f"1/6 done: {results[-1].rate:,.0f} msgs/s")

    say(f"2/6 raw consumer + json.loads + count: {options.messages:,} messages")
    results.append(await measure_consumer(bootstrap, RAW_TOPIC, options.messages))
    say(f"2/6 done: {results[-1].rate:,.0f} msgs/s "
        f"({results[-1].extra['distinct_keys']:,} keys)")

    say(f"3/6 bare Faust agent + RocksDB table: {options.faust_messages:,} messages")
    deadline = time.monotonic() + 120 + options.faust_messages / 500
    bare_faust = await measure_faust_agent(broker, events[:options.faust_messages], workdir,
                                           deadline)
    results.append(bare_faust)
    say(f"3/6 done: {results[-1].rate:,.0f} msgs/s "
        f"(start-up {results[-1].startup_seconds:.1f} s)")

    say(f"4/6 shop agent (real worker): {options.shop_messages:,} events")
    deadline = time.monotonic() + 120 + options.shop_messages / 100
    results.append(await measure_shop_agent(
        broker, events[:options.shop_messages], workdir, options.rabbit_url, deadline))
    say(f"4/6 done: {results[-1].rate:,.0f} events/s "
        f"(start-up {results[-1].startup_seconds:.1f} s)")

    say(f"5/6 order saga end to end (real worker): {options.saga_orders:,} orders")
    saga, latency = await saga_phase(options, broker, workdir, results[0])
    results.extend([saga, latency])
    say(f"5/6 done: {saga.rate:,.0f} orders/s = {saga.rate / results[0].rate:.4f} x the raw "
        f"producer; at {latency.extra['rate']:,.0f} orders/s p50 {latency.extra['p50_ms']} ms, "
        f"p99 {latency.extra['p99_ms']} ms")

    say(f"6/6 HTTP reads (real worker) against a bare aiohttp handler: "
        f"{options.http_requests:,} requests each, {HTTP_CONCURRENCY} connections, "
        f"{options.http_rounds} round(s)")
    http = await http_phase(options, broker, workdir)
    results.extend(http)
    say("6/6 done: " + ", ".join(f"{r.name}: {r.extra['ratio_to_bare_aiohttp']} x bare"
                                  for r in http[1:]))

    results.extend(await logs_phase(options, broker, workdir))

    notices = min(3000, options.shop_messages)  # like the shop agent's, capped
    say(f"notifications: latency to {STREAMS} open SSE streams, then {notices:,} notices at "
        "once through the notification agents")
    results.extend(await measure_notifications(
        workdir, options.rabbit_url, count=notices, rate=100.0,
        latency_seconds=options.saga_latency_seconds, deadline=time.monotonic() + 300,
        bare_rate=bare_faust.rate))
    latency, pipeline, inbox = results[-3:]
    say(f"notifications done: p50 {latency.extra['p50_ms']} ms, p99 "
        f"{latency.extra['p99_ms']} ms; {pipeline.rate:,.0f} notices/s end to end, "
        f"{inbox.rate:,.0f}/s through the inbox agent = "
        f"{inbox.extra['ratio_to_bare_faust_agent']} x the bare Faust agent")

    results.extend(await faust_floor(options, broker, workdir,
                                     events[:options.faust_messages]))

    results.extend(await scaling_phase(options, broker, workdir))

    say(f"analytics windows: {options.tracking_events:,} tracking events, raw aiokafka "
        "consume + decode against a real worker's windows (on a broker of its own)")
    analytics = await measure_analytics_alone(
        workdir, options.rabbit_url, options.tracking_events,
        time.monotonic() + 180 + options.tracking_events / 100)
    results.extend(analytics)
    say(f"analytics done: {analytics[1].rate:,.0f} events/s end to end = "
        f"{analytics[1].extra['ratio_to_raw_consumer']} x raw; the analytics.tracked agent "
        f"{analytics[2].rate:,.0f} events/s of its own time; counts exact")

    say(f"scaling (analytics): {options.tracking_events:,} tracking events with one worker, "
        f"then two with a standby replica and two without, {options.scaling_rounds} round(s)")
    deadline = time.monotonic() + options.scaling_rounds * (300 + options.tracking_events / 500)
    results.extend(await measure_analytics_scaling(
        options.tracking_events, workdir, options.rabbit_url, deadline, options.scaling_rounds))
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    options = parse_options(argv)
    env = environment()
    say(f"{env['cores']} cores, load {env['loadavg_1m']:.2f}, python {env['python']}, "
        f"faust {env['faust']}, aiokafka {env['aiokafka']}, rocksdict {env['rocksdict']}")
    workdir = Path(tempfile.mkdtemp(prefix="shopstream-bench-"))
    succeeded = False
    try:
        broker = start_tansu(log_path=workdir / "tansu.log")
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    say(f"Tansu on {broker.bootstrap} (memory storage); work dir {workdir}")
    try:
        phases = PHASES.get(options.only or "", run_phases)
        results = asyncio.run(until_sigterm(phases(options, broker, workdir)))
        succeeded = True
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except asyncio.CancelledError:
        say("terminated")
        return 143
    except (BenchError, StackError) as exc:
        say(f"error: {exc}")
        return 1
    finally:
        broker.stop()
        say("Tansu stopped")
        if succeeded and not options.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"logs kept in {workdir}")
    if options.only is not None:
        print()
        settings: dict[str, object]
        if options.only == "http":
            print_http_table(results)
            settings = {"http_requests": options.http_requests,
                        "http_concurrency": HTTP_CONCURRENCY,
                        "http_rounds": options.http_rounds}
        elif options.only == "soak":
            print_soak_figures(results[0])
            settings = {"soak_seconds": options.soak_seconds,
                        "soak_idle_seconds": options.soak_idle_seconds,
                        "soak_users": options.soak_users, "soak_rate": options.soak_rate}
        elif options.only == "scaling":
            print_scaling_table([r for r in results if r.extra["phase"] == "scaling"],
                                SCALING_GOAL, efficiency_goal=EFFICIENCY_GOAL)
            print_scaling_floor([r for r in results if r.extra["phase"] == "scaling-floor"])
            settings = {"saga_orders": options.saga_orders,
                        "faust_messages": options.faust_messages}
        elif options.only == "saga":
            print_table(results, results[0])
            print_saga_figures(results[1], results[2])
            print_ledger(results[1].extra["stock_command_us_by_ledger"])
            print_faust_floor(results[3])
            settings = {"messages": options.messages, "saga_orders": options.saga_orders}
        else:
            print_logs_table(results)
            settings = {"log_records": options.log_records,
                        "log_requests": options.log_requests}
        if options.json_path is not None:
            options.json_path.write_text(json.dumps(result_document(
                results, results[0], env, {**settings, "only": options.only}),
                indent=2) + "\n")
        return 0
    baseline = results[1]
    print()
    http = [r for r in results if "ratio_to_bare_aiohttp" in r.extra]
    logs = [r for r in results if r.extra.get("phase") == "logs"]
    scaling = [r for r in results if r.extra.get("phase") == "scaling"]
    tracking = [r for r in results if r.extra.get("phase") == "scaling-analytics"]
    analytics = [r for r in results if r.extra.get("phase") == "analytics"]
    floor = [r for r in results if r.extra.get("phase") == "scaling-floor"]
    print_table([r for r in results if r not in http and r not in logs and r not in scaling
                 and r not in analytics and r not in tracking and r not in floor], baseline)
    saga = next(r for r in results if "stock_command_us_by_ledger" in r.extra)
    print_saga_figures(saga, results[results.index(saga) + 1])
    print_ledger(saga.extra["stock_command_us_by_ledger"])
    print_faust_floor(next(r for r in results if r.extra.get("phase") == "faust-floor"))
    print()
    print_analytics_table(analytics)
    print()
    print_scaling_table(scaling, SCALING_GOAL, efficiency_goal=EFFICIENCY_GOAL)
    print_scaling_floor(floor)
    print()
    print_scaling_table(tracking, SCALING_GOAL, unit="events")
    print()
    print_http_table(http)
    print()
    print_logs_table(logs)
    if options.faust_messages != options.messages or options.shop_messages != options.messages:
        print(f"note: the Faust phases use fewer messages ({options.faust_messages:,} and "
              f"{options.shop_messages:,}) than the raw ones ({options.messages:,}): "
              "they are two orders of magnitude slower")
    document = result_document(results, baseline, env, {
        "messages": options.messages, "faust_messages": options.faust_messages,
        "shop_messages": options.shop_messages, "saga_orders": options.saga_orders,
        "http_requests": options.http_requests, "http_concurrency": HTTP_CONCURRENCY,
        "log_records": options.log_records, "log_requests": options.log_requests,
        "tracking_events": options.tracking_events, "scaling_rounds": options.scaling_rounds,
        "quick": options.quick, "sessions": SESSIONS})
    for path in write_results(document, options.json_path):
        say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
