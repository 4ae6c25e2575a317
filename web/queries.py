"""Query models several views share: how long a request waits for a change, how long a stream
stays open."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["MAX_STREAM_S", "MAX_WAIT_S", "StreamQuery", "WaitQuery"]

#: The longest ``?wait`` of a request that waits for a row to change.
MAX_WAIT_S = 30.0
#: The longest a server-sent-events stream stays open before it ends (clients reconnect).
MAX_STREAM_S = 24 * 3600.0


class WaitQuery(BaseModel):
    """``?wait=N``: seconds to wait for the change to be applied (or the row to settle)."""

    wait: float = Field(default=0, ge=0, le=MAX_WAIT_S)


class StreamQuery(BaseModel):
    """``?wait=N``: seconds to keep the stream open (then it ends; EventSource reconnects)."""

    wait: float = Field(default=3600.0, gt=0, le=MAX_STREAM_S)
