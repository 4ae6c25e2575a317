"""``GET /api/admin/dead-letters``: the newest dead letters, with their errors (admin).

The ``dead-letters`` topic is the record (agents/dead_letters.py writes the original bytes,
coordinates and error of every event an agent could not decode or handle); nothing else keeps
a copy. A request reads the end of each of its partitions with a short-lived consumer outside
any group (no offsets committed, no rebalance), so any worker answers completely. Filtered
by agent and source topic, newest first.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.web import Request, Response
from pydantic import BaseModel, Field

from agents.topics import dead_letters_topic
from app import app
from config.checks import kafka_hosts
from web.bodies import read_query
from web.identity import require
from web.openapi import endpoint
from web.views import ShopView

__all__ = ["DeadLetterOut", "DeadLetterPage", "DeadLetterQuery", "recent_dead_letters"]

MAX_LIMIT = 500
#: A partition is read through when a fetch brings nothing for this long (milliseconds).
IDLE_MS = 200
#: The whole read gives up after this long (seconds); the page then says it is incomplete.
READ_S = 5.0


class DeadLetterQuery(BaseModel):
    """Which dead letters: how many of the newest, of which agent, from which topic."""

    limit: int = Field(default=50, ge=1, le=MAX_LIMIT)
    agent: str | None = Field(default=None, pattern=r"^[a-z0-9_.-]{1,64}$",
                              description="the agent that failed (e.g. orders.saga)")
    source_topic: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,100}$",
                                     description="the topic the event came from")


class DeadLetterOut(BaseModel):
    """One event an agent could not decode or handle, with its coordinates and error."""

    source_topic: str
    partition: int
    offset: int
    key: str | None
    value: str | None = Field(description="the original bytes (text, or base64)")
    value_encoding: str = Field(description="utf-8 or base64")
    agent: str
    stage: str = Field(description="decode or handle")
    error_type: str
    error: str
    failed_at: datetime


class DeadLetterPage(BaseModel):
    """The newest dead letters first; ``complete`` is false if the read ran out of time."""

    items: list[DeadLetterOut]
    complete: bool


def _bootstrap() -> list[str]:
    return [f"{host}:{port}" for host, port in kafka_hosts(app.settings.kafka_url)]


async def recent_dead_letters(query: DeadLetterQuery) -> dict[str, Any]:
    """Return the newest ``query.limit`` dead letters that match, from every partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=_bootstrap(), enable_auto_commit=False,
                                group_id=None, fetch_max_wait_ms=IDLE_MS)
    await consumer.start()
    try:
        topic = dead_letters_topic.get_topic_name()
        if topic not in await consumer.topics():  # also fetches the partitions' metadata
            return {"items": [], "complete": True}
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return {"items": [], "complete": True}
        consumer.assign(tps)
        # A filter may skip many: read back further than the limit (bounded).
        unfiltered = query.agent is None and query.source_topic is None
        back = query.limit if unfiltered else MAX_LIMIT * 4
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - back))
        found, complete = await _read_through(consumer, query, ends)
    finally:
        await consumer.stop()
    found.sort(key=lambda letter: letter["failed_at"], reverse=True)
    return {"items": found[:query.limit], "complete": complete}


async def _read_through(consumer: AIOKafkaConsumer, query: DeadLetterQuery,
                        ends: dict[TopicPartition, int]) -> tuple[list[dict[str, Any]], bool]:
    """Read until every partition is past its end offset and a fetch brings nothing more
    (or READ_S ran out); keep what matches."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_S
    while loop.time() < deadline:
        batches = await consumer.getmany(timeout_ms=IDLE_MS, max_records=1000)
        if not batches and all([await consumer.position(tp) >= end
                                for tp, end in ends.items()]):
            return found, True
        for records in batches.values():
            for record in records:
                letter = _letter(record.value)
                if letter is not None and _matches(letter, query):
                    found.append(letter)
    return found, False


def _letter(value: bytes | None) -> dict[str, Any] | None:
    try:
        letter = json.loads(value or b"")
        return letter if isinstance(letter, dict) and "failed_at" in letter else None
    except ValueError:
        return None


def _matches(letter: dict[str, Any], query: DeadLetterQuery) -> bool:
    return ((query.agent is None or letter.get("agent") == query.agent)
            and (query.source_topic is None or letter.get("source_topic") == query.source_topic))


@endpoint("GET", "/api/admin/dead-letters", query=DeadLetterQuery, response=DeadLetterPage,
          roles=("admin",))
class DeadLettersView(ShopView):
    """The newest dead letters of every agent, with the original bytes and the error."""

    async def get(self, request: Request) -> Response:
        require(request, "admin")
        query = read_query(request, DeadLetterQuery)
        return self.json(await recent_dead_letters(query))
