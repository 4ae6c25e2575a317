"""Start-up checks: an unreachable Kafka is one error naming SHOP_KAFKA_URL."""

from __future__ import annotations

import socket

import pytest

from config import ConfigError, Settings
from config.checks import kafka_hosts, wait_for_kafka


def test_every_broker_of_a_kafka_url_is_listed() -> None:
    assert kafka_hosts("kafka://k1:9093;k2;kafka://k3:19092") == [
        ("k1", 9093), ("k2", 9092), ("k3", 19092)]


def test_an_unreachable_kafka_names_the_setting() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        settings = Settings(kafka_url=f"kafka://127.0.0.1:{port}")
        with pytest.raises(ConfigError, match=rf"^SHOP_KAFKA_URL: .*127.0.0.1:{port}"):
            wait_for_kafka(settings, timeout=0.3)


def test_a_listening_broker_passes_at_once() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        wait_for_kafka(Settings(kafka_url=f"kafka://127.0.0.1:{sock.getsockname()[1]}"), 1)
