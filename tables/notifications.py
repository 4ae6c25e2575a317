"""Notifications tables, and waking the SSE streams of a user on the worker that owns them."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from app import app

__all__ = ["InboxWatchers", "inbox_watchers", "inboxes"]

#: user id (or "admins") -> models.inbox row: newest notifications, unread count, sequence,
#: e-mail, name, preferences and the row's partition
inboxes = app.Table("notifications", key_type=str,
                    help="Each user's recent notifications, preferences and e-mail.")


class InboxWatchers:
    """Open streams waiting for a user's row to change, woken by the notifications agent."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)

    def watch(self, user_id: str) -> asyncio.Event:
        """Return an event set at every change of ``user_id``'s row (clear it after reading)."""
        changed = asyncio.Event()
        self._waiting[user_id].add(changed)
        return changed

    def forget(self, user_id: str, changed: asyncio.Event) -> None:
        """Stop waking ``changed`` (its stream ended)."""
        waiting = self._waiting.get(user_id)
        if waiting is not None:
            waiting.discard(changed)
            if not waiting:
                del self._waiting[user_id]

    def changed(self, user_id: str) -> None:
        """Wake every stream of ``user_id``."""
        for changed in self._waiting.get(user_id, ()):
            changed.set()

    @property
    def streams(self) -> int:
        """Return how many streams are open on this worker."""
        return sum(len(waiting) for waiting in self._waiting.values())


inbox_watchers = InboxWatchers()
