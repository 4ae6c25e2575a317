"""A bare Faust agent with a RocksDB table, run as a real worker process: its rate.

The events are on the topic before the worker starts. The worker records the wall-clock time
of the first event it processed and of the ``count``-th (:mod:`bench.faust_app`); the rate is
``count`` over that interval, and start-up (process spawn to first event) is reported apart.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.errors import BenchError
from bench.kafka_raw import create_topic, new_producer, send_all
from bench.report import PhaseResult, say
from scripts.devstack import ROOT, Broker, Worker, exit_with_parent, free_port

__all__ = ["measure_faust_agent"]

TOPIC = "bench-faust-events"
APP_ID = "bench-faust"


async def measure_faust_agent(broker: Broker, events: Sequence[tuple[str, bytes]],
                              workdir: Path, deadline: float) -> PhaseResult:
    """Put ``events`` on a topic, then time a Faust worker counting them by ``deadline``."""
    await create_topic(broker.bootstrap, TOPIC, 4)
    producer = new_producer(broker.bootstrap)
    await producer.start()
    try:
        await send_all(producer, TOPIC, events)
    finally:
        await producer.stop()
    say(f"faust agent: {len(events):,} events on {TOPIC!r}; starting the worker")
    spawned_at = time.time()
    worker, result_path = _start_worker(broker, len(events), workdir)
    try:
        outcome = await _wait_for_result(worker, result_path, deadline)
    finally:
        await asyncio.to_thread(worker.stop)
    if outcome["table_total"] != len(events):
        raise BenchError(f"the Faust table counted {outcome['table_total']:,} events, not "
                         f"{len(events):,}; see {worker.log_path}")
    return PhaseResult(
        "faust agent, Record + RocksDB table",
        int(outcome["events"]),
        outcome["last_at"] - outcome["first_at"],
        startup_seconds=outcome["first_at"] - spawned_at,
        extra={"partitions": 4, "table_total": outcome["table_total"]},
    )


def _start_worker(broker: Broker, target: int, workdir: Path) -> tuple[Worker, Path]:
    """Spawn ``faust -A bench.faust_app worker`` with a fresh data dir under ``workdir``."""
    web_port = free_port()
    datadir = workdir / "faust-bench" / "data"
    log_path = workdir / "faust-bench" / "worker.log"
    result_path = workdir / "faust-bench" / "result.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "BENCH_FAUST_APP_ID": APP_ID,
        "BENCH_FAUST_BROKER": broker.kafka_url,
        "BENCH_FAUST_DATADIR": str(datadir),
        "BENCH_FAUST_WEB_PORT": str(web_port),
        "BENCH_FAUST_TOPIC": TOPIC,
        "BENCH_FAUST_TARGET": str(target),
        "BENCH_FAUST_RESULT": str(result_path),
    }
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "bench.faust_app", "worker", "-l", "warn"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    worker = Worker("faust-bench", web_port, datadir, env, log_path, process=process,
                    started_at=time.monotonic())
    return worker, result_path


async def _wait_for_result(worker: Worker, path: Path, deadline: float) -> dict[str, float]:
    """Wait for the worker's result file; fail if the worker exits or ``deadline`` passes."""
    while (result := await asyncio.to_thread(_read_result, path)) is None:
        assert worker.process is not None
        if worker.process.poll() is not None:
            raise BenchError(f"the Faust bench worker exited with {worker.process.returncode}; "
                             f"see {worker.log_path}")
        if time.monotonic() > deadline:
            raise BenchError(f"the Faust bench worker did not count every event in time; "
                             f"see {worker.log_path}")
        await asyncio.sleep(0.1)
    return result


def _read_result(path: Path) -> dict[str, float] | None:
    """Return the worker's result, or None while it has not written it."""
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
