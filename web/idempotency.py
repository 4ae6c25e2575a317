"""``Idempotency-Key`` for a creation that goes through a topic: the first body of a key wins.

A keyed creation's id derives from the caller and the key, so every request with that key is
answered by the worker that owns the id. There, a row already holding the request's digest
is a retry; a row holding another digest means the key was reused (422). No row yet: the
creation is sent and the request waits (up to ``KEYED_WAIT_S``) for the row, since requests
with the same key in flight together all send and the agent keeps the first; whoever finds
another digest in the row lost the race (422). No row by then: 409, retry as is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models.orders import key_reuse
from tables.orders import OrderWatchers
from web.errors import KeyInProgress, KeyReused

__all__ = ["KEYED_WAIT_S", "Keyed", "first_of_key"]

#: How long a keyed creation waits for its row to learn whose body won the key (well below
#: the router's forwarding timeout).
KEYED_WAIT_S = 5.0

Row = dict[str, Any]


@dataclass(frozen=True)
class Keyed:
    """What a keyed creation makes: its rows, who watches them, and how its errors read."""

    rows: Mapping[str, Row]
    watchers: OrderWatchers
    digest_field: str
    noun: str  # "order"
    made: str  # "placed"


async def first_of_key(kind: Keyed, row_id: str, digest: str,
                       create: Callable[[], Awaitable[object]]) -> Row:
    """Return the row of the keyed creation ``row_id``: there already, or made by ``create``.

    Raise KeyReused if it holds another request's digest, KeyInProgress if no row came.
    """
    row = kind.rows.get(row_id)
    if row is None:
        change = kind.watchers.watch(row_id)
        try:
            await create()
            row = kind.rows.get(row_id)
            if row is None:
                row = await asyncio.wait_for(change, KEYED_WAIT_S)
        except TimeoutError:
            row = kind.rows.get(row_id)
        finally:
            kind.watchers.forget(row_id, change)
    found = key_reuse(None if row is None else row.get(kind.digest_field, ""), digest)
    if found == "other":
        raise KeyReused(f"this Idempotency-Key {kind.made} {article(kind.noun)} with another "
                        f"body; use a new key for a new {kind.noun}",
                        details=[{"field": "Idempotency-Key",
                                  "problem": f"used for {kind.noun} {row_id}"}])
    if row is None:
        raise KeyInProgress(f"the {kind.noun} of this Idempotency-Key is still being "
                            f"{kind.made}; retry with the same key and body")
    return row


def article(noun: str) -> str:
    """Return ``noun`` with its indefinite article."""
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"
