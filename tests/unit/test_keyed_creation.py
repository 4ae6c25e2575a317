"""web/idempotency.first_of_key: the first body of an Idempotency-Key wins, on the owner."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import web.idempotency as idempotency
from tables.orders import OrderWatchers
from web.errors import KeyInProgress, KeyReused
from web.idempotency import Keyed, first_of_key


async def send_nothing() -> None:
    """A creation whose message the agent never applies (or that is not needed)."""


def kind(rows: dict[str, Any], watchers: OrderWatchers) -> Keyed:
    return Keyed(rows, watchers, "request_digest", "order", "placed")


async def test_a_retry_finds_its_row_and_sends_nothing() -> None:
    rows = {"o1": {"id": "o1", "request_digest": "d1"}}
    sent: list[str] = []

    async def create() -> None:
        sent.append("again")

    assert await first_of_key(kind(rows, OrderWatchers()), "o1", "d1", create) == rows["o1"]
    assert sent == []


async def test_another_body_under_the_key_is_refused() -> None:
    rows = {"o1": {"id": "o1", "request_digest": "d1"}}
    with pytest.raises(KeyReused, match="placed an order with another body"):
        await first_of_key(kind(rows, OrderWatchers()), "o1", "d2", send_nothing)


async def test_a_new_key_sends_and_waits_for_the_row_the_agent_writes() -> None:
    rows: dict[str, Any] = {}
    watchers = OrderWatchers()

    async def create() -> None:
        async def agent() -> None:
            rows["o1"] = {"id": "o1", "request_digest": "d1"}
            watchers.changed("o1", rows["o1"])
        asyncio.get_running_loop().call_later(0.01, lambda: asyncio.ensure_future(agent()))

    assert (await first_of_key(kind(rows, watchers), "o1", "d1", create))["id"] == "o1"
    assert watchers._waiting == {}, "nothing left waiting"


async def test_a_race_lost_to_another_body_is_refused() -> None:
    rows: dict[str, Any] = {}

    async def create() -> None:  # the other request's OrderPlaced came first
        rows["o1"] = {"id": "o1", "request_digest": "theirs"}

    with pytest.raises(KeyReused):
        await first_of_key(kind(rows, OrderWatchers()), "o1", "mine", create)


async def test_no_row_in_time_is_a_409_and_nothing_is_left_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "KEYED_WAIT_S", 0.01)
    watchers = OrderWatchers()
    with pytest.raises(KeyInProgress, match="still being placed"):
        await first_of_key(kind({}, watchers), "o1", "d1", send_nothing)
    assert watchers._waiting == {}
