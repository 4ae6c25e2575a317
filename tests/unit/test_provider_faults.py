"""models/provider.py: the simulated provider's ledger, and the faults its methods stand for."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.provider import (
    FLAKY_TRIES,
    PAYMENT_METHODS,
    Charge,
    ProviderUnavailable,
    Refund,
    SimulatedProvider,
)


def quick() -> SimulatedProvider:
    """A provider whose slow cards answer at once and whose hanging card hangs a moment."""
    return SimulatedProvider(slow_seconds=0, hang_seconds=0.01)


async def charge_until_answered(provider: SimulatedProvider, key: str, method: str,
                                tries: int = 10) -> tuple[Charge, int]:
    """Return the provider's answer and the number of faults before it."""
    for faults in range(tries):
        try:
            return await provider.charge(key, 2500, method, order_id=key), faults
        except ProviderUnavailable:
            continue
    raise AssertionError(f"{method} never answered in {tries} tries")


# -- the ledger ------------------------------------------------------------------------------


async def test_the_ledger_shows_each_charge_and_refund_of_an_order_with_its_key() -> None:
    provider = quick()
    charge = await provider.charge("o-1", 2500, "pm_card_ok", order_id="o-1")
    refund = await provider.refund("refund:o-1", charge.charge_id, 2500, order_id="o-1")
    await provider.charge("o-2", 100, "pm_card_declined", order_id="o-2")
    assert provider.ledger("o-1") == {
        "order_id": "o-1",
        "charges": [{"order_id": "o-1", "idempotency_key": "o-1", "amount_cents": 2500,
                     "payment_method": "pm_card_ok", "status": "succeeded",
                     "id": charge.charge_id, "reason": "", "attempts": 1}],
        "refunds": [{"order_id": "o-1", "idempotency_key": "refund:o-1", "amount_cents": 2500,
                     "charge_id": charge.charge_id, "status": "succeeded",
                     "id": refund.refund_id, "reason": "", "attempts": 1}],
    }
    declined = provider.ledger("o-2")["charges"]
    assert [(c["status"], c["reason"], c["id"]) for c in declined] == [
        ("failed", "card_declined", "")]
    assert provider.ledger("o-3") == {"order_id": "o-3", "charges": [], "refunds": []}


async def test_the_ledger_is_a_copy() -> None:
    provider = quick()
    await provider.charge("o-1", 2500, "pm_card_ok")
    provider.ledger("o-1")["charges"][0]["status"] = "failed"
    assert provider.ledger("o-1")["charges"][0]["status"] == "succeeded"


@given(method=st.sampled_from(PAYMENT_METHODS[:3]), calls=st.integers(1, 6),
       amounts=st.lists(st.integers(0, 10**6), min_size=6, max_size=6))
async def test_a_key_called_again_answers_the_same_and_makes_no_second_charge(
    method: str, calls: int, amounts: list[int],
) -> None:
    provider = quick()
    answers = [await provider.charge("o-1", amounts[n], method, order_id="o-1")
               for n in range(calls)]
    assert all(answer == answers[0] for answer in answers)
    charges = provider.ledger("o-1")["charges"]
    assert len(charges) == 1
    assert (charges[0]["attempts"], charges[0]["amount_cents"]) == (calls, amounts[0])


async def test_the_ledger_keeps_the_newest_keys_up_to_its_capacity() -> None:
    provider = SimulatedProvider(capacity=2)
    for order_id in ("o-1", "o-2", "o-3"):
        await provider.charge(order_id, 100, "pm_card_ok")
    assert [len(provider.ledger(o)["charges"]) for o in ("o-1", "o-2", "o-3")] == [0, 1, 1]


async def test_a_refund_called_again_refunds_once() -> None:
    provider = quick()
    charge = await provider.charge("o-1", 2500, "pm_card_ok")
    first = await provider.refund("refund:o-1", charge.charge_id, 2500)
    assert await provider.refund("refund:o-1", charge.charge_id, 2500) == first
    refunds = provider.ledger("o-1")["refunds"]
    assert len(refunds) == 1 and refunds[0]["attempts"] == 2


# -- faults, a function of the method and the attempt ---------------------------------------


