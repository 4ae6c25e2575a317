"""The development stack as ``make run`` starts it (``python -m scripts.run``), for the tests
that check what a newcomer gets: the README's first order, the browser walk.

The launcher runs in its own run dir (never the checkout's var/run, which a developer's
``make run`` may be using), on a free web port and in a RabbitMQ virtual host of its own;
its broker takes 9092 when that port is free and another one otherwise, like ``make run``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts.devstack import ROOT, exit_with_parent, free_port

__all__ = ["README", "Launched", "first_order_commands", "running_shop"]

README = ROOT / "README.md"

#: How long the launcher may take to print that the shop is ready (a loaded 2-core machine).
READY_WITHIN_S = 240.0


@dataclass
class Launched:
    """A running launcher: its web port and its console (stdout and stderr together)."""

    port: int
    run_dir: Path
    console: Path

    @property
    def url(self) -> str:
        """Return the first worker's URL."""
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[str]:
        """Return the console's lines so far."""
        return self.console.read_text(errors="replace").splitlines()


@contextlib.contextmanager
def running_shop(run_dir: Path, rabbit_url: str, **settings: str) -> Iterator[Launched]:
    """Run the launcher until the block ends (then Ctrl-C, as a person would)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(SHOP_WEB_PORT=str(port), SHOP_RABBIT_URL=rabbit_url, **settings)
    run_dir.mkdir(parents=True, exist_ok=True)
    console = run_dir.parent / f"{run_dir.name}-console.log"
    with open(console, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scripts.run", "--run-dir", str(run_dir)], cwd=ROOT,
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=exit_with_parent)
    launched = Launched(port, run_dir, console)
    try:
        deadline = time.monotonic() + READY_WITHIN_S
        while not any("ShopStream is ready" in line for line in launched.lines()):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the launcher did not get ready:\n"
                                     + "\n".join(launched.lines()[-40:]))
            time.sleep(0.3)
        # The announcement's last line comes right after the first one.
        time.sleep(0.5)
        yield launched
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def first_order_commands(readme: str) -> list[str]:
    """Return the commands of the README's "A first order" block, one per command (a line
    that starts with a blank continues the command before it)."""
    section = readme.split("## A first order", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[str] = []
    for line in block.splitlines():
        if line[:1].isspace() and commands:
            commands[-1] += "\n" + line
        elif line.strip():
            commands.append(line)
    return commands
