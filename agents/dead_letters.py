"""The one way agents consume: decode, handle, and dead-letter what fails, then carry on.

Every agent hands its stream to :func:`for_each_event`. An event whose bytes do not decode
into the agent's model, or whose handler raises, is written to the ``dead-letters`` topic with
the original bytes, topic, partition, offset and error, logged with those coordinates, counted
in ``/metrics`` (``shop_dead_letters_total``), and the agent goes on with the next event.

An event that carries the id of the request that caused it (the ``shop-request-id`` header,
models/tracing.py) is handled with that id current: what the handler sends carries it on,
what it logs carries it, and so does the one ``trace.events`` record that says the agent
handled the event (topic, partition, offset, type), the event's step in the request's trace.
Events without the header cost nothing more.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from faust.types import EventT, StreamT
from prometheus_client import Counter

from agents.topics import dead_letters_topic
from models.base import Event, EventTypes, decode_event, utcnow
from models.dead_letters import DeadLetter
from models.tracing import REQUEST_ID, SUBJECT, TRACE_LOGGER, header_request_id, subject_of
from runtime.positions import APPLIERS, causes_of, positions
from tables.replay import Position

__all__ = ["dead_letter", "event_type_of", "for_each_event", "request_held"]

log = logging.getLogger(__name__)
#: One record per handled event of a traced request (models/tracing.py).
event_steps = logging.getLogger(f"{TRACE_LOGGER}.events")

DEAD_LETTERS = Counter(
    "shop_dead_letters_total",
    "Events sent to the dead-letters topic",
    ["topic", "agent", "stage"],
)

E = TypeVar("E", bound=Event)
Handler = Callable[[E, Position], Awaitable[None]]


async def for_each_event(
    stream: StreamT[bytes],
    model: type[E] | EventTypes,
    handler: Handler[E],
    *,
    agent: str,
    skip: frozenset[str] = frozenset(),
) -> None:
    """Decode every event of ``stream`` into ``model`` and await ``handler(event, position)``.

    ``model`` is one event class, or event classes by their type (see models.base). Events
    whose type is in ``skip`` (other agents' events on a shared topic) are passed over
    without being decoded. Once the topic's applier (runtime/positions.py) is done with an
    event, however that ended, the event's offset counts as applied on this worker, with the
    sends of its handling that the topic follows (``FOLLOWS``) as what it caused.
    """
    async for event in stream.events():
        message = event.message
        applier = APPLIERS.get(message.topic) == agent
        with causes_of(message.topic if applier else None) as caused:
            if not (skip and event_type_of(message.value) in skip):
                await _handle(event, model, handler, agent)
        if applier:
            positions.handled(message.topic, message.partition, message.offset, caused)


async def _handle(event: EventT, model: type[E] | EventTypes, handler: Handler[E],
                  agent: str) -> None:
    """Decode and handle one event; dead-letter it if either fails."""
    message = event.message
    try:
        record = decode_event(model, message.value)
    except Exception as exc:
        await dead_letter(event, exc, agent=agent, stage="decode")
        return
    position = Position(message.topic, message.offset, record.event_id)
    request_id = header_request_id(message.headers) if message.headers else ""
    if request_id:
        await _handle_traced(event, record, position, handler, agent, request_id)
        return
    try:
        await handler(record, position)
    except Exception as exc:
        await dead_letter(event, exc, agent=agent, stage="handle")


async def _handle_traced(event: EventT, record: E, position: Position, handler: Handler[E],
                         agent: str, request_id: str) -> None:
    """Handle ``record`` with the id of the request that caused it current (see above)."""
    with request_held(event, record, agent, request_id):
        try:
            await handler(record, position)
        except Exception as exc:
            await dead_letter(event, exc, agent=agent, stage="handle")


@contextmanager
def request_held(event: EventT, record: Event, agent: str,
                 request_id: str | None = None) -> Iterator[None]:
    """Hold the request id ``event`` carries (``request_id`` if already read) and what
    ``record`` is about while the body runs, after logging the event's trace step.

    Without a request id this does nothing: the event is not part of a traced request.
    """
    message = event.message
    if request_id is None:
        request_id = header_request_id(message.headers) if message.headers else ""
    if not request_id:
        yield
        return
    request_token = REQUEST_ID.set(request_id)
    subject_token = SUBJECT.set(subject_of(record))
    try:
        if event_steps.isEnabledFor(logging.INFO):
            event_steps.info(
                "%s handled %s from %s[%s]@%s", agent, record.type, message.topic,
                message.partition, message.offset,
                extra={"trace": {"kind": "event", "agent": agent, "topic": message.topic,
                                 "partition": message.partition, "offset": message.offset,
                                 "type": record.type, "event_id": record.event_id}})
        yield
    finally:
        SUBJECT.reset(subject_token)
        REQUEST_ID.reset(request_token)


_TYPE_FIRST = b'{"type":"'
#: The same with any JSON whitespace (``json.dumps`` with its default separators writes it).
_TYPE_FIRST_SPACED = re.compile(rb'\{\s*"type"\s*:\s*"([^"\\]{1,100})"')


def event_type_of(raw: bytes | None) -> str | None:
    """Return the event type of ``raw`` when it comes first (as ShopStream writes it), else None.

    A cheap look that saves decoding events an agent does not handle; None means "decode it".
    """
    if raw is None:
        return None
    if raw.startswith(_TYPE_FIRST):
        end = raw.find(b'"', len(_TYPE_FIRST))
        return raw[len(_TYPE_FIRST):end].decode("ascii", "replace") if end > 0 else None
    spaced = _TYPE_FIRST_SPACED.match(raw)
    return spaced.group(1).decode("ascii", "replace") if spaced else None


async def dead_letter(event: EventT, exc: BaseException, *, agent: str, stage: str,
                      payload: bytes | None = None) -> None:
    """Write ``event``'s original message and ``exc`` to the dead-letters topic.

    ``payload`` replaces the message's value for a message that packs many events and failed
    on one of them: the letter then holds just that event, so replaying it adds only it.
    """
    message = event.message
    value, encoding = _as_text(message.value if payload is None else payload)
    key, _ = _as_text(message.key)
    log.warning(
        "dead-lettered %s[%s]@%s (%s, %s): %s: %s",
        message.topic, message.partition, message.offset, agent, stage,
        type(exc).__name__, exc,
        exc_info=stage == "handle",
    )
    DEAD_LETTERS.labels(message.topic, agent, stage).inc()
    letter = DeadLetter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        value=value,
        value_encoding=encoding,
        agent=agent,
        stage=stage,
        error_type=type(exc).__name__,
        error=str(exc),
        failed_at=utcnow(),
    )
    await dead_letters_topic.send(key=message.topic, value=letter)


def _as_text(raw: bytes | str | None) -> tuple[str | None, str]:
    if raw is None or isinstance(raw, str):
        return raw, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"

