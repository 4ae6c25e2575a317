"""``make run``: a shop to play with on this machine, stopped with Ctrl-C.

Makes sure RabbitMQ is up, starts an embedded Tansu broker on 127.0.0.1:9092 (another port
when 9092 is taken; none when SHOP_KAFKA_URL names a Kafka cluster) and ``WORKERS`` workers
with fresh data dirs (the embedded broker keeps nothing between runs), writes what it started
to var/run/stack.json for the commands run beside it, loads the demo catalog, creates a
development admin (development only), lets simulated shoppers loose for a while, prints the
URLs, and on Ctrl-C stops what it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from config import ConfigError, Settings
from config.running_stack import STACK_FILE, write_running_stack
from scripts.devstack import (
    ROOT,
    Broker,
    StackError,
    Worker,
    broker_env,
    ensure_rabbitmq,
    exit_with_parent,
    preferred_port,
    start_mail_sink,
    start_tansu,
    start_worker,
    stop_rabbitmq,
)

RUN_DIR = ROOT / "var" / "run"

#: The development admin's account: printed at start, never created outside development.
DEV_ADMIN_EMAIL = "admin@shopstream.dev"
DEV_ADMIN_PASSWORD = "shopstream-dev"

#: The port of the embedded broker when it is free: Kafka's own, what every tool expects.
KAFKA_PORT = 9092

#: The first worker's port when SHOP_WEB_PORT is unset and the port is free.
WEB_PORT = 6066

#: Simulated shoppers of the burst at start, and their actions a second.
SHOPPERS, SHOPPER_RATE = 20, 8.0


def main(argv: list[str] | None = None) -> int:
    """Run the stack until Ctrl-C; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m scripts.run", description=__doc__)
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR,
                        help="where the stack's data, logs and stack.json go (emptied first; "
                             "the commands look for var/run/stack.json)")
    run_dir: Path = parser.parse_args(argv).run_dir.resolve()
    stack_file = run_dir / STACK_FILE.name
    try:
        settings = Settings.from_env()
        workers_wanted = int(os.environ.get("WORKERS") or 1)
    except (ConfigError, ValueError) as exc:
        say(f"error: invalid setting {exc}")
        return 1
    rabbit_url = settings.rabbit_url
    started_rabbit = False
    broker: Broker | None = None
    workers: list[Worker] = []
    shoppers: subprocess.Popen[bytes] | None = None
    mail_sink: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        started_rabbit = ensure_rabbitmq(rabbit_url, log=say)
        external_kafka = os.environ.get("SHOP_KAFKA_URL")
        _fresh_dir(run_dir)  # the embedded broker starts empty: so must the workers' tables
        if external_kafka:
            say(f"using Kafka at {external_kafka} (SHOP_KAFKA_URL)")
            kafka_env = {"SHOP_KAFKA_URL": external_kafka}
        else:
            broker = start_tansu(port=preferred_port(KAFKA_PORT), log_path=run_dir / "tansu.log")
            kafka_env = broker_env(broker)
        env = {**_user_settings(), **kafka_env, **_development_admin(settings)}
        if not os.environ.get("SHOP_SMTP_URL"):
            # Receipts and promotion mail need an SMTP server: keep them in var/run/mail.
            env["SHOP_SMTP_URL"], mail_sink = start_mail_sink(run_dir / "mail")
        say(f"starting {workers_wanted} worker{'s' * (workers_wanted > 1)} ...")
        first_port = (settings.web_port if os.environ.get("SHOP_WEB_PORT")
                      else preferred_port(WEB_PORT))
        for number in range(1, max(workers_wanted, 1) + 1):
            workers.append(start_worker(
                f"worker-{number}", kafka_env, rabbit_url, run_dir,
                web_port=first_port if number == 1 else None,
                extra_env=env,
                log_to_terminal=True))
        seconds = max(worker.wait_ready(timeout=120) for worker in workers)
        write_running_stack(path=stack_file, stack={
            "kafka_url": env["SHOP_KAFKA_URL"], "kafka_compat": env.get("SHOP_KAFKA_COMPAT", ""),
            "rabbit_url": rabbit_url, "workers": [worker.url for worker in workers]})
        if settings.demo_catalog == "on":
            seed_demo_catalog(env)
        shoppers = start_shoppers(workers[0].url, settings.demo_shoppers, env, run_dir)
        announce(seconds, [worker.url for worker in workers], env, rabbit_url, settings,
                 shoppers is not None, run_dir)
        while not stopping and all(w.process is not None and w.process.poll() is None
                                   for w in workers):
            time.sleep(0.2)
        return 0 if stopping else 1
    except StackError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        say("stopping ...")
        stack_file.unlink(missing_ok=True)
        if shoppers is not None and shoppers.poll() is None:
            shoppers.terminate()
            shoppers.wait(10)
        for worker in workers:
            worker.stop()
        if broker is not None:
            broker.stop()
        if mail_sink is not None:
            mail_sink.terminate()
            mail_sink.wait(10)
        if started_rabbit:
            stop_rabbitmq()
        say("stopped")


