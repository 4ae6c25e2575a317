"""Start-up checks that turn an unreachable dependency into one line naming the setting."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

from config.errors import ConfigError
from config.settings import Settings

__all__ = ["kafka_hosts", "wait_for_kafka"]

log = logging.getLogger(__name__)


def kafka_hosts(kafka_url: str) -> list[tuple[str, int]]:
    """Return the (host, port) of every broker in a ``kafka://h1:p1;h2:p2`` URL."""
    hosts = []
    for part in kafka_url.split(";"):
        parsed = urlsplit(part if "://" in part else f"kafka://{part}")
        hosts.append((parsed.hostname or "127.0.0.1", parsed.port or 9092))
    return hosts


def wait_for_kafka(settings: Settings, timeout: float = 30.0) -> None:
    """Wait until a Kafka broker accepts connections; raise ConfigError after ``timeout``."""
    hosts = kafka_hosts(settings.kafka_url)
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        for host, port in hosts:
            try:
                with socket.create_connection((host, port), timeout=2):
                    return
            except OSError:
                continue
        if time.monotonic() > deadline:
            listed = ", ".join(f"{h}:{p}" for h, p in hosts)
            raise ConfigError("SHOP_KAFKA_URL", f"no Kafka broker answers at {listed} "
                              f"(waited {timeout:.0f} s)")
        if not warned:
            log.warning("waiting for Kafka at %s (SHOP_KAFKA_URL) ...", settings.kafka_url)
            warned = True
        time.sleep(0.5)
