"""A bare Faust agent with a RocksDB table, run as a real worker process: its rate.

The events are on the topic before the worker starts. The worker records the wall-clock time
of the first event it processed and of the ``count``-th (:mod:`bench.faust_app`); the rate is
``count`` over that interval, and start-up (process spawn to first event) is reported apart.

:func:`measure_faust_floor` runs the same agent twice more on the raw bytes: doing nothing,
then writing each event to a row of its own. They give Faust's own cost here of an event and
of a table write (encode, RocksDB, the changelog record), the floor under every agent.
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
from bench.kafka_raw import create_topic, produce_all
from bench.report import PhaseResult, say
from scripts.devstack import ROOT, Broker, Worker, exit_with_parent, free_port

__all__ = ["MODES", "measure_faust_agent", "measure_faust_floor", "start_faust_worker"]

TOPIC = "bench-faust-events"
APP_ID = "bench-faust"

#: What the bare agent does with each event (``BENCH_FAUST_MODE``), and the phase's name.
MODES = {
    "count": "faust agent, Record + RocksDB table",
    "pass": "faust agent, raw bytes, no table (Faust's floor)",
    "write": "faust agent, raw bytes + a RocksDB row write each",
    "bulk-write": "faust agent, raw bytes + a ShopTable row write each (changelog in bulk)",
}


async def measure_faust_agent(broker: Broker, events: Sequence[tuple[str, bytes]],
                              workdir: Path, deadline: float, mode: str = "count",
                              ) -> PhaseResult:
    """Put ``events`` on a topic, then time a Faust worker taking them by ``deadline``
    (``mode``: see :data:`MODES`)."""
    topic = TOPIC if mode == "count" else f"{TOPIC}-{mode}"
    await create_topic(broker.bootstrap, topic, 4)
    await produce_all(broker.bootstrap, topic, events)
    say(f"faust agent ({mode}): {len(events):,} events on {topic!r}; starting the worker")
    spawned_at = time.time()
    worker, result_path = start_faust_worker(broker, len(events), workdir, mode, topic)
    try:
        outcome = await _wait_for_result(worker, result_path, deadline)
    finally:
        await asyncio.to_thread(worker.stop)
    if outcome["table_total"] != len(events):
        what = "counted" if mode == "count" else "took"
        raise BenchError(f"the Faust agent ({mode}) {what} {outcome['table_total']:,} events, "
                         f"not {len(events):,}; see {worker.log_path}")
    return PhaseResult(
        MODES[mode],
        int(outcome["events"]),
        outcome["last_at"] - outcome["first_at"],
        startup_seconds=outcome["first_at"] - spawned_at,
        extra={"partitions": 4, "table_total": outcome["table_total"], "mode": mode},
    )


async def measure_faust_floor(broker: Broker, events: Sequence[tuple[str, bytes]],
                              workdir: Path, deadline: float) -> list[PhaseResult]:
    """Time the bare agent on raw bytes doing nothing, then writing a row an event (Faust's
    table, then the shop's); return the three, each with Faust's cost here of an event and
    of a table write, and the shop's table write (µs)."""
    bare = await measure_faust_agent(broker, events, workdir, deadline, "pass")
    writing = await measure_faust_agent(broker, events, workdir, deadline, "write")
    bulk = await measure_faust_agent(broker, events, workdir, deadline, "bulk-write")
    event_us = 1e6 / bare.rate
    write_us = 1e6 / writing.rate - event_us
    bulk_us = 1e6 / bulk.rate - event_us
    for result in (bare, writing, bulk):
        result.extra.update(phase="faust-floor", event_us=round(event_us, 1),
                            table_write_us=round(write_us, 1),
                            bulk_table_write_us=round(bulk_us, 1))
    return [bare, writing, bulk]


def start_faust_worker(broker: Broker, target: int, workdir: Path, mode: str, topic: str, *,
                       name: str | None = None, app_id: str | None = None,
                       standbys: int | None = None) -> tuple[Worker, Path]:
    """Spawn ``faust -A bench.faust_app worker`` with a fresh data dir under ``workdir``
    (``name``, ``app_id``: the worker's directory and its group, by default the mode's;
    ``standbys``: the table's standby replicas, by default Faust's).

    At ``-l info``, as the shop's workers run here: at Faust's default (``-l warn``) its
    start-up spinner leaves the root logger at DEBUG for good, and every debug call in
    aiokafka and Faust then builds a record (an event cost 85-125 µs instead of 71-73 µs;
    the shop's workers fix it, :mod:`runtime.worker`, a bare app does not)."""
    web_port = free_port()
    name = name or ("faust-bench" if mode == "count" else f"faust-bench-{mode}")
    datadir = workdir / name / "data"
    log_path = workdir / name / "worker.log"
    result_path = workdir / name / "result.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {
        "BENCH_FAUST_APP_ID": app_id or (APP_ID if mode == "count" else f"{APP_ID}-{mode}"),
        "BENCH_FAUST_BROKER": broker.kafka_url,
        "BENCH_FAUST_DATADIR": str(datadir),
        "BENCH_FAUST_WEB_PORT": str(web_port),
        "BENCH_FAUST_TOPIC": topic,
        "BENCH_FAUST_TARGET": str(target),
        "BENCH_FAUST_RESULT": str(result_path),
        "BENCH_FAUST_MODE": mode,
        **({"BENCH_FAUST_STANDBY": str(standbys)} if standbys is not None else {}),
    }
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "faust", "-A", "bench.faust_app", "worker", "-l", "info"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    worker = Worker(name, web_port, datadir, env, log_path, process=process,
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