#: Settings the launcher decides per worker, whatever this terminal has set.
PER_WORKER = frozenset({"SHOP_WEB_PORT", "SHOP_WEB_HOST", "SHOP_WEB_CANONICAL_URL",
                        "SHOP_DATADIR"})


def _user_settings() -> dict[str, str]:
    """Return the SHOP_* variables set here, for the workers; blank ones count as unset."""
    return {k: v for k, v in os.environ.items()
            if k.startswith("SHOP_") and v.strip() and k not in PER_WORKER}


def _development_admin(settings: Settings) -> dict[str, str]:
    """Return the settings that register the development admin: development only, and only
    when no first admin is set."""
    if settings.environment != "development" or settings.admin_email:
        return {}
    return {"SHOP_ENVIRONMENT": "development", "SHOP_ADMIN_EMAIL": DEV_ADMIN_EMAIL,
            "SHOP_ADMIN_PASSWORD": DEV_ADMIN_PASSWORD}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "faust", "-A", "app", *args]


def _command_env(env: Mapping[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    return {**base, **env, "SHOP_LOG_SHIPPING": "off"}


def seed_demo_catalog(env: Mapping[str, str]) -> None:
    """Load the demo catalog (idempotent: a product's first stock is set once)."""
    result = subprocess.run(_command("seed"), cwd=ROOT, env=_command_env(env),
                            capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise StackError(f"the demo catalog could not be loaded: "
                         f"{(result.stderr or result.stdout).strip()[-500:]}")
    say("demo catalog loaded (scripts/demo_catalog.json; SHOP_DEMO_CATALOG=off skips it)")


def start_shoppers(url: str, seconds: float, env: Mapping[str, str],
                   run_dir: Path) -> subprocess.Popen[bytes] | None:
    """Start simulated shoppers for ``seconds`` in the background (None if 0)."""
    if seconds <= 0:
        return None
    with open(run_dir / "shoppers.log", "ab") as log:  # the child holds its own copy
        return subprocess.Popen(
            _command("simulate", "--users", str(SHOPPERS), "--rate", str(SHOPPER_RATE),
                     "--duration", f"{seconds:g}", "--url", url),
            cwd=ROOT, env=_command_env(env), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=exit_with_parent)


def announce(seconds: float, urls: list[str], env: Mapping[str, str], rabbit_url: str,
             settings: Settings, shoppers: bool, run_dir: Path) -> None:
    """Print where the shop is, and how to sign in to its console."""
    url = urls[0]
    say(f"ShopStream is ready in {seconds:.1f} s")
    say(f"  storefront      {url}/")
    say(f"  console         {url}/admin")
    say(f"  live analytics  {url}/analytics")
    if urls[1:]:
        say(f"  other workers   {'  '.join(urls[1:])}")
    if env.get("SHOP_ADMIN_EMAIL") == DEV_ADMIN_EMAIL:
        say(f"  admin           {DEV_ADMIN_EMAIL} / {DEV_ADMIN_PASSWORD} (development only)")
    elif settings.admin_email:
        say(f"  admin           {settings.admin_email} (SHOP_ADMIN_EMAIL)")
    say(f"  Kafka           {env['SHOP_KAFKA_URL']}    RabbitMQ {rabbit_url}")
    say(f"  mail            {env['SHOP_SMTP_URL']}"
        + (f"  (kept in {_shown(run_dir / 'mail')})" if "SHOP_SMTP_URL" not in os.environ
           else ""))
    if shoppers:
        say(f"simulated shoppers for {settings.demo_shoppers:g} s "
            f"(log: {_shown(run_dir / 'shoppers.log')}); Ctrl-C stops everything")
    else:
        say("Ctrl-C stops everything")


def _shown(path: Path) -> str:
    """Return ``path`` relative to the repository when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def say(message: str) -> None:
    """Print one line of progress."""
    print(f"[shopstream] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
