"""The central log on disk: JSON lines in files rotated by size, newest first on reading.

``LogStore(folder)`` appends records to ``central.jsonl``; past ``max_bytes`` that file
becomes ``central.1.jsonl`` (and ``.1`` becomes ``.2``...), keeping ``keep`` files in all, so
the store never holds more than about ``keep * max_bytes``. A line holds one record (a JSON
object) or a group of them (a JSON array, as the shipping handler sends them: stored as they
came, never decoded and encoded again). It remembers the ``event_id`` of the last records it
wrote (read back from the files at start) and skips a record it already has, and a group
whose last record it has: a duplicate delivery is stored once. Every method is blocking; the
consumer calls them off the event loop (one writer thread, reads in ``asyncio.to_thread``).
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rabbit_bridge.log_records import level_number

__all__ = ["LogFilter", "LogStore"]

CURRENT = "central.jsonl"
#: Event ids remembered for spotting duplicates.
REMEMBERED_IDS = 50_000


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which records a reader wants: a service, a level and above, a time, a substring, the
    request that caused them, their correlation id (an order's, for the saga), the order,
    ticket or user they name, and ``about``: the records of one request id, or naming one
    order, ticket or user id (a trace's first look)."""

    service: str | None = None
    level: str | None = None
    since: datetime | None = None
    q: str | None = None
    request_id: str | None = None
    correlation_id: str | None = None
    order_id: str | None = None
    ticket_id: str | None = None
    user_id: str | None = None
    about: str | None = None
    #: Any of these request ids (a trace's second look: the requests an order's events name).
    request_ids: frozenset[str] | None = None

    def matches(self, entry: dict[str, Any]) -> bool:
        """Return True if ``entry`` passes every filter that is set."""
        if self.service and entry.get("service") != self.service:
            return False
        if self.request_id and entry.get("request_id") != self.request_id:
            return False
        if self.correlation_id and entry.get("correlation_id") != self.correlation_id:
            return False
        if self.order_id and entry.get("order_id") != self.order_id:
            return False
        if self.ticket_id and entry.get("ticket_id") != self.ticket_id:
            return False
        if self.user_id and entry.get("user_id") != self.user_id:
            return False
        if self.about and self.about not in (entry.get("request_id"), entry.get("order_id"),
                                             entry.get("ticket_id"), entry.get("user_id")):
            return False
        if self.request_ids is not None and entry.get("request_id") not in self.request_ids:
            return False
        if self.level and level_number(str(entry.get("level", ""))) < level_number(self.level):
            return False
        if self.since is not None:
            try:
                if datetime.fromisoformat(str(entry.get("time"))) < self.since:
                    return False
            except ValueError:
                return False
        return not self.q or self.q.lower() in str(entry.get("message", "")).lower()


class LogStore:
    """Log records in size-rotated JSON-lines files in ``folder``."""

    def __init__(self, folder: Path, *, max_bytes: int = 4 * 1024 * 1024, keep: int = 5) -> None:
        if keep < 1 or max_bytes < 1:
            raise ValueError("a log store keeps at least one file of at least one byte")
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.max_bytes = max_bytes
        self.keep = keep
        self._lock = threading.Lock()
        self._ids: OrderedDict[str, None] = OrderedDict()
        for entry in reversed(list(self._newest_first(limit_ids=REMEMBERED_IDS))):
            self._remember(str(entry.get("event_id", "")))
        self._file = open(self.path(0), "ab")  # noqa: SIM115 (kept open for appends)

    def path(self, index: int) -> Path:
        """Return the file ``index`` (0 is the current one, higher is older)."""
        return self.folder / (CURRENT if index == 0 else f"central.{index}.jsonl")

    def append(self, entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store ``entries`` not stored before (by ``event_id``); return those that were new."""
        with self._lock:
            lines = []
            new = []
            for entry in entries:
                event_id = str(entry.get("event_id", ""))
                if event_id and event_id in self._ids:
                    continue
                self._remember(event_id)
                new.append(entry)
                lines.append(json.dumps(entry, separators=(",", ":")).encode() + b"\n")
            for line in lines:
                if self._file.tell() and self._file.tell() + len(line) > self.max_bytes:
                    self._rotate()
                self._file.write(line)
            self._file.flush()  # in the OS's hands: a crash of the worker loses nothing
            return new

    def append_groups(self, groups: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Store each ``(last_id, line)`` not stored before; return which were new.

        ``line`` is a JSON array of records, ``last_id`` the ``event_id`` of its last one: a
        group is written whole in one write, so if its last record is stored, all of it is.
        """
        with self._lock:
            new = []
            for last_id, line in groups:
                if last_id in self._ids:
                    new.append(False)
                    continue
                self._remember(last_id)
                if self._file.tell() and self._file.tell() + len(line) + 1 > self.max_bytes:
                    self._rotate()
                self._file.write(line + b"\n")
                new.append(True)
            if any(new):
                self._file.flush()
            return new

    def read(self, chosen: LogFilter, limit: int) -> list[dict[str, Any]]:
        """Return up to ``limit`` records that match ``chosen``, newest first."""
        found: list[dict[str, Any]] = []
        for entry in self._newest_first():
            if chosen.matches(entry):
                found.append(entry)
                if len(found) >= limit:
                    break
        return found

    def size(self) -> int:
        """Return the bytes the store's files take."""
        return sum(p.stat().st_size for p in self._files())

    def close(self) -> None:
        """Close the current file."""
        with self._lock:
            self._file.close()

    def _remember(self, event_id: str) -> None:
        if not event_id:
            return
        self._ids[event_id] = None
        if len(self._ids) > REMEMBERED_IDS:
            self._ids.popitem(last=False)

    def _rotate(self) -> None:
        self._file.close()
        oldest = self.path(self.keep - 1)
        if self.keep == 1:
            oldest.unlink(missing_ok=True)
        else:
            for index in range(self.keep - 1, 0, -1):
                older = self.path(index - 1)
                if older.exists():
                    os.replace(older, self.path(index))
        self._file = open(self.path(0), "ab")  # noqa: SIM115

    def _files(self) -> Iterator[Path]:
        for index in range(self.keep):
            if self.path(index).exists():
                yield self.path(index)

    def _newest_first(self, limit_ids: int | None = None) -> Iterator[dict[str, Any]]:
        """Yield every stored record, newest first (files read whole, one at a time)."""
        seen = 0
        for path in list(self._files()):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # rotated away while listing
                continue
            for entry in _entries(reversed(data.splitlines())):
                yield entry
                seen += 1
                if limit_ids is not None and seen >= limit_ids:
                    return


def _entries(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """Yield the records of ``lines`` in their order; a group's (a JSON array's) last first,
    as the lines come newest first."""
    for line in lines:
        if not line.strip():
            continue
        try:
            decoded = json.loads(line)
        except ValueError:  # a line cut short by a crash
            continue
        if isinstance(decoded, dict):
            yield decoded
        elif isinstance(decoded, list):
            yield from (entry for entry in reversed(decoded) if isinstance(entry, dict))
