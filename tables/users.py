"""Users tables, and waiting on the owning worker for the users agents to decide."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from app import app
from tables.orders import OrderWatchers

__all__ = [
    "email_watchers",
    "emails",
    "revocations",
    "user_watchers",
    "users",
    "wait_for",
]

#: normalised e-mail -> {email, user_id, password_hash, roles, active, claimed_at}
emails = app.Table("emails", key_type=str,
                   help="Who owns each e-mail address, and what login checks.")

#: user id -> {id, email, name, roles, created_at, active, password_hash, sessions}
users = app.Table("users", key_type=str, help="Every user with their refresh-token sessions.")

#: Requests waiting for an e-mail claim to be decided (woken by the e-mails agent).
#: user id -> {user_id, before}: access tokens issued at or before ``before`` are refused.
#: On every worker (a global table fed by the one-partition revocations topic).
revocations = app.GlobalTable("revocations", key_type=str, partitions=1,
                              recovery_buffer_size=1,
                              help="Users whose earlier access tokens no longer count.")

email_watchers = OrderWatchers()

#: Requests waiting for a user row to change (woken by the users agent).
user_watchers = OrderWatchers()


async def wait_for(watchers: OrderWatchers, table: Any, key: str,
                   done: Callable[[dict[str, Any] | None], bool], seconds: float,
                   *, watching: asyncio.Future[dict[str, Any]] | None = None,
                   ) -> dict[str, Any] | None:
    """Return ``table[key]`` once ``done(row)`` holds, or as it is after ``seconds``.

    ``watching`` is a future from ``watchers.watch(key)`` taken before the request that
    causes the change was sent (so a fast answer is not missed).
    """
    row = table.get(key)
    if done(row):  # the usual case: one read
        if watching is not None:
            watchers.forget(key, watching)
        return row
    deadline = time.monotonic() + seconds
    change = watching
    while not done(row):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        change = change or watchers.watch(key)
        try:
            row = await asyncio.wait_for(asyncio.shield(change), left)
        except TimeoutError:
            watchers.forget(key, change)
            break
        change = None
    return table.get(key)
