"""What ``make run`` is running, written down for the commands run beside it.

``make run`` starts its broker on 9092 only when that port is free, and its worker on 6066
only when that one is: ``var/run/stack.json`` says where they are. ``faust -A app seed``,
``simulate`` and ``send`` read it when SHOP_KAFKA_URL is unset, so none of them needs a flag.
The file names the launcher's process id: a file left behind by a launcher that is gone is
ignored.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["STACK_FILE", "read_running_stack", "use_running_stack",
           "use_running_stack_for_commands", "write_running_stack"]

#: What ``make run`` started (URLs, its process id).
STACK_FILE = Path(__file__).resolve().parent.parent / "var" / "run" / "stack.json"


def write_running_stack(stack: Mapping[str, object], path: Path = STACK_FILE) -> None:
    """Write what the launcher started (URLs, its process id) where the commands look."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"pid": os.getpid(), **stack}, indent=2) + "\n")
    partial.replace(path)  # a reader never sees half a file


def read_running_stack(path: Path = STACK_FILE) -> dict[str, object] | None:
    """Return the stack ``make run`` is running, or None (no file, or its launcher is gone)."""
    try:
        stack = json.loads(path.read_text())
        os.kill(int(stack["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stack if isinstance(stack, dict) else None


def use_running_stack(environ: dict[str, str] | os._Environ[str] = os.environ,
                      path: Path = STACK_FILE) -> dict[str, object] | None:
    """Point this process at the stack ``make run`` is running, when SHOP_KAFKA_URL is unset.

    So ``faust -A app seed``, ``simulate`` or ``send`` beside ``make run`` need no flag: the
    embedded broker may be on another port than 9092. Settings given explicitly win.
    """
    if environ.get("SHOP_KAFKA_URL"):
        return None
    stack = read_running_stack(path)
    if stack is None:
        return None
    for variable, key in (("SHOP_KAFKA_URL", "kafka_url"), ("SHOP_KAFKA_COMPAT", "kafka_compat"),
                          ("SHOP_RABBIT_URL", "rabbit_url")):
        if key in stack and not environ.get(variable):
            environ[variable] = str(stack[key])
    return stack


def use_running_stack_for_commands(argv: list[str] = sys.argv) -> None:
    """Call :func:`use_running_stack` in a ``faust -A app <command>`` other than ``worker``.

    A worker is left alone: one started by hand with the default data dir would bring table
    data of another broker to the launcher's fresh one.
    """
    program = Path(argv[0]) if argv else Path()
    is_faust = program.name == "faust" or program.parent.name == "faust"  # or python -m faust
    if is_faust and "worker" not in argv[1:]:
        use_running_stack()
