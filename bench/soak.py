"""The soak: one real worker under the shop's own ``simulate`` for a set time, its memory
sampled all along and after the load stops.

The worker is seeded with the demo catalog, then ``faust -A app simulate`` drives it (open
loop, ``users`` customers, ``rate`` actions a second) for ``seconds``. Every SAMPLE_S the
bench reads the worker's RSS (``/proc/PID/status``) and its stores' figures from ``/metrics``
(the ``shop_store_*`` gauges: memtables, the shared block cache, the write-buffer budget).
When the simulation ends it keeps sampling the idle worker for ``idle_seconds``.

The figures: RSS at the start of the load, its middle and its end, after the idle wait, the
peak, and the growth over the last half of the load (end against middle, in %): a worker
whose memory is bounded plateaus, so its last half grows little. The same growth is given for
RSS less the stores' block cache (the memtables are charged to it): the cache fills up to its
size over the first minutes of a run, and is bounded by it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from bench.errors import BenchError
from bench.report import UNLIMITED, PhaseResult, say
from bench.shop_agent import _require_rabbitmq, _wait_ready
from scripts.devstack import ROOT, Broker, Worker, broker_env, start_worker

__all__ = ["Sample", "add_soak_arguments", "measure_soak", "print_soak_figures", "rss_mb",
           "soak_arguments", "soak_phase"]

#: Seconds between two samples of the worker's memory.
SAMPLE_S = 5.0
#: Seconds between two progress lines while the load runs.
PROGRESS_S = 30.0
#: The stores' gauges the bench reads from /metrics, by the name it reports them under.
GAUGES = {"memtables_mb": "shop_store_memtables_bytes",
          "block_cache_mb": "shop_store_block_cache_bytes",
          "write_buffers_mb": "shop_store_write_buffers_bytes",
          "table_readers_mb": "shop_store_table_readers_bytes"}
MB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """The worker's memory at ``at`` seconds since the load started (negative: before)."""

    at: float
    loaded: bool
    rss_mb: float
    memtables_mb: float | None
    block_cache_mb: float | None
    write_buffers_mb: float | None
    table_readers_mb: float | None


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the soak's options to the bench's command line."""
    parser.add_argument("--soak-seconds", type=float, default=600.0,
                        help="seconds of simulated traffic in the soak (default 600)")
    parser.add_argument("--soak-idle-seconds", type=float, default=60.0,
                        help="seconds the soak keeps sampling the worker after the load "
                        "(default 60)")
    parser.add_argument("--soak-users", type=int, default=40,
                        help="simulated customers in the soak (default 40)")
    parser.add_argument("--soak-rate", type=float, default=60.0,
                        help="actions a second in the soak (default 60)")
    parser.add_argument("--soak-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a SHOP_* setting of the soak's worker, e.g. "
                        "SHOP_STORE_WRITE_BUFFER_MB=64 (repeatable)")


def soak_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """Return the soak's fields of the bench's options, checked."""
    if args.soak_seconds <= 0 or args.soak_idle_seconds < 0 or args.soak_users < 1 \
            or args.soak_rate <= 0:
        parser.error("the soak's seconds, users and rate must be positive")
    settings = []
    for setting in args.soak_setting:
        name, equals, value = setting.partition("=")
        if not equals or not name.startswith("SHOP_"):
            parser.error(f"--soak-setting takes SHOP_NAME=VALUE, not {setting!r}")
        settings.append((name, value))
    return {"soak_seconds": args.soak_seconds, "soak_idle_seconds": args.soak_idle_seconds,
            "soak_users": args.soak_users, "soak_rate": args.soak_rate,
            "soak_settings": tuple(settings)}


class SoakOptions(Protocol):
    """The bench's options the soak reads."""

    @property
    def rabbit_url(self) -> str: ...
    @property
    def soak_seconds(self) -> float: ...
    @property
    def soak_idle_seconds(self) -> float: ...
    @property
    def soak_users(self) -> int: ...
    @property
    def soak_rate(self) -> float: ...
    @property
    def soak_settings(self) -> tuple[tuple[str, str], ...]: ...


