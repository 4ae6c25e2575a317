"""Fixtures shared by the unit tests (no broker, no worker)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture
def root_kept() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level put back as they were after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)
