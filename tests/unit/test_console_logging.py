"""The worker's console log: mode's colored log on a terminal, a plain (cheaper) one else."""

from __future__ import annotations

import io
import logging
import os
import re

from mode.utils.logging import setup_logging

from runtime.app import console_logging


def test_a_terminal_keeps_modes_colored_log() -> None:
    assert console_logging(True) is None


def test_a_file_or_pipe_gets_plain_lines_with_modes_fields(root_kept: logging.Logger) -> None:
    out = io.StringIO()  # not a terminal
    setup_logging(loglevel="INFO", logfile=out, logging_config=console_logging(False))
    handler = logging.getLogger().handlers[0]
    assert type(handler.formatter) is logging.Formatter
    handler.setStream(out)  # mode's handler writes to sys.stdout, which pytest captures
    logging.getLogger("web.orders").info("order %s placed", "o-1")
    logging.getLogger("web.orders").debug("below the level")
    line = out.getvalue()
    assert "\x1b" not in line, "no color escapes"
    assert line.endswith(f"[{os.getpid()}] [INFO] order o-1 placed\n")
    assert line.count("\n") == 1
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] ", line), line


def test_a_log_file_keeps_modes_own_formatter(root_kept: logging.Logger, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "worker.log")
    setup_logging(loglevel="INFO", logfile=path, logging_config=console_logging(False))
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.FileHandler)
    assert type(handler.formatter) is not logging.Formatter  # mode's DefaultFormatter
    handler.close()
