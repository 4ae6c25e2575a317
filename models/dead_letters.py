"""A dead letter: an event an agent could not decode or process, kept with its error."""

from __future__ import annotations

from datetime import datetime

import faust

__all__ = ["DeadLetter"]


class DeadLetter(
    faust.Record,
    serializer="json",
    include_metadata=False,
    isodates=True,
):
    """The original message (bytes as text, or base64 when not UTF-8) and why it failed."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None
    value_encoding: str  # "utf-8" or "base64"
    agent: str
    stage: str  # "decode" or "handle"
    error_type: str
    error: str
    failed_at: datetime
