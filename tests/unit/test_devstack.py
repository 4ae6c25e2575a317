"""The dev stack's RabbitMQ decisions, without touching the machine's RabbitMQ."""

from __future__ import annotations

import pytest

from scripts import devstack
from scripts.devstack import StackError, ensure_rabbitmq, free_port


def test_a_running_rabbitmq_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "port_open", lambda host, port: True)
    monkeypatch.setattr(devstack, "_run", lambda *a, **k: pytest.fail("must start nothing"))
    assert ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/") is False


def test_a_remote_rabbitmq_that_does_not_answer_names_the_setting() -> None:
    with pytest.raises(StackError, match="SHOP_RABBIT_URL"):
        ensure_rabbitmq(f"amqp://u:p@192.0.2.1:{free_port()}/", log=lambda line: None)


def test_without_the_package_and_without_root_it_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(devstack, "port_open", lambda host, port: False)
    monkeypatch.setattr(devstack.shutil, "which", lambda name: None)
    monkeypatch.setattr(devstack.os, "geteuid", lambda: 1000)
    with pytest.raises(StackError, match="apt-get install -y rabbitmq-server"):
        ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/", log=lambda line: None)


def test_as_root_without_the_package_it_installs_then_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ran: list[list[str]] = []
    started = {"up": False}
    monkeypatch.setattr(devstack, "port_open", lambda host, port: started["up"])
    monkeypatch.setattr(devstack.shutil, "which", lambda name: None)
    monkeypatch.setattr(devstack.os, "geteuid", lambda: 0)

    def run(cmd: list[str], env: object = None) -> None:
        ran.append(cmd)
        if cmd[0] == "rabbitmq-server":
            started["up"] = True

    monkeypatch.setattr(devstack, "_run", run)
    assert ensure_rabbitmq("amqp://guest:guest@127.0.0.1:5672/", log=lambda line: None)
    assert [cmd[:2] for cmd in ran] == [["apt-get", "update"], ["apt-get", "install"],
                                        ["rabbitmq-server", "-detached"]]


def test_what_the_stack_starts_dies_with_the_process_that_started_it() -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    # A parent that starts a long sleep the way the stack starts brokers and workers, prints
    # its pid and waits; killed with SIGKILL, it runs no clean-up of its own.
    with subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from scripts.devstack import exit_with_parent\n"
         "child = subprocess.Popen(['sleep', '60'], start_new_session=True,\n"
         "                         preexec_fn=exit_with_parent)\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return  # gone (and reaped by init)
        with open(f"/proc/{child}/stat") as stat:
            if stat.read().split()[2] == "Z":
                return  # dead, waiting to be reaped
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the child outlived the process that started it")
