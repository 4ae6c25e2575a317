"""agents/dead_letters.py: decode, handle, dead-letter what fails, and carry on.

Most tests run the real analytics agent (batched: ``analytics.tracked``) in Faust's
``agent.test_context()`` (memory tables, no broker; the dead-letters producer is replaced by
an AsyncMock). The tests of
``for_each_event`` itself feed it a minimal stream: an object whose ``events()`` yields things
with a ``.message``, which is all the function reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest
from faust.types.agents import AgentTestWrapperT
from prometheus_client import REGISTRY

import agents.analytics
from agents.analytics import absorb_tracked
from agents.dead_letters import dead_letter, for_each_event
from models.analytics import PACKED_TYPE, Tracked, pack_tracked
from models.base import new_event_id, utcnow
from models.dead_letters import DeadLetter
from tables.analytics import public_view, session_activity
from tables.replay import Position

AGENT = "analytics.tracked"
TIMEOUT = 5.0


def new_session() -> str:
    return f"sess-{uuid.uuid4().hex[:12]}"


def tracked(session_id: str, type_: str = "page_view", event_id: str | None = None) -> Tracked:
    return Tracked(type=type_, event_id=event_id or new_event_id(), occurred_at=utcnow(),
                   session_id=session_id)


def dead_letters_total(stage: str, topic: str = "analytics", agent: str = AGENT) -> float:
    labels = {"topic": topic, "agent": agent, "stage": stage}
    return REGISTRY.get_sample_value("shop_dead_letters_total", labels) or 0.0


def replays_skipped() -> float:
    return sum(REGISTRY.get_sample_value("shop_replays_skipped_total",
                                         {"table": "session-activity", "reason": why}) or 0.0
               for why in ("replay", "duplicate"))


def letters(send: AsyncMock) -> list[DeadLetter]:
    for call in send.await_args_list:
        assert call.kwargs["key"] == call.kwargs["value"].source_topic
    return [call.kwargs["value"] for call in send.await_args_list]


@pytest.fixture
def send() -> Iterator[AsyncMock]:
    """Replace the dead-letters producer: the AsyncMock records every letter sent."""
    with patch("agents.dead_letters.dead_letters_topic.send", new_callable=AsyncMock) as mock:
        yield mock


async def put(agent: AgentTestWrapperT, event: Tracked) -> None:
    await agent.put(event.dumps(), key=event.session_id)


async def drain(agent: AgentTestWrapperT) -> None:
    """Return once every value put so far is fully handled.

    The agent takes its values in batches (up to half a second apart) and handles a batch
    in order, so once a marker put last is counted in its session's row, all earlier values
    are handled.
    """
    marker = tracked(new_session())
    await put(agent, marker)
    while marker.session_id not in session_activity:  # noqa: ASYNC110 (a table, no event)
        await asyncio.sleep(0.02)


# -- The analytics agent in test_context ---------------------------------------------------


async def test_a_malformed_value_is_dead_lettered_and_the_next_event_counted(
    send: AsyncMock,
) -> None:
    session = new_session()
    valid = tracked(session, "product_view")
    decode_errors = dead_letters_total("decode")

    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        bad = await agent.put(b"not json")
        await put(agent, valid)
        await drain(agent)

    assert public_view(session_activity[session]) == {
        "session_id": session,
        "user_id": None,
        "events": 1,
        "counts": {"product_view": 1},
        "first_seen": valid.occurred_at.isoformat(),
        "last_seen": valid.occurred_at.isoformat(),
    }
    [letter] = letters(send)
    assert isinstance(letter, DeadLetter)
    assert letter.source_topic == "analytics"
    assert letter.stage == "decode"
    assert letter.agent == AGENT
    assert (letter.partition, letter.offset) == (0, 0)
    assert (bad.message.partition, bad.message.offset) == (0, 0)
    assert letter.key is None
    assert (letter.value, letter.value_encoding) == ("not json", "utf-8")
    assert letter.error_type == "EventDecodeError"
    assert letter.error.startswith("not JSON")
    assert letter.failed_at.tzinfo is not None
    assert dead_letters_total("decode") == decode_errors + 1


async def test_a_value_that_is_not_utf8_is_kept_as_base64(send: AsyncMock) -> None:
    raw = b"\xff\xfe\xfd\x00garbage"
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await agent.put(raw, key="sess-binary")
        await drain(agent)

    [letter] = letters(send)
    assert letter.value_encoding == "base64"
    assert letter.value is not None and base64.b64decode(letter.value) == raw
    assert letter.key == "sess-binary"


async def test_an_event_of_the_wrong_shape_is_dead_lettered_with_the_reason(
    send: AsyncMock,
) -> None:
    value = json.dumps({"type": "purchase", "event_id": "e1", "session_id": "s",
                        "occurred_at": "2024-05-01T10:00:00Z"}).encode()
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await agent.put(value, key="s")
        await drain(agent)

    [letter] = letters(send)
    assert letter.stage == "decode"
    assert letter.value == value.decode()
    assert "type must be one of" in letter.error


async def test_a_failing_handler_is_dead_lettered_and_the_agent_carries_on(
    send: AsyncMock,
) -> None:
    doomed, fine = tracked(new_session()), tracked(new_session(), "search")
    real_rule = agents.analytics.add_activities

    def fail_on_doomed(row: dict[str, Any] | None, session_id: str,
                       seen: list[Any]) -> dict[str, Any]:
        if session_id == doomed.session_id:
            raise RuntimeError("stock service said no")
        return real_rule(row, session_id, seen)

    handle_errors = dead_letters_total("handle")
    with patch("agents.analytics.add_activities", new=fail_on_doomed):
        async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
            await put(agent, doomed)
            await put(agent, fine)
            await drain(agent)

    assert doomed.session_id not in session_activity
    assert session_activity[fine.session_id]["counts"] == {"search": 1}
    [letter] = letters(send)
    assert letter.stage == "handle"
    assert (letter.source_topic, letter.offset, letter.key) == ("analytics", 0, doomed.session_id)
    assert letter.value == doomed.dumps().decode()
    assert (letter.error_type, letter.error) == ("RuntimeError", "stock service said no")
    assert dead_letters_total("handle") == handle_errors + 1


async def test_a_duplicate_and_a_redelivery_are_counted_once(send: AsyncMock) -> None:
    session = new_session()
    first, second = tracked(session, "page_view"), tracked(session, "add_to_cart")
    skipped = replays_skipped()

    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await put(agent, first)  # offset 0
        await put(agent, first)  # offset 1: the producer appended it twice
        await put(agent, second)  # offset 2
        await drain(agent)
    assert session_activity[session]["events"] == 2

    # A restarted consumer gets the partition again from offset 0 (test_context numbers the
    # values it is given from 0): the same events at the same offsets.
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await put(agent, first)
        await put(agent, first)
        await put(agent, second)
        await drain(agent)

    row = session_activity[session]
    assert row["events"] == 2
    assert row["counts"] == {"page_view": 1, "add_to_cart": 1}
    assert replays_skipped() == skipped + 4
    assert send.await_count == 0


async def test_an_event_redelivered_at_an_earlier_offset_is_counted_once(send: AsyncMock) -> None:
    session = new_session()
    event = tracked(session)
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        for _ in range(3):
            await put(agent, tracked(new_session()))  # offsets 0..2: other sessions
        await put(agent, event)  # offset 3
        await drain(agent)
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await put(agent, event)  # offset 0 this time
        await drain(agent)
    assert session_activity[session]["events"] == 1


# -- Packs: many events of one partition in one message (agents/tracking.py) -----------------


def pack(events: list[Tracked], pack_id: str = "pack-1") -> bytes:
    return pack_tracked(pack_id, [e.dumps() for e in events], occurred_at=utcnow().isoformat())


async def test_a_pack_counts_each_of_its_events_in_its_session(send: AsyncMock) -> None:
    one, two = new_session(), new_session()
    events = [tracked(one, "product_view"), tracked(two, "search"), tracked(one, "add_to_cart")]
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await agent.put(pack(events), key=one)
        await drain(agent)
    assert session_activity[one]["counts"] == {"product_view": 1, "add_to_cart": 1}
    assert session_activity[two]["counts"] == {"search": 1}
    assert send.await_count == 0


async def test_a_redelivered_pack_is_counted_once(send: AsyncMock) -> None:
    session = new_session()
    value = pack([tracked(session), tracked(session, "search")])
    skipped = replays_skipped()
    for _ in range(2):  # a restarted consumer reads the pack again at the same offset
        async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
            await agent.put(value, key=session)
            await agent.put(value, key=session)  # and the producer appended it twice
            await drain(agent)
    assert session_activity[session]["events"] == 2
    assert replays_skipped() == skipped + 3


async def test_a_bad_event_of_a_pack_is_dead_lettered_alone_and_the_rest_counted(
    send: AsyncMock,
) -> None:
    session = new_session()
    good = tracked(session, "search")
    bad = {"type": "purchase", "event_id": "e-bad", "session_id": session,
           "occurred_at": "2024-05-01T10:00:00Z"}
    value = pack_tracked("pack-2", [good.dumps(), json.dumps(bad).encode(), b"[1]"],
                         occurred_at=utcnow().isoformat())
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await agent.put(value, key=session)
        await drain(agent)

    assert session_activity[session]["counts"] == {"search": 1}
    first, second = letters(send)
    assert (first.stage, first.offset, first.key) == ("decode", 0, session)
    assert json.loads(first.value or "") == bad, "the letter holds the bad event alone"
    assert first.error.startswith("event 1 of the pack: not a valid Tracked")
    assert json.loads(second.value or "") == [1]
    assert second.error == "event 2 of the pack: expected a JSON object, got list"


async def test_a_pack_without_events_is_dead_lettered_whole(send: AsyncMock) -> None:
    value = json.dumps({"type": PACKED_TYPE, "event_id": "p", "occurred_at": "x",
                        "events": []}).encode()
    async with asyncio.timeout(TIMEOUT), absorb_tracked.test_context() as agent:
        await agent.put(value, key="s")
        await drain(agent)
    [letter] = letters(send)
    assert (letter.stage, letter.value) == ("decode", value.decode())
    assert "non-empty list of events" in letter.error


# -- for_each_event and dead_letter on a minimal stream -------------------------------------


class Stream:
    """What for_each_event reads of a Faust stream: ``events()`` of things with ``.message``."""

    def __init__(self, values: list[bytes | None], topic: str = "orders",
                 headers: list[tuple[str, bytes]] | None = None) -> None:
        self.messages = [
            SimpleNamespace(topic=topic, partition=3, offset=100 + i, key=b"k", value=value,
                            headers=headers or [])
            for i, value in enumerate(values)
        ]

    async def events(self) -> AsyncIterator[SimpleNamespace]:
        for message in self.messages:
            yield SimpleNamespace(message=message)


def recorder() -> tuple[list[tuple[Tracked, Position]], Callable[..., Any]]:
    seen: list[tuple[Tracked, Position]] = []

    async def handler(event: Tracked, position: Position) -> None:
        seen.append((event, position))

    return seen, handler


async def test_the_handler_gets_each_event_with_its_position(send: AsyncMock) -> None:
    events = [tracked("sess-a"), tracked("sess-b")]
    seen, handler = recorder()
    await for_each_event(Stream([e.dumps() for e in events]), Tracked, handler, agent="t")  # type: ignore[arg-type]
    assert [event for event, _ in seen] == events
    assert [position for _, position in seen] == [
        Position("orders", 100, events[0].event_id),
        Position("orders", 101, events[1].event_id),
    ]
    assert send.await_count == 0


async def test_every_failure_is_dead_lettered_in_order_and_the_rest_handled(
    send: AsyncMock,
) -> None:
    good = tracked("sess-good")
    seen, record = recorder()

    async def handler(event: Tracked, position: Position) -> None:
        if event.session_id == "sess-bad":
            raise KeyError("sku-1")
        await record(event, position)

    values = [None, b"{}", tracked("sess-bad").dumps(), good.dumps()]
    await for_each_event(Stream(values), Tracked, handler, agent="t")  # type: ignore[arg-type]

    assert [event for event, _ in seen] == [good]
    found = letters(send)
    assert [(d.offset, d.stage, d.error_type) for d in found] == [
        (100, "decode", "EventDecodeError"),
        (101, "decode", "EventDecodeError"),
        (102, "handle", "KeyError"),
    ]
    assert found[0].value is None
    assert all((d.source_topic, d.partition, d.key, d.agent) == ("orders", 3, "k", "t")
               for d in found)


@pytest.mark.parametrize("poison", [
    b"[" * 100_000,
    b'{"type": "page_view", "event_id": "e", "session_id": "s", "occurred_at": null}',
], ids=["deeply-nested", "null-time"])
async def test_no_message_stops_the_agent(send: AsyncMock, poison: bytes) -> None:
    good = tracked("sess-good")
    seen, handler = recorder()
    await for_each_event(Stream([poison, good.dumps()]), Tracked, handler, agent="t")  # type: ignore[arg-type]
    assert [event for event, _ in seen] == [good]
    assert [d.stage for d in letters(send)] == ["decode"]


async def test_a_dead_letter_is_plain_json(send: AsyncMock) -> None:
    event = SimpleNamespace(message=Stream([b"\x00\xff"]).messages[0])
    await dead_letter(event, ValueError("bad"), agent="t", stage="decode")  # type: ignore[arg-type]
    [letter] = letters(send)
    data = json.loads(letter.dumps())
    assert "__faust" not in data
    assert data["value"] == base64.b64encode(b"\x00\xff").decode()
    assert data["value_encoding"] == "base64"
    assert data["error"] == "bad"
    assert datetime.fromisoformat(data["failed_at"].replace("Z", "+00:00")).tzinfo == UTC


def test_the_type_is_found_with_json_whitespace_too() -> None:
    from agents.dead_letters import event_type_of

    assert event_type_of(b'{"type": "order_shipped", "order_id": "o-1"}') == "order_shipped"
    assert event_type_of(b'{ "type" : "x"}') == "x"
    assert event_type_of(b'{"order_id": "o-1", "type": "late"}') is None  # not first: decode
    assert event_type_of(b"not json") is None


def test_the_dead_letter_page_keeps_what_matches_its_filters() -> None:
    from web.admin_dead_letters import DeadLetterQuery, _letter, _matches

    letter = {"agent": "orders.saga", "source_topic": "orders", "failed_at": "2026-11-25T10:00"}
    raw = json.dumps(letter).encode()
    assert _letter(raw) == letter
    assert _letter(b"not json") is None and _letter(b"[1]") is None and _letter(None) is None
    assert _matches(letter, DeadLetterQuery())
    assert _matches(letter, DeadLetterQuery(agent="orders.saga", source_topic="orders"))
    assert not _matches(letter, DeadLetterQuery(agent="inventory.stock"))
    assert not _matches(letter, DeadLetterQuery(source_topic="payments"))
