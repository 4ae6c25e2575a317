"""The one exception of the benchmark."""

from __future__ import annotations

__all__ = ["BenchError"]


class BenchError(RuntimeError):
    """A phase could not finish; the message says what happened and where to look."""
