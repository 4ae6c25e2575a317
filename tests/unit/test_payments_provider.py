"""models/payments.py: the simulated provider, the payment row's rule, and the events."""

from __future__ import annotations

import time
from datetime import UTC, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import models.provider as provider_module
from models.base import Event, decode_event, utcnow
from models.payments import (
    PAYMENT_EVENTS,
    PAYMENT_METHODS,
    Charge,
    PaymentFailed,
    PaymentProvider,
    PaymentRequested,
    PaymentSucceeded,
    ProviderUnavailable,
    Refund,
    Refunded,
    RefundRequested,
    SimulatedProvider,
    decide_payment,
    needs_provider,
)

# -- the simulated provider -----------------------------------------------------------------


async def test_an_ok_card_is_charged_with_an_id_from_the_key() -> None:
    provider: PaymentProvider = SimulatedProvider()
    charge = await provider.charge("o-1", 2200, "pm_card_ok")
    assert charge.ok and charge.reason == ""
    assert charge.charge_id.startswith("ch_") and len(charge.charge_id) == 23
    assert int(charge.charge_id[3:], 16) >= 0  # hex


@pytest.mark.parametrize(("method", "reason"), [
    ("pm_card_declined", "card_declined"),
    ("pm_card_insufficient_funds", "insufficient_funds"),
    ("pm_card_stolen", "unknown_payment_method"),
    ("", "unknown_payment_method"),
    ("4242424242424242", "unknown_payment_method"),  # never a card number
])
async def test_a_refused_card_says_why(method: str, reason: str) -> None:
    assert await SimulatedProvider().charge("o-1", 2200, method) == Charge(False, reason=reason)


async def test_a_negative_amount_is_refused_and_nothing_is_free_of_charge() -> None:
    provider = SimulatedProvider()
    assert await provider.charge("o-1", -1, "pm_card_ok") == Charge(False, reason="invalid_amount")
    assert (await provider.charge("o-2", 0, "pm_card_ok")).ok


@given(key=st.text(max_size=40), other=st.text(max_size=40),
       amount=st.integers(0, 10**9), again=st.integers(0, 10**9))
async def test_the_same_key_gives_the_same_charge(key: str, other: str, amount: int,
                                                  again: int) -> None:
    provider = SimulatedProvider()
    first = await provider.charge(key, amount, "pm_card_ok")
    assert await provider.charge(key, again, "pm_card_ok") == first
    assert await SimulatedProvider().charge(key, amount, "pm_card_ok") == first
    if other != key:
        assert (await provider.charge(other, amount, "pm_card_ok")).charge_id != first.charge_id


async def test_a_slow_card_waits_then_succeeds(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = SimulatedProvider()
    assert provider.slow_seconds == 0.5
    monkeypatch.setattr(provider, "slow_seconds", 0.01)
    waits: list[float] = []
    real_sleep = provider_module.asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(seconds)

    monkeypatch.setattr(provider_module.asyncio, "sleep", sleep)
    started = time.monotonic()
    charge = await provider.charge("o-slow", 100, "pm_card_slow")
    assert time.monotonic() - started >= 0.01
    assert waits == [0.01]
    assert charge == await SimulatedProvider(slow_seconds=0).charge("o-slow", 100, "pm_card_ok")


#: The methods whose charge waits (all others answer or raise at once).
WAITING = ("pm_card_slow", "pm_card_declined_late", "pm_card_timeout")


async def test_only_the_waiting_cards_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"waited {seconds}s")

    monkeypatch.setattr(provider_module.asyncio, "sleep", no_sleep)
    for method in PAYMENT_METHODS:
        if method not in WAITING:
            try:
                await SimulatedProvider().charge("o-1", 100, method)
            except ProviderUnavailable:
                assert method == "pm_card_flaky"


async def test_every_known_method_gets_a_known_answer() -> None:
    provider = SimulatedProvider(slow_seconds=0)
    answered = PAYMENT_METHODS[:5]  # the others answer after faults (test_provider_faults.py)
    reasons = {m: (await provider.charge(f"o-{m}", 100, m)).reason for m in answered}
    assert "unknown_payment_method" not in reasons.values()
    assert reasons == {"pm_card_ok": "", "pm_card_declined": "card_declined",
                       "pm_card_insufficient_funds": "insufficient_funds", "pm_card_slow": "",
                       "pm_card_declined_late": "card_declined"}


async def test_a_charge_is_refunded_with_an_id_from_the_key() -> None:
    provider = SimulatedProvider()
    charge = await provider.charge("o-1", 2200, "pm_card_ok")
    refund = await provider.refund("refund:o-1", charge.charge_id, 2200)
    assert refund.ok and refund.refund_id.startswith("re_")
    assert await provider.refund("refund:o-1", charge.charge_id, 2200) == refund
    assert (await provider.refund("refund:o-2", charge.charge_id, 2200)).refund_id != (
        refund.refund_id)


@pytest.mark.parametrize("charge_id", ["", "re_123", "unknown", "CH_123"])
async def test_a_refund_of_an_unknown_charge_fails(charge_id: str) -> None:
    refund = await SimulatedProvider().refund("refund:o-1", charge_id, 2200)
    assert refund == Refund(False, reason="unknown_charge")


# -- the payment step's rule ----------------------------------------------------------------


def request(amount: int = 2200, method: str = "pm_card_ok") -> PaymentRequested:
    return PaymentRequested.new(order_id="o-1", amount_cents=amount, payment_method=method)


