"""models/payments.py: a faulted call is tried again with backoff, a bounded number of times.

A fault (the provider raised, or did not answer in time) schedules the next try in the row;
after the last try a charge fails as ``provider_unavailable`` and a refund is left
``refund_failed``, both given up (dead-lettered by the agent). An answer is never retried.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.payments import (
    CallFault,
    Charge,
    PaymentFailed,
    PaymentRequested,
    ProviderCall,
    Refund,
    Refunded,
    RefundRequested,
    RetryPolicy,
    answer_of,
    backoff,
    finish_call,
    pending_call,
    start_call,
)

OID = "o-1"
POLICY = RetryPolicy(tries=4, base_backoff=0.5)
NOW = 1_000_000.0


def charging() -> tuple[dict[str, Any], ProviderCall]:
    row, _, call = start_call(None, PaymentRequested.new(order_id=OID, amount_cents=2500,
                                                         payment_method="pm_card_flaky"))
    assert row is not None and call is not None
    return row, call


def refunding() -> tuple[dict[str, Any], ProviderCall]:
    row, call = charging()
    charged = finish_call(row, answer_of(call, Charge(True, charge_id="ch_1"))).row
    refund_row, _, refund = start_call(charged, RefundRequested.new(order_id=OID))
    assert refund_row is not None and refund is not None
    return refund_row, refund


def fault(call: ProviderCall, kind: str = "error") -> CallFault:
    return CallFault(kind, "ProviderUnavailable: down" if kind == "error" else "no answer")


def test_the_backoff_doubles_from_the_base() -> None:
    assert [backoff(POLICY, n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff(RetryPolicy(base_backoff=0.1), 0) == 0.1


def test_a_faulted_charge_is_tried_again_after_the_backoff() -> None:
    row, call = charging()
    assert (row["attempts"], row["next_try_at"], row["last_error"]) == (0, 0.0, "")
    waiting, effects, retry, gave_up = finish_call(row, answer_of(call, fault(call, "timeout")),
                                                   NOW, POLICY)
    assert waiting is not None and effects == [] and gave_up == ""
    assert (waiting["status"], waiting["attempts"], waiting["next_try_at"]) == (
        "charging", 1, NOW + 0.5)
    assert waiting["last_error"] == "timeout: no answer"
    assert retry == ProviderCall("charge", OID, 2500, payment_method="pm_card_flaky",
                                 attempt=1, not_before=NOW + 0.5)
    assert pending_call(waiting) == retry, "a worker taking the row over tries at the same time"


def test_a_charge_answered_after_faults_settles_and_keeps_its_tries() -> None:
    row, call = charging()
    for _ in range(2):
        row, _, call_again, _ = finish_call(row, answer_of(call, fault(call)), NOW, POLICY)
        assert row is not None and call_again is not None
        call = call_again
    settled, effects, retry, gave_up = finish_call(
        row, answer_of(call, Charge(True, charge_id="ch_1")), NOW, POLICY)
    assert settled is not None and retry is None and gave_up == ""
    assert (settled["status"], settled["charge_id"], settled["attempts"]) == (
        "succeeded", "ch_1", 2)
    assert [e.event.type for e in effects] == ["payment_succeeded"]


def test_a_charge_that_runs_out_of_tries_fails_as_provider_unavailable() -> None:
    row, call = charging()
    outcomes = []
    for _ in range(POLICY.tries):
        row, effects, retry, gave_up = finish_call(row, answer_of(call, fault(call)), NOW, POLICY)
        outcomes.append(gave_up)
        if retry is not None:
            call = retry
    assert row is not None
    assert (row["status"], row["reason"], row["attempts"]) == (
        "failed", "provider_unavailable", POLICY.tries)
    assert outcomes[:-1] == [""] * (POLICY.tries - 1)
    assert outcomes[-1] == ("charge of order o-1 gave up after 4 tries: "
                            "error: ProviderUnavailable: down")
    [failed] = [e.event for e in effects]
    assert isinstance(failed, PaymentFailed) and failed.reason == "provider_unavailable"
    assert pending_call(row) is None
    assert start_call(row, PaymentRequested.new(order_id=OID, amount_cents=2500,
                                                payment_method="pm_card_flaky"))[2] is None


def test_a_refund_that_runs_out_of_tries_is_left_refund_failed() -> None:
    row, call = refunding()
    for _ in range(POLICY.tries):
        row, effects, retry, gave_up = finish_call(row, answer_of(call, fault(call)), NOW, POLICY)
        assert effects == []
        call = retry or call
    assert row is not None
    assert (row["status"], row["refunded_cents"], row["attempts"]) == ("refund_failed", 0, 4)
    assert gave_up.startswith("refund of order o-1 gave up after 4 tries")
    assert pending_call(row) is None
    assert start_call(row, RefundRequested.new(order_id=OID)) == (row, [], None), (
        "a redelivered request does not start the tries over")


def test_a_refund_answered_after_faults_is_refunded() -> None:
    row, call = refunding()
    row, _, retry, _ = finish_call(row, answer_of(call, fault(call)), NOW, POLICY)
    assert retry is not None and retry.charge_id == "ch_1"
    done, effects, again, _ = finish_call(row, answer_of(retry, Refund(True, refund_id="re_1")),
                                          NOW, POLICY)
    assert done is not None and done["status"] == "refunded" and again is None
    assert [type(e.event) for e in effects] == [Refunded]


def test_a_fault_of_another_try_or_after_the_answer_changes_nothing() -> None:
    row, call = charging()
    faulted = answer_of(call, fault(call))
    waiting = finish_call(row, faulted, NOW, POLICY).row
    assert waiting is not None
    assert finish_call(waiting, faulted, NOW + 5, POLICY) == (waiting, [], None, ""), (
        "the same fault twice counts once")
    settled = finish_call(waiting, answer_of(call, Charge(True, charge_id="ch_1"))).row
    assert finish_call(settled, faulted, NOW, POLICY) == (settled, [], None, "")
    assert finish_call(None, faulted, NOW, POLICY) == (None, [], None, "")


def test_a_refund_fault_does_not_touch_a_charging_row() -> None:
    row, _ = charging()
    _, refund = refunding()
    assert finish_call(row, answer_of(refund, fault(refund)), NOW, POLICY) == (
        row, [], None, "")


def test_a_request_for_a_waiting_row_asks_for_the_scheduled_try() -> None:
    row, call = charging()
    waiting = finish_call(row, answer_of(call, fault(call)), NOW, POLICY).row
    again, effects, call_again = start_call(waiting, PaymentRequested.new(
        order_id=OID, amount_cents=2500, payment_method="pm_card_flaky"))
    assert again == waiting and effects == []
    assert call_again is not None and (call_again.attempt, call_again.not_before) == (1, NOW + 0.5)


@pytest.mark.parametrize("answer", [Charge(False, reason="card_declined"),
                                    Charge(True, charge_id="ch_1")])
def test_an_answer_is_final_and_never_tried_again(answer: Charge) -> None:
    row, call = charging()
    settled, _, retry, gave_up = finish_call(row, answer_of(call, answer), NOW, POLICY)
    assert retry is None and gave_up == "" and pending_call(settled or {}) is None


# -- properties -------------------------------------------------------------------------------

Step = tuple[str, int, float]

steps = st.lists(st.tuples(st.sampled_from(("fault", "timeout", "stale", "decline", "charge")),
                           st.integers(0, 3), st.floats(0, 100)), max_size=40)


@given(tries=st.integers(1, 8), base=st.floats(0.01, 10), steps=steps)
def test_tries_are_bounded_delays_grow_and_answers_end_the_charge(
    tries: int, base: float, steps: list[Step],
) -> None:
    policy = RetryPolicy(tries=tries, base_backoff=base)
    row: dict[str, Any] | None
    row, call = charging()
    now, waits, gave_up_count, answered = NOW, [], 0, False
    for kind, stale_by, later in steps:
        now += later
        if kind in ("fault", "timeout", "stale"):
            attempt = call.attempt - stale_by if kind == "stale" else call.attempt
            stale = ProviderCall(call.call, OID, call.amount_cents, attempt=attempt)
            before = row
            row, effects, retry, gave_up = finish_call(
                row, answer_of(stale, CallFault("timeout" if kind == "timeout" else "error")),
                now, policy)
            if kind == "stale" and stale_by:
                assert (row, retry, gave_up) == (before, None, ""), "a stale fault is ignored"
                continue
            if retry is not None:
                assert retry.attempt == call.attempt + 1 and retry.not_before > now
                waits.append(retry.not_before - now)
                call = retry
            gave_up_count += bool(gave_up)
        else:
            answer = Charge(kind == "charge", charge_id="ch_1",
                            reason="" if kind == "charge" else "card_declined")
            row, effects, retry, gave_up = finish_call(row, answer_of(call, answer), now, policy)
            assert retry is None and gave_up == ""
            answered = answered or bool(effects)
        assert row is not None
        assert row["attempts"] <= tries, "tries are bounded"
        if row["status"] != "charging":
            assert pending_call(row) is None
    assert waits == sorted(waits) and len(set(waits)) == len(waits), "delays grow"
    assert len(waits) <= tries - 1
    assert gave_up_count <= 1 and not (gave_up_count and answered), "one ending only"
