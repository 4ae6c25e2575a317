"""The durable local outbox: messages RabbitMQ could not take yet, on disk, in order.

A SQLite file in the worker's data dir (``outbox.sqlite3``). Messages are appended with a
rising sequence number and delivered oldest first, so messages of one routing key leave in
the order they were published. Every call is blocking and quick (one transaction); the
publisher runs them on its own thread so the event loop never waits on the disk.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Outbox", "OutgoingMessage", "StoredMessage"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish: where to, its id (for harmless duplicates) and its body."""

    exchange: str
    routing_key: str
    message_id: str
    body: bytes
    created_at: float
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message kept in the outbox, with its place in the delivery order."""

    seq: int
    message: OutgoingMessage


class Outbox:
    """Messages waiting for RabbitMQ, kept in a SQLite file and delivered oldest first."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash
        self._db.execute(_SCHEMA)
        self.depth: int = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def append(self, messages: Sequence[OutgoingMessage]) -> None:
        """Keep ``messages`` after every message already in the outbox."""
        if not messages:
            return
        rows = [(m.exchange, m.routing_key, m.message_id, m.body, json.dumps(m.headers),
                 m.created_at) for m in messages]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (exchange, routing_key, message_id, body, headers,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
        self.depth += len(rows)

    def oldest(self, limit: int) -> list[StoredMessage]:
        """Return up to ``limit`` of the oldest messages, oldest first."""
        rows = self._db.execute(
            "SELECT seq, exchange, routing_key, message_id, body, headers, created_at"
            " FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [StoredMessage(seq, OutgoingMessage(exchange, key, mid, bytes(body),
                                                   created, json.loads(headers)))
                for seq, exchange, key, mid, body, headers, created in rows]

    def remove_through(self, seq: int) -> None:
        """Forget every message up to and including ``seq`` (they were delivered)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            removed = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,)).rowcount
        self.depth -= removed

    def close(self) -> None:
        """Close the file."""
        self._db.close()
