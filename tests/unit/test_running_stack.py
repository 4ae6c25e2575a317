"""What ``make run`` starts, and how the commands beside it find it (scripts/run.py,
config/running_stack.py), without starting anything."""

from __future__ import annotations

import socket
from pathlib import Path

from config import Settings
from config.running_stack import (
    read_running_stack,
    use_running_stack,
    use_running_stack_for_commands,
    write_running_stack,
)
from scripts.devstack import preferred_port
from scripts.run import DEV_ADMIN_EMAIL, _development_admin

STACK = {"kafka_url": "kafka://127.0.0.1:19092", "kafka_compat": "tansu",
         "rabbit_url": "amqp://guest:guest@127.0.0.1:5672/", "workers": ["http://127.0.0.1:6066"]}


def test_a_command_beside_the_stack_uses_its_broker(tmp_path: Path) -> None:
    write_running_stack(STACK, path=tmp_path / "stack.json")
    environ: dict[str, str] = {}
    assert use_running_stack(environ, path=tmp_path / "stack.json") is not None
    assert environ == {"SHOP_KAFKA_URL": "kafka://127.0.0.1:19092", "SHOP_KAFKA_COMPAT": "tansu",
                       "SHOP_RABBIT_URL": "amqp://guest:guest@127.0.0.1:5672/"}


def test_settings_given_explicitly_win(tmp_path: Path) -> None:
    write_running_stack(STACK, path=tmp_path / "stack.json")
    environ = {"SHOP_KAFKA_URL": "kafka://k1:9092"}
    assert use_running_stack(environ, path=tmp_path / "stack.json") is None
    assert environ == {"SHOP_KAFKA_URL": "kafka://k1:9092"}


def test_a_stack_whose_launcher_is_gone_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text('{"pid": 999999999, "kafka_url": "kafka://127.0.0.1:1"}')
    assert read_running_stack(path) is None
    assert read_running_stack(tmp_path / "none.json") is None
    path.write_text("{half a file")
    assert read_running_stack(path) is None


def test_a_worker_started_by_hand_is_left_alone(monkeypatch: object) -> None:
    import os

    before = os.environ.get("SHOP_KAFKA_URL")
    use_running_stack_for_commands(["/venv/bin/faust", "-A", "app", "worker", "-l", "info"])
    use_running_stack_for_commands(["/venv/bin/pytest", "tests"])
    use_running_stack_for_commands(["/repo/bench/__main__.py", "--only", "http"])
    assert os.environ.get("SHOP_KAFKA_URL") == before


def test_the_broker_port_is_9092_when_free_and_another_otherwise() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert preferred_port(port) != port
    assert preferred_port(port) == port


def test_the_development_admin_exists_in_development_only() -> None:
    assert _development_admin(Settings())["SHOP_ADMIN_EMAIL"] == DEV_ADMIN_EMAIL
    assert _development_admin(Settings(environment="production")) == {}
    assert _development_admin(Settings(environment="test")) == {}
    own = Settings(admin_email="boss@example.com", admin_password="a long password")
    assert _development_admin(own) == {}
