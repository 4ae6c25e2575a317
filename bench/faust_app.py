"""A bare Faust app: one agent decodes each event and counts it per session in RocksDB
(or, with ``BENCH_FAUST_MODE``, takes the raw bytes and does nothing or writes a row each).

Run by :mod:`bench.faust_agent` as ``python -m faust -A bench.faust_app worker`` with its
settings in ``BENCH_FAUST_*`` variables (nothing of the shop's settings or code, but in the
``bulk-write`` mode: the same row writes into the shop's table class on the shop's transport,
runtime/changelog.py). When the agent has processed ``BENCH_FAUST_TARGET`` events it writes,
to ``BENCH_FAUST_RESULT``, the wall-clock times of the first and the last of them and the
table's total. Several workers with one ``BENCH_FAUST_APP_ID`` share the topic's partitions
(:func:`bench.scaling.measure_scaling_floor`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import faust
from faust.models.fields import StringField
from faust.types import StreamT
from faust.types.transports import TransportT

from runtime.tables import ShopTable
from runtime.transport import ShopTransport

__all__ = ["MODE", "BenchEvent", "Stopwatch", "app"]


def _env(name: str) -> str:
    """Return the ``BENCH_FAUST_<name>`` variable, or stop saying how to run the app."""
    try:
        return os.environ[f"BENCH_FAUST_{name}"]
    except KeyError:
        raise SystemExit(f"bench.faust_app: BENCH_FAUST_{name} is not set "
                         "(run it through 'python -m bench')") from None


class BenchEvent(
    faust.Record,
    serializer="json",
    include_metadata=False,
    validation=True,
    coerce=True,
    isodates=True,
):
    """A tracked behaviour, decoded with the same Record options as the shop's events."""

    type: str
    event_id: str
    occurred_at: datetime
    session_id: str
    correlation_id: str = StringField(required=False, allow_blank=True, default="")
    schema_version: int = 1
    user_id: str | None = None
    sku: str | None = None
    query: str | None = None
    path: str | None = None


#: What the agent does with each event (BENCH_FAUST_MODE): ``count`` decodes it as a Record
#: and adds one to its session's count; ``pass`` takes the raw bytes and does nothing (no
#: table at all); ``write`` takes the raw bytes and writes them to a row of their own;
#: ``bulk-write`` does the same into a ShopTable, whose changelog records go out in bulk.
MODE = os.environ.get("BENCH_FAUST_MODE", "count")
if MODE not in ("count", "pass", "write", "bulk-write"):
    raise SystemExit(f"bench.faust_app: BENCH_FAUST_MODE={MODE!r} is not count, pass, write "
                     "or bulk-write")


class ShopTransportApp(faust.App):
    """The bare app on the shop's transport (its producer sends the tables' changelogs in
    bulk), for ``bulk-write``."""

    def _new_transport(self) -> TransportT:
        return ShopTransport(self.conf.broker_consumer, self)


app = (ShopTransportApp if MODE == "bulk-write" else faust.App)(
    _env("APP_ID"),
    broker=_env("BROKER"),
    store="rocksdb://",
    datadir=_env("DATADIR"),
    web_host="127.0.0.1",
    web_port=int(_env("WEB_PORT")),
    web_in_thread=False,
    topic_partitions=4,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=1.5,
    processing_guarantee="at_least_once",
    autodiscover=False,
    # Standby copies of the table's partitions on the other workers of the group (Faust's
    # default, 1, unless BENCH_FAUST_STANDBY says otherwise): the scale-out floor runs two.
    table_standby_replicas=int(os.environ.get("BENCH_FAUST_STANDBY", "1")),
)

if MODE == "count":
    events_topic = app.topic(_env("TOPIC"), key_type=str, key_serializer="raw",
                             value_type=BenchEvent)
    #: session id -> events counted.
    session_counts = app.Table("session-counts", default=int, key_type=str, value_type=int)
else:
    raw_topic = app.topic(_env("TOPIC"), key_type=str, key_serializer="raw",
                          value_serializer="raw")
if MODE == "write":
    #: n -> the n-th event's bytes.
    raw_rows = app.Table("raw-rows", key_type=bytes, value_type=bytes)
elif MODE == "bulk-write":
    raw_rows = ShopTable(app, name="raw-rows", key_type=bytes, value_type=bytes,
                         beacon=app.tables.beacon)
    app.tables.add(raw_rows)


class Stopwatch:
    """Note the first and the ``target``-th event, then write them to ``path`` once."""

    def __init__(self, target: int, path: Path) -> None:
        self.target = target
        self.path = path
        self.seen = 0
        self.first_at = 0.0

    def tick(self) -> bool:
        """Count one processed event; return True when it was the ``target``-th."""
        self.seen += 1
        if self.seen == 1:
            self.first_at = time.time()
        return self.seen == self.target

    def write(self, last_at: float, table_total: int) -> None:
        """Write the result atomically (the parent polls for the file)."""
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({"first_at": self.first_at, "last_at": last_at,
                                       "events": self.seen, "table_total": table_total}))
        partial.replace(self.path)


if MODE == "count":
    @app.agent(events_topic)
    async def count_by_session(events: StreamT[BenchEvent]) -> None:
        """Add one to the session's count for every event."""
        watch = Stopwatch(int(_env("TARGET")), Path(_env("RESULT")))
        async for event in events:
            session_counts[event.session_id] += 1
            if watch.tick():
                last_at = time.time()
                watch.write(last_at, sum(session_counts.values()))
else:
    @app.agent(raw_topic)
    async def take_raw(events: StreamT[bytes]) -> None:
        """Take each event's bytes; in ``write`` mode, write them to a new row."""
        watch = Stopwatch(int(_env("TARGET")), Path(_env("RESULT")))
        write = MODE in ("write", "bulk-write")
        async for value in events:
            if write:
                raw_rows[b"%d" % watch.seen] = value
            if watch.tick():
                last_at = time.time()
                watch.write(last_at, len(list(raw_rows.keys())) if write else watch.seen)