def refund_request() -> RefundRequested:
    return RefundRequested.new(order_id="o-1")


def charged_row() -> dict[str, Any]:
    row, _ = decide_payment(None, request(), Charge(True, charge_id="ch_1"))
    assert row is not None
    return row


def test_a_first_request_goes_to_the_provider_and_its_answer_is_kept() -> None:
    assert needs_provider(None, request())
    row, effects = decide_payment(None, request(), Charge(True, charge_id="ch_1"))
    assert row == {"order_id": "o-1", "amount_cents": 2200, "status": "succeeded",
                   "charge_id": "ch_1", "reason": "", "refunded_cents": 0, "refund_id": ""}
    assert [(e.topic, e.key) for e in effects] == [("payments", "o-1")]
    answer = effects[0].event
    assert isinstance(answer, PaymentSucceeded)
    assert (answer.amount_cents, answer.charge_id, answer.correlation_id) == (2200, "ch_1", "o-1")


def test_a_refusal_is_kept_and_announced() -> None:
    row, effects = decide_payment(None, request(method="pm_card_declined"),
                                  Charge(False, reason="card_declined"))
    assert row is not None and row["status"] == "failed"
    answer = effects[0].event
    assert isinstance(answer, PaymentFailed) and answer.reason == "card_declined"


@pytest.mark.parametrize("outcome", [Charge(True, charge_id="ch_1"),
                                     Charge(False, reason="card_declined")])
def test_a_repeated_request_is_answered_from_the_row_without_the_provider(
    outcome: Charge
) -> None:
    row, first = decide_payment(None, request(), outcome)
    assert not needs_provider(row, request())
    again_row, again = decide_payment(row, request(amount=9999), None)
    assert again_row == row
    assert [type(e.event) for e in again] == [type(e.event) for e in first]
    assert again[0].event.asdict().keys() == first[0].event.asdict().keys()


def test_a_new_request_without_the_providers_answer_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs the provider's Charge"):
        decide_payment(None, request(), None)


def test_a_refund_goes_to_the_provider_once() -> None:
    row = charged_row()
    assert needs_provider(row, refund_request())
    refunded, effects = decide_payment(row, refund_request(), Refund(True, refund_id="re_1"))
    assert refunded is not None
    assert (refunded["status"], refunded["refunded_cents"], refunded["refund_id"]) == (
        "refunded", 2200, "re_1")
    answer = effects[0].event
    assert isinstance(answer, Refunded) and (answer.amount_cents, answer.refund_id) == (
        2200, "re_1")
    assert not needs_provider(refunded, refund_request())
    assert not needs_provider(refunded, request())


def test_a_charge_asked_again_after_its_refund_still_answers_succeeded() -> None:
    row, _ = decide_payment(charged_row(), refund_request(), Refund(True, refund_id="re_1"))
    _, effects = decide_payment(row, request(), None)
    assert isinstance(effects[0].event, PaymentSucceeded)


def test_a_repeated_refund_request_is_answered_again() -> None:
    row, _ = decide_payment(charged_row(), refund_request(), Refund(True, refund_id="re_1"))
    again_row, again = decide_payment(row, refund_request(), None)
    assert again_row == row
    assert [type(e.event) for e in again] == [Refunded]


@pytest.mark.parametrize("row", [None, "failed"])
def test_nothing_charged_means_nothing_to_refund(row: str | None) -> None:
    current = None
    if row == "failed":
        current, _ = decide_payment(None, request(), Charge(False, reason="card_declined"))
    assert not needs_provider(current, refund_request())
    assert decide_payment(current, refund_request(), None) == (current, [])


def test_a_refused_refund_is_an_error_to_retry() -> None:
    with pytest.raises(RuntimeError, match="refund of order o-1 failed: unknown_charge"):
        decide_payment(charged_row(), refund_request(), Refund(False, reason="unknown_charge"))


def test_outcomes_on_the_topic_are_not_requests() -> None:
    outcome = PaymentSucceeded.new(order_id="o-1", amount_cents=1, charge_id="ch_1")
    assert not needs_provider(None, outcome)
    assert decide_payment(charged_row(), outcome, None) == (charged_row(), [])


# -- events ---------------------------------------------------------------------------------


def test_a_new_event_gets_a_fresh_id_the_time_and_its_type() -> None:
    before = utcnow()
    first = request()
    second = request()
    assert first.type == "payment_requested"
    assert first.event_id != second.event_id and len(first.event_id) == 32
    assert first.occurred_at.tzinfo is not None
    assert first.occurred_at.utcoffset() == timedelta(0)
    assert before <= first.occurred_at <= utcnow()
    assert first.correlation_id == ""
    assert PaymentRequested.new(order_id="o", amount_cents=1, payment_method="pm_card_ok",
                                correlation_id="o").correlation_id == "o"
    assert first.occurred_at.astimezone(UTC) == first.occurred_at


@pytest.mark.parametrize("event", [
    request(), PaymentSucceeded.new(order_id="o-1", amount_cents=0, charge_id="ch_1"),
    PaymentFailed.new(order_id="o-1", reason="card_declined"), refund_request(),
    Refunded.new(order_id="o-1", amount_cents=2200, refund_id="re_1"),
], ids=lambda e: e.type)
def test_payment_events_decode_from_the_wire(event: Event) -> None:
    back: Event = decode_event(PAYMENT_EVENTS, event.dumps())
    assert type(back) is type(event)
    assert back.asdict() == event.asdict()
