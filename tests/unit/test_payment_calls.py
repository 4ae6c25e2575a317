"""models/payments.py: a charge or refund marks the row pending; the answer settles it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from models.payments import (
    Charge,
    PaymentFailed,
    PaymentRequested,
    PaymentSucceeded,
    ProviderAnswered,
    Refund,
    Refunded,
    RefundRequested,
    answer_of,
    finish_call,
    pending_call,
    start_call,
)

OID = "o-1"


def charge_request(amount: int = 2500) -> PaymentRequested:
    return PaymentRequested.new(order_id=OID, amount_cents=amount, payment_method="pm_card_ok")


def charged_row() -> dict[str, Any]:
    row, _, call = start_call(None, charge_request())
    assert call is not None
    settled = finish_call(row, answer_of(call, Charge(True, charge_id="ch_1"))).row
    assert settled is not None
    return settled


def test_a_new_charge_marks_the_row_charging_and_asks_for_the_call() -> None:
    row, effects, call = start_call(None, charge_request())
    assert row is not None and row["status"] == "charging" and effects == []
    assert call is not None
    assert (call.call, call.order_id, call.amount_cents, call.payment_method) == (
        "charge", OID, 2500, "pm_card_ok")
    assert pending_call(row) == call


def test_the_answer_settles_the_charge_once() -> None:
    row, _, call = start_call(None, charge_request())
    assert call is not None
    answered = answer_of(call, Charge(True, charge_id="ch_1"))
    settled, effects, retry, gave_up = finish_call(row, answered)
    assert settled is not None and retry is None and gave_up == ""
    assert (settled["status"], settled["charge_id"], settled["amount_cents"]) == (
        "succeeded", "ch_1", 2500)
    assert [type(e.event) for e in effects] == [PaymentSucceeded]
    assert pending_call(settled) is None
    assert finish_call(settled, answered) == (settled, [], None, ""), (
        "a second answer changes nothing")


def test_a_refused_charge_fails_the_payment() -> None:
    row, _, call = start_call(None, charge_request())
    assert call is not None
    settled, effects, retry, _ = finish_call(row, answer_of(call, Charge(False,
                                                                     reason="card_declined")))
    assert retry is None, "a decline is final"
    assert settled is not None and settled["status"] == "failed"
    failed = effects[0].event
    assert isinstance(failed, PaymentFailed) and failed.reason == "card_declined"


def test_asking_again_while_charging_calls_again_and_settled_answers_again() -> None:
    row, _, _ = start_call(None, charge_request())
    again, effects, call = start_call(row, charge_request())
    assert again == row and effects == [] and call is not None and call.call == "charge"
    settled = charged_row()
    same, effects, call = start_call(settled, charge_request())
    assert same == settled and call is None
    assert [type(e.event) for e in effects] == [PaymentSucceeded]


def test_a_refund_marks_the_row_refunding_then_refunded() -> None:
    row, effects, call = start_call(charged_row(), RefundRequested.new(order_id=OID))
    assert row is not None and row["status"] == "refunding" and effects == []
    assert call is not None and (call.call, call.charge_id) == ("refund", "ch_1")
    done, effects, _, _ = finish_call(row, answer_of(call, Refund(True, refund_id="re_1")))
    assert done is not None
    assert (done["status"], done["refunded_cents"], done["refund_id"]) == (
        "refunded", 2500, "re_1")
    assert [type(e.event) for e in effects] == [Refunded]
    _, effects, call = start_call(done, RefundRequested.new(order_id=OID))
    assert call is None and [type(e.event) for e in effects] == [Refunded]


def test_a_refused_refund_is_kept_visible_and_given_up_not_a_silent_loss() -> None:
    row, _, call = start_call(charged_row(), RefundRequested.new(order_id=OID))
    assert call is not None
    failed, effects, retry, gave_up = finish_call(
        row, answer_of(call, Refund(False, reason="unknown_charge")))
    assert failed is not None and failed["status"] == "refund_failed"
    assert failed["last_error"] == "unknown_charge" and failed["refunded_cents"] == 0
    assert (effects, retry) == ([], None), "a refusal is an answer: final, not retried"
    assert gave_up == "refund of order o-1 refused by the provider: unknown_charge"
    assert pending_call(failed) is None
    assert start_call(failed, RefundRequested.new(order_id=OID)) == (failed, [], None)
    _, effects, call = start_call(failed, charge_request())
    assert call is None and [type(e.event) for e in effects] == [PaymentSucceeded]


def test_nothing_to_refund_without_a_charge() -> None:
    assert start_call(None, RefundRequested.new(order_id=OID)) == (None, [], None)
    row, _, _ = start_call(None, charge_request())
    assert start_call(row, RefundRequested.new(order_id=OID))[2] is None


Step = tuple[str, bool]


@given(st.lists(st.tuples(st.sampled_from(("charge", "refund", "answer")), st.booleans()),
                max_size=30))
def test_the_row_is_charged_and_refunded_at_most_once(steps: list[Step]) -> None:
    row: dict[str, Any] | None = None
    calls: list[ProviderAnswered] = []
    outcomes: list[str] = []
    for kind, ok in steps:
        if kind in ("charge", "refund"):
            request = charge_request() if kind == "charge" else RefundRequested.new(order_id=OID)
            row, effects, call = start_call(row, request)
            if call is not None:
                answer = (Charge(ok, charge_id="ch_1", reason="" if ok else "card_declined")
                          if call.call == "charge" else Refund(True, refund_id="re_1"))
                calls.append(answer_of(call, answer))
        elif calls:
            row, effects, _, _ = finish_call(row, calls.pop(0))
        else:
            continue
        outcomes += [e.event.type for e in effects]
        if row is not None:
            assert row["status"] in ("charging", "succeeded", "failed", "refunding", "refunded")
            assert row["refunded_cents"] in (0, row["amount_cents"])
    assert outcomes.count("refunded") == 0 or (row is not None and row["status"] == "refunded")
