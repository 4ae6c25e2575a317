"""Sending what the rules decided: effects become messages on the topics they name."""

from __future__ import annotations

from collections.abc import Iterable

from agents.topics import TOPICS
from models.base import Effect
from tables.replay import Send

__all__ = ["send_all", "to_sends"]


def to_sends(effects: Iterable[Effect]) -> list[Send]:
    """Return ``effects`` as messages (topic, key, JSON), the form rows keep them in."""
    return [(e.topic, e.key, e.event.dumps().decode()) for e in effects]


async def send_all(sends: Iterable[Send]) -> None:
    """Send each message to its topic (buffered; flushed before offsets are committed)."""
    for topic, key, value in sends:
        await TOPICS[topic].send(key=key, value=value.encode())