async def test_a_flaky_charge_raises_for_its_first_tries_then_charges_once() -> None:
    provider = quick()
    charge, faults = await charge_until_answered(provider, "o-1", "pm_card_flaky")
    assert charge.ok and faults == FLAKY_TRIES
    assert charge == Charge(True, charge_id=(await quick().charge("o-1", 1, "pm_card_ok"))
                            .charge_id)
    [entry] = provider.ledger("o-1")["charges"]
    assert (entry["status"], entry["attempts"]) == ("succeeded", FLAKY_TRIES + 1)


async def test_a_flaky_charge_is_flaky_for_every_key_alike() -> None:
    for key in ("a", "b"):
        _, faults = await charge_until_answered(quick(), key, "pm_card_flaky")
        assert faults == FLAKY_TRIES


async def test_a_hanging_charge_outlives_a_timeout_and_charges_nothing() -> None:
    provider = SimulatedProvider(hang_seconds=3600)
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(provider.charge("o-1", 2500, "pm_card_timeout"), 0.01)
    [entry] = provider.ledger("o-1")["charges"]
    assert (entry["status"], entry["id"], entry["attempts"]) == ("processing", "", 2)


async def test_a_hanging_charge_that_is_waited_for_still_fails_to_answer() -> None:
    with pytest.raises(ProviderUnavailable):
        await quick().charge("o-1", 2500, "pm_card_timeout")


async def test_a_late_decline_waits_then_declines_for_good(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    provider = SimulatedProvider(slow_seconds=0.25)
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    declined = await provider.charge("o-1", 2500, "pm_card_declined_late")
    assert declined == Charge(False, reason="card_declined") and waits == [0.25]
    assert await provider.charge("o-1", 2500, "pm_card_declined_late") == declined
    assert waits == [0.25], "an answered key answers again at once"


@pytest.mark.parametrize(("method", "faults"), [("pm_card_refund_flaky", FLAKY_TRIES),
                                                ("pm_card_ok", 0)])
async def test_a_flaky_refund_raises_for_its_first_tries_then_refunds(method: str,
                                                                      faults: int) -> None:
    provider = quick()
    charge = await provider.charge("o-1", 2500, method)
    assert charge.ok
    for attempt in range(faults):
        with pytest.raises(ProviderUnavailable, match=f"attempt {attempt + 1}"):
            await provider.refund("refund:o-1", charge.charge_id, 2500)
    refund = await provider.refund("refund:o-1", charge.charge_id, 2500)
    assert refund.ok and refund.refund_id.startswith("re_")
    [entry] = provider.ledger("o-1")["refunds"]
    assert (entry["status"], entry["attempts"]) == ("succeeded", faults + 1)


async def test_a_failing_refund_always_raises_and_refunds_nothing() -> None:
    provider = quick()
    charge = await provider.charge("o-1", 2500, "pm_card_refund_fails")
    for _ in range(8):
        with pytest.raises(ProviderUnavailable):
            await provider.refund("refund:o-1", charge.charge_id, 2500)
    [entry] = provider.ledger("o-1")["refunds"]
    assert (entry["status"], entry["id"], entry["attempts"]) == ("processing", "", 8)


async def test_a_refund_of_a_charge_made_elsewhere_is_made_as_any_other() -> None:
    charge = await quick().charge("o-1", 2500, "pm_card_refund_fails")
    assert (await quick().refund("refund:o-1", charge.charge_id, 2500)).ok


async def test_a_refund_of_an_unknown_charge_is_refused_in_the_ledger() -> None:
    provider = quick()
    assert await provider.refund("refund:o-9", "nope", 1) == Refund(False, reason="unknown_charge")
    entries: list[dict[str, Any]] = provider.ledger("o-9")["refunds"]
    assert [(e["status"], e["reason"]) for e in entries] == [("failed", "unknown_charge")]


async def test_every_method_ends_in_an_answer_or_a_fault() -> None:
    for method in PAYMENT_METHODS:
        try:
            charge, _ = await charge_until_answered(quick(), f"o-{method}", method, tries=3)
        except AssertionError:
            assert method == "pm_card_timeout"
            continue
        assert charge.ok == (method not in ("pm_card_declined", "pm_card_insufficient_funds",
                                            "pm_card_declined_late")), method
