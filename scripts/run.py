"""``make run``: the whole platform on this machine, stopped with Ctrl-C.

Starts an embedded Tansu broker on 127.0.0.1 (unless SHOP_KAFKA_URL names a Kafka cluster),
makes sure RabbitMQ is up, starts one worker with a fresh data dir (the embedded broker
keeps nothing between runs), prints the URL, and on Ctrl-C stops what it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from scripts.devstack import (
    ROOT,
    Broker,
    StackError,
    broker_env,
    ensure_rabbitmq,
    start_tansu,
    start_worker,
    stop_rabbitmq,
)

RUN_DIR = ROOT / "var" / "run"


def main() -> int:
    """Run the stack until Ctrl-C; return the exit status."""
    rabbit_url = os.environ.get("SHOP_RABBIT_URL", "amqp://guest:guest@127.0.0.1:5672/")
    web_port = int(os.environ.get("SHOP_WEB_PORT", "6066"))
    started_rabbit = False
    broker: Broker | None = None
    worker = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        started_rabbit = ensure_rabbitmq(rabbit_url, log=say)
        external_kafka = os.environ.get("SHOP_KAFKA_URL")
        if external_kafka:
            say(f"using Kafka at {external_kafka} (SHOP_KAFKA_URL)")
            kafka_env = {"SHOP_KAFKA_URL": external_kafka}
        else:
            # The embedded broker starts empty: so must the worker's tables.
            broker = start_tansu(log_path=_fresh_dir(RUN_DIR) / "tansu.log")
            say(f"Tansu broker on {broker.bootstrap} (memory storage; log var/run/tansu.log)")
            kafka_env = broker_env(broker)
        say("starting worker ...")
        user_settings = {k: v for k, v in os.environ.items() if k.startswith("SHOP_")}
        worker = start_worker("worker-1", kafka_env, rabbit_url, RUN_DIR, web_port=web_port,
                              extra_env={**user_settings, **kafka_env}, log_to_terminal=True)
        seconds = worker.wait_ready(timeout=120)
        say(f"ShopStream is ready in {seconds:.1f} s: {worker.url}  "
            f"(/ready, /metrics, /api/...) - Ctrl-C stops it")
        while not stopping and worker.process is not None and worker.process.poll() is None:
            time.sleep(0.2)
        return 0 if stopping else 1
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        say("stopping ...")
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        if started_rabbit:
            stop_rabbitmq()
        say("stopped")


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def say(message: str) -> None:
    """Print one line of progress."""
    print(f"[shopstream] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
