"""agents/payments.py: a call's outcome (answer, error or timeout) goes back to the topic, and a
try is made once in a process however often it is asked for."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest

import agents.payments as agent
from models.base import decode_event
from models.payments import PAYMENT_EVENTS, ProviderAnswered, ProviderCall
from models.provider import SimulatedProvider

CALL = ProviderCall("charge", "o-1", 2500, payment_method="pm_card_ok")


@pytest.fixture
def sent() -> Iterator[AsyncMock]:
    """Replace the payments topic's send; forget this process's tries before and after."""
    agent._in_flight.clear()
    agent._sent_tries.clear()
    with patch.object(agent.payments_topic, "send", new=AsyncMock()) as mock:
        yield mock
    agent._in_flight.clear()
    agent._sent_tries.clear()


def answers(sent: AsyncMock) -> list[ProviderAnswered]:
    found = [decode_event(PAYMENT_EVENTS, call.kwargs["value"]) for call in sent.await_args_list]
    assert all(isinstance(a, ProviderAnswered) for a in found)
    return found  # type: ignore[return-value]


async def settle() -> None:
    while agent._in_flight:
        await asyncio.gather(*agent._in_flight.values())


@pytest.fixture
def provider() -> Iterator[SimulatedProvider]:
    simulated = SimulatedProvider(slow_seconds=0, hang_seconds=3600)
    with patch.object(agent, "provider", simulated):
        yield simulated


async def test_an_answer_goes_back_to_the_topic(sent: AsyncMock,
                                                provider: SimulatedProvider) -> None:
    agent.call_provider(CALL)
    await settle()
    [answered] = answers(sent)
    assert answered.ok and answered.fault == "" and answered.charge_id.startswith("ch_")
    assert sent.await_args is not None and sent.await_args.kwargs["key"] == "o-1"


async def test_a_call_that_raises_is_a_fault_of_its_try(sent: AsyncMock,
                                                        provider: SimulatedProvider) -> None:
    agent.call_provider(dataclasses.replace(CALL, payment_method="pm_card_flaky", attempt=1))
    await settle()
    [answered] = answers(sent)
    assert (answered.ok, answered.fault, answered.attempt) == (False, "error", 1)
    assert answered.reason.startswith("ProviderUnavailable: ")


async def test_a_call_past_the_timeout_is_a_timeout_fault(sent: AsyncMock,
                                                          provider: SimulatedProvider) -> None:
    quick = dataclasses.replace(agent.app.settings, payment_call_timeout=0.05)
    with patch.object(agent.app, "settings", quick):
        agent.call_provider(dataclasses.replace(CALL, payment_method="pm_card_timeout"))
        await settle()
    [answered] = answers(sent)
    assert (answered.ok, answered.fault) == (False, "timeout")
    assert provider.ledger("o-1")["charges"][0]["status"] == "processing"


async def test_a_try_is_made_once_however_often_asked(sent: AsyncMock,
                                                      provider: SimulatedProvider) -> None:
    for _ in range(3):
        agent.call_provider(CALL)  # asked again while under way
    await settle()
    agent.call_provider(CALL)  # asked again before its outcome was applied
    await settle()
    assert len(answers(sent)) == 1
    assert provider.ledger("o-1")["charges"][0]["attempts"] == 1
    agent.call_provider(dataclasses.replace(CALL, attempt=1))  # the next try is made
    await settle()
    assert len(answers(sent)) == 2


async def test_a_try_waits_for_its_time(sent: AsyncMock, provider: SimulatedProvider,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float, *args: Any) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    agent.call_provider(dataclasses.replace(CALL, not_before=time.time() + 60))
    await settle()
    assert len(waits) == 1 and 59 < waits[0] <= 60
    assert len(answers(sent)) == 1


def test_the_tries_sent_are_forgotten_oldest_first_past_the_limit(sent: AsyncMock) -> None:
    with patch.object(agent, "SENT_TRIES_LIMIT", 3):
        for n in range(5):
            agent.note_sent_try("charge", f"o-{n}", 0)
        agent.note_sent_try("charge", "o-2", 1)  # noted again: the newest now
        agent.note_sent_try("refund", "o-9", 0)
    assert list(agent._sent_tries) == [("charge", "o-4"), ("charge", "o-2"), ("refund", "o-9")]
    assert agent._sent_tries[("charge", "o-2")] == 1


async def test_a_call_is_in_flight_only_while_it_runs(sent: AsyncMock,
                                                      provider: SimulatedProvider) -> None:
    for n in range(20):
        agent.call_provider(dataclasses.replace(CALL, order_id=f"o-{n}"))
    assert len(agent._in_flight) == 20
    await settle()
    assert agent._in_flight == {} and len(agent._sent_tries) == 20