async def soak_phase(options: SoakOptions, broker: Broker, workdir: Path) -> list[PhaseResult]:
    """Run one worker under simulate for the soak's time; return its memory figures."""
    say(f"soak: one worker under simulate --users {options.soak_users} --rate "
        f"{options.soak_rate:g} for {options.soak_seconds:.0f} s, then "
        f"{options.soak_idle_seconds:.0f} s idle"
        + "".join(f", {name}={value}" for name, value in options.soak_settings))
    return [await measure_soak(broker, workdir, options.rabbit_url,
                               seconds=options.soak_seconds,
                               idle_seconds=options.soak_idle_seconds,
                               users=options.soak_users, rate=options.soak_rate,
                               worker_env=dict(options.soak_settings))]


def rss_mb(pid: int) -> float:
    """Return the resident set size of process ``pid`` in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for process {pid}")


async def _gauges(http: aiohttp.ClientSession, url: str) -> dict[str, float | None]:
    figures: dict[str, float | None] = dict.fromkeys(GAUGES)
    try:
        async with http.get(url + "/metrics") as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return figures
    for field, metric in GAUGES.items():
        found = re.search(rf"^{metric} (\S+)$", text, re.MULTILINE)
        if found:
            figures[field] = round(float(found.group(1)) / MB, 1)
    return figures


async def _sample(http: aiohttp.ClientSession, worker: Worker, began: float,
                  loaded: bool) -> Sample:
    assert worker.process is not None
    if worker.process.poll() is not None:
        raise BenchError(f"the soak worker exited with {worker.process.returncode}; see "
                         f"{worker.log_path}")
    gauges = await _gauges(http, worker.url)
    return Sample(round(time.monotonic() - began, 1), loaded,
                  round(rss_mb(worker.process.pid), 1), **gauges)


def _commandline(command: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "faust", "-A", "app", command, *args]


def _command_env(worker: Worker, datadir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update({k: v for k, v in worker.env.items() if k.startswith("SHOP_KAFKA")},
               SHOP_DATADIR=str(datadir))
    return env


async def _seed(worker: Worker, workdir: Path) -> None:
    seed = await asyncio.create_subprocess_exec(
        *_commandline("seed"), cwd=ROOT, env=_command_env(worker, workdir / "seed"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await seed.communicate()
    if seed.returncode != 0:
        raise BenchError("faust -A app seed failed: " + out.decode()[-2000:])


async def _wait_for_catalog(http: aiohttp.ClientSession, url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        async with http.get(url + "/api/products") as response:
            if response.status == 200 and (await response.json()).get("items"):
                return
        await asyncio.sleep(0.5)
    raise BenchError("the seeded catalog did not show in GET /api/products in time")


async def measure_soak(broker: Broker, workdir: Path, rabbit_url: str, *, seconds: float,
                       idle_seconds: float, users: int, rate: float,
                       worker_env: dict[str, str]) -> PhaseResult:
    """Run the soak; return its figures (``extra``: the samples and the summary)."""
    _require_rabbitmq(rabbit_url)
    worker = start_worker("bench-soak", broker_env(broker), rabbit_url, workdir,
                          extra_env={**UNLIMITED, **worker_env})
    samples: list[Sample] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await _wait_ready(http, worker)
            await _seed(worker, workdir)
            await _wait_for_catalog(http, worker.url, time.monotonic() + 60)
            log = workdir / "simulate.log"
            out = await asyncio.to_thread(log.open, "wb")
            try:
                simulate = await asyncio.create_subprocess_exec(
                    *_commandline("simulate", "--users", str(users), "--rate", str(rate),
                                  "--duration", str(seconds), "--seed", "23",
                                  "--url", worker.url),
                    cwd=ROOT, env=_command_env(worker, workdir / "simulate"), stdout=out,
                    stderr=subprocess.STDOUT)
            finally:
                out.close()  # the simulation has its own copy
            began = time.monotonic()
            said = began
            while simulate.returncode is None:
                samples.append(await _sample(http, worker, began, loaded=True))
                if time.monotonic() - said >= PROGRESS_S:
                    said = time.monotonic()
                    say("soak " + _progress(samples[-1]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(simulate.wait(), SAMPLE_S)
            if simulate.returncode != 0:
                raise BenchError(f"simulate exited with {simulate.returncode}; see {log}")
            samples.append(await _sample(http, worker, began, loaded=True))
            say(f"soak load over ({_summary_line(log)}); idle for {idle_seconds:.0f} s")
            idle_until = time.monotonic() + idle_seconds
            while time.monotonic() < idle_until:
                await asyncio.sleep(min(SAMPLE_S, max(0.0, idle_until - time.monotonic())))
                samples.append(await _sample(http, worker, began, loaded=False))
                say("soak idle " + _progress(samples[-1]))
    finally:
        await asyncio.to_thread(worker.stop)
    return PhaseResult(f"soak: one worker under simulate --users {users} --rate {rate:g}",
                       messages=len(samples), seconds=seconds,
                       extra={"phase": "soak", **summarize(samples, seconds), "users": users,
                              "rate": rate, "idle_seconds": idle_seconds,
                              "worker_env": worker_env,
                              "samples": [asdict(s) for s in samples]})


def summarize(samples: list[Sample], seconds: float) -> dict[str, float | None]:
    """Return RSS at the load's start, middle and end, after the idle wait, its peak and the
    growth of the load's last half (%), with the stores' figures at the end and idle."""
    loaded = [s for s in samples if s.loaded]
    if not loaded:
        raise BenchError("the soak took no sample under load")
    start, end = loaded[0], loaded[-1]
    middle = min(loaded, key=lambda s: abs(s.at - end.at / 2))
    idle = samples[-1]

    def beyond(sample: Sample) -> float:  # RSS less the block cache (memtables charged to it)
        return sample.rss_mb - (sample.block_cache_mb or 0.0)

    return {
        "rss_start_mb": start.rss_mb, "rss_middle_mb": middle.rss_mb, "rss_end_mb": end.rss_mb,
        "rss_idle_mb": idle.rss_mb, "rss_peak_mb": max(s.rss_mb for s in samples),
        "last_half_growth_pct": round((end.rss_mb - middle.rss_mb) / middle.rss_mb * 100, 1),
        "beyond_stores_middle_mb": round(beyond(middle), 1),
        "beyond_stores_end_mb": round(beyond(end), 1),
        "last_half_growth_beyond_stores_pct": round(
            (beyond(end) - beyond(middle)) / beyond(middle) * 100, 1),
        "memtables_end_mb": end.memtables_mb, "block_cache_end_mb": end.block_cache_mb,
        "write_buffers_end_mb": end.write_buffers_mb,
        "memtables_idle_mb": idle.memtables_mb, "block_cache_idle_mb": idle.block_cache_mb,
    }


def _progress(sample: Sample) -> str:
    return (f"{sample.at:6.0f} s: RSS {sample.rss_mb:.0f} MB, memtables "
            f"{sample.memtables_mb} MB, block cache {sample.block_cache_mb} MB, write buffers "
            f"{sample.write_buffers_mb} MB")


def _summary_line(log: Path) -> str:
    found = re.search(r"simulate: .*", log.read_text(errors="replace"))
    return found.group(0) if found else "no summary line"


def print_soak_figures(soak: PhaseResult) -> None:
    """Print the soak's RSS figures and the stores' memory."""
    x = soak.extra
    print(f"{soak.name}, {soak.seconds:.0f} s + {x['idle_seconds']:.0f} s idle")
    print(f"RSS MB: start {x['rss_start_mb']}, middle {x['rss_middle_mb']}, end "
          f"{x['rss_end_mb']}, idle {x['rss_idle_mb']}, peak {x['rss_peak_mb']}; last half "
          f"grew {x['last_half_growth_pct']}%; beyond the stores' cache "
          f"{x['beyond_stores_middle_mb']} -> {x['beyond_stores_end_mb']} MB "
          f"({x['last_half_growth_beyond_stores_pct']}%)")
    print(f"stores at the end: memtables {x['memtables_end_mb']} MB, block cache "
          f"{x['block_cache_end_mb']} MB (memtables charged to it included), write buffers "
          f"{x['write_buffers_end_mb']} MB; idle: memtables {x['memtables_idle_mb']} MB, "
          f"block cache {x['block_cache_idle_mb']} MB")
