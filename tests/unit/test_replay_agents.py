"""The replay guard on the agents' own step functions: rows remember every event they absorbed.

``agents.orders.saga_step`` and ``agents.inventory.change_stock`` are what the saga and the
inventory agents run for each event (with the worker's table; here a dict): the saga's step
moves an order and its payment, kept in the order's row. Their rules build
rows fresh, so the guard must carry the row's history across each write: a redelivery of any
event the row absorbed, on any of its topics, is recognised however many events came after.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.inventory import change_stock, change_stocks
from agents.orders import SagaStep, saga_step, work_pending
from models.base import Event, decode_event
from models.inventory import (
    INVENTORY_EVENTS,
    CommitStock,
    ReleaseStock,
    ReserveStock,
    Restock,
    Stock,
    StockReserved,
    archive_entries,
)
from models.orders import ORDER_EVENTS, CancelRequested, OrderLine, OrderPlaced
from models.payments import (
    PAYMENT_EVENTS,
    Charge,
    PaymentRequested,
    PaymentSucceeded,
    Refund,
    RetryPolicy,
    answer_of,
)
from tables.inventory import archive_key
from tables.payments import payment_of
from tables.replay import Position, Row, already_applied
from tests.unit.test_inventory_rules import sku_logs

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEEP = 900


class Log:
    """A topic's log: each append takes the next offset (a duplicate append, a new one)."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.entries: list[Event] = []

    def append(self, event: Event) -> Position:
        self.entries.append(event)
        return Position(self.topic, len(self.entries) - 1, event.event_id)


def placed(order_id: str = "o1", quantity: int = 2) -> OrderPlaced:
    return OrderPlaced.new(order_id=order_id, user_id="u1",
                           items=[OrderLine(sku="sku-a", quantity=quantity, unit_price_cents=500)],
                           subtotal_cents=500 * quantity, discount_cents=0,
                           total_cents=500 * quantity, payment_method="pm_card_ok")


def payment(row: Row) -> dict[str, Any]:
    """Return the payment an order's row keeps."""
    kept = payment_of(row)
    assert kept is not None, row
    return kept


def sent(sends: list[tuple[str, str, str]], topic: str) -> list[Event]:
    """Return the events of ``sends`` to ``topic``, decoded as the consumers decode them."""
    types: Any = {**INVENTORY_EVENTS, **ORDER_EVENTS, **PAYMENT_EVENTS}
    return [decode_event(types, value) for t, _, value in sends if t == topic]


def test_an_order_row_recognises_every_event_it_absorbed_across_its_topics() -> None:
    orders_log, payments_log = Log("orders"), Log("payments")
    table: dict[str, Row] = {}
    order = placed()
    applied: list[tuple[Position, Event]] = []

    def deliver(log: Log, event: Event) -> list[tuple[str, str, str]]:
        position = log.append(event)
        applied.append((position, event))
        return saga_step(table, event, position, NOW, RetryPolicy()).sends

    first_sends = deliver(orders_log, order)
    assert [e.type for e in sent(first_sends, "inventory")] == ["reserve_stock"]
    deliver(orders_log, StockReserved.new(order_id="o1", sku="sku-a", quantity=2))
    deliver(payments_log, PaymentSucceeded.new(order_id="o1", amount_cents=1000,
                                               charge_id="ch_1"))
    row = table["o1"]
    assert row["status"] == "confirmed"
    for position, _ in applied:
        assert already_applied(row, position), f"the row forgot {position}"

    # A worker that crashed before committing gets OrderPlaced again: it is recognised, the
    # row is unchanged, and its kept sends (the reservation) go out again.
    again = saga_step(table, order, applied[0][0], NOW, RetryPolicy()).sends
    assert table["o1"] == row
    assert again == first_sends, "the first event's sends are kept after later events"


def test_a_sku_sells_an_order_once_whatever_is_redelivered_after_many_others() -> None:
    """The issue's case: o1 reserves 4 and commits, 20 orders reserve, o1's reserve and commit
    are appended again (same ids, new offsets), then o1's release: sold stays 4."""
    log = Log("inventory")
    table: dict[str, Row] = {}

    def deliver(event: Event) -> list[tuple[str, str, str]]:
        return change_stock(table, event, log.append(event), keep=KEEP)

    deliver(Restock.new(sku="sku-a", quantity=100))
    reserve = ReserveStock.new(sku="sku-a", order_id="o1", quantity=4)
    commit = CommitStock.new(sku="sku-a", order_id="o1")
    deliver(reserve)
    deliver(commit)
    for n in range(20):
        deliver(ReserveStock.new(sku="sku-a", order_id=f"other-{n}", quantity=1))
    answers = deliver(reserve)  # the ids ring (16) no longer has it: the ledger answers
    deliver(commit)
    deliver(ReleaseStock.new(sku="sku-a", order_id="o1"))
    row = table["sku-a"]
    assert (row["available"], row["reserved"], row["sold"]) == (76, 20, 4)
    assert [e.type for e in sent(answers, "orders")] == ["stock_reserved"], "the answer stands"


ORDERS = [f"o{n}" for n in range(6)]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_duplicates_appended_at_any_distance_never_change_the_counts(data: st.DataObject) -> None:
    """Orders reserve, commit or release; any command is appended again, however much later."""
    log = Log("inventory")
    table: dict[str, Row] = {}
    commands: list[Event] = []
    sold = 0

    def deliver(event: Event) -> None:
        change_stock(table, event, log.append(event), keep=KEEP)

    deliver(Restock.new(sku="sku-a", quantity=50))
    for order_id in ORDERS:
        reserve = ReserveStock.new(sku="sku-a", order_id=order_id, quantity=2)
        deliver(reserve)
        commands.append(reserve)
        end: Event = data.draw(st.sampled_from([
            CommitStock.new(sku="sku-a", order_id=order_id),
            ReleaseStock.new(sku="sku-a", order_id=order_id)]))
        sold += 2 if isinstance(end, CommitStock) else 0
        deliver(end)
        commands.append(end)
        for _ in range(data.draw(st.integers(0, 25))):  # other orders fill the ids ring
            deliver(Restock.new(sku="sku-a", quantity=1))
        for duplicate in data.draw(st.lists(st.sampled_from(commands), max_size=6)):
            deliver(duplicate)
    row = json.loads(json.dumps(table["sku-a"]))
    assert (row["reserved"], row["sold"]) == (0, sold)
    assert row["initial"] + row["restocked"] == row["available"] + row["sold"]


class Changelog(MutableMapping[str, Row]):
    """A table whose writes are also appended, in order, to a log (the changelog's order)."""

    def __init__(self, rows: dict[str, Row] | None = None) -> None:
        self.rows: dict[str, Row] = dict(rows or {})
        self.writes: list[tuple[str, str | None]] = []

    def __getitem__(self, key: str) -> Row:
        return self.rows[key]

    def __setitem__(self, key: str, row: Row) -> None:
        raw = json.dumps(row)
        self.rows[key] = json.loads(raw)
        self.writes.append((key, raw))

    def __delitem__(self, key: str) -> None:
        del self.rows[key]
        self.writes.append((key, None))

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def restored(writes: list[tuple[str, str | None]]) -> Changelog:
    """Return the table a worker restores from ``writes`` (a changelog's records)."""
    table = Changelog()
    for key, raw in writes:
        if raw is None:
            table.rows.pop(key, None)
        else:
            table.rows[key] = json.loads(raw)
    return table


def counts(table: MutableMapping[str, Row]) -> tuple[int, int, int]:
    row = table["sku-a"]
    return row["available"], row["reserved"], row["sold"]


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_worker_dying_between_any_two_writes_counts_as_one_that_never_died(
    data: st.DataObject,
) -> None:
    """The sku's archive rows and its row are written one after the other, once a batch of
    commands (``change_stocks``, what the agent runs); the changelog may end anywhere between
    them (a kill, a batch that did not leave). The events after the last
    commit are delivered again to what the changelog holds, or to the local store, which has
    every write, and that replay may die anywhere too: the counts and the ledger come out as
    if nothing had died, and every archive row the sku's row lists is there."""
    keep = data.draw(st.sampled_from((45, 200)))
    over = data.draw(st.sampled_from((0, 2)))  # finished orders a row keeps before archiving
    stocked = Restock(type="restock", event_id="first-stock", sku="sku-a", quantity=5,
                      initial=True, occurred_at=datetime.fromtimestamp(1_000, UTC))
    log = [stocked, *data.draw(sku_logs(keep))]  # the sku's clock starts at 1,000 s
    positions = [Position("inventory", n, e.event_id) for n, e in enumerate(log)]
    commands = list(zip(log, positions, strict=True))
    # The agent takes the commands in batches of what arrived meanwhile (any split; a
    # redelivery splits them its own way) and commits after a batch.
    splits = st.sets(st.integers(1, len(log)), max_size=8)
    first_ends, replay_ends = data.draw(splits, label="batches"), data.draw(splits)

    def run(table: MutableMapping[str, Row], start: int = 0, stop: int = len(log),
            ends: set[int] = first_ends) -> None:
        for end in sorted({end for end in ends if start < end < stop} | {stop}):
            change_stocks(table, commands[start:end], keep=keep, archive_over=over)
            start = end

    never_died = Changelog()
    run(never_died)
    local = Changelog()
    run(local)
    committed = data.draw(st.sampled_from(sorted({0, len(log), *first_ends})),
                          label="committed")
    flushed = Changelog()
    run(flushed, 0, committed)  # what the commit's flush delivered
    first_writes = len(flushed.writes)
    for cut in range(first_writes, len(local.writes) + 1):  # the changelog ends at any write
        recovered = restored(local.writes[:cut])
        run(recovered, committed, ends=replay_ends)
        assert_same(recovered, never_died)
    # The same worker restarts on its local store, which is ahead of the changelog, replays
    # there (the guard skips what the store has and writes it again), and dies again.
    cut = data.draw(st.integers(first_writes, len(local.writes)), label="changelog ends")
    again = Changelog(local.rows)
    run(again, committed, ends=replay_ends)
    second = data.draw(st.integers(0, len(again.writes)), label="second death")
    recovered = restored(local.writes[:cut] + again.writes[:second])
    run(recovered, committed)
    assert_same(recovered, never_died)


def renamed(event: Event, sku: str) -> Event:
    """Return ``event`` for another sku (its id too: another sku's command)."""
    return type(event)(**{**event.asdict(), "sku": sku, "event_id": f"{sku}/{event.event_id}"})


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_batch_leaves_the_rows_and_answers_one_command_at_a_time_leaves(
    data: st.DataObject,
) -> None:
    """The inventory agent applies a batch of what arrived meanwhile (``change_stocks``):
    two skus' commands interleaved, redeliveries included, split into batches anywhere,
    leave the same rows and the same answers as one command at a time, in no more writes."""
    keep, over = 200, data.draw(st.sampled_from((0, 2, 64)))
    first = data.draw(sku_logs(keep))
    second = [renamed(e, "sku-b") for e in data.draw(sku_logs(keep))]
    picks = data.draw(st.permutations([0] * len(first) + [1] * len(second)))
    queues = [iter(first), iter(second)]
    log = [Restock(type="restock", event_id=f"{sku}-stock", sku=sku, quantity=5, initial=True,
                   occurred_at=datetime.fromtimestamp(1_000, UTC)) for sku in ("sku-a", "sku-b")]
    log += [next(queues[pick]) for pick in picks]
    commands = [(e, Position("inventory", n, e.event_id)) for n, e in enumerate(log)]
    commands += data.draw(st.lists(st.sampled_from(commands), max_size=5))  # redelivered

    one_at_a_time = Changelog()
    answers = [change_stock(one_at_a_time, e, p, keep=keep, archive_over=over)
               for e, p in commands]
    batched = Changelog()
    ends = data.draw(st.sets(st.integers(1, len(commands)), max_size=6)) | {len(commands)}
    outcomes: list[Any] = []
    start = 0
    for end in sorted(ends):
        outcomes += change_stocks(batched, commands[start:end], keep=keep, archive_over=over)
        start = end
    assert [made(o) for o in outcomes] == [made(a) for a in answers]
    assert same_rows(batched.rows) == same_rows(one_at_a_time.rows)
    assert len(batched.writes) <= len(one_at_a_time.writes)


def made(sends: list[Any]) -> list[Any]:
    """Return ``sends`` without what each new event gets afresh (its id and time)."""
    return [(topic, key, {k: v for k, v in json.loads(value).items()
                          if k not in ("event_id", "occurred_at")})
            for topic, key, value in sends]


def same_rows(rows: dict[str, Row]) -> dict[str, Row]:
    """Return ``rows`` with the sends they keep as :func:`made` gives them."""
    def kept(row: Row) -> Row:
        applied = row.get("_applied") or {}
        if "sent" not in applied:
            return row
        sent = [{**one, "sends": made(one["sends"])} for one in applied["sent"]]
        return {**row, "_applied": {**applied, "sent": sent}}
    return {key: kept(row) for key, row in rows.items()}


def test_a_batch_writes_a_skus_row_once() -> None:
    log = Log("inventory")
    table = Changelog()
    change_stock(table, Restock.new(sku="sku-a", quantity=10), log.append(
        Restock.new(sku="sku-a", quantity=0)), keep=KEEP)
    reserves = [ReserveStock.new(sku="sku-a", order_id=f"o{n}", quantity=1) for n in range(5)]
    table.writes.clear()
    outcomes = change_stocks(table, [(e, log.append(e)) for e in reserves], keep=KEEP)
    assert [w[0] for w in table.writes] == ["sku-a"]
    assert table["sku-a"]["reserved"] == 5
    assert [[e.type for e in sent(o, "orders")] for o in outcomes] == [["stock_reserved"]] * 5


def assert_same(recovered: Changelog, never_died: Changelog) -> None:
    assert counts(recovered) == counts(never_died)
    buckets = recovered["sku-a"].get("buckets", {})
    assert all(archive_key("sku-a", int(b)) in recovered for b in buckets)
    assert ledger_of(recovered) == ledger_of(never_died)


def ledger_of(table: MutableMapping[str, Row]) -> dict[str, tuple[int, str]]:
    """Return every order the sku remembers: its archive rows, overridden by its row."""
    stock = Stock.from_row("sku-a", table["sku-a"])
    entries = {}
    for bucket in sorted(stock.buckets):
        entries.update(archive_entries(table[archive_key("sku-a", bucket)]))
    entries.update(stock.ledger)
    return {o: (e.quantity, e.state) for o, e in entries.items()}


def test_a_payment_recognises_its_request_and_its_answer() -> None:
    """A charge asked for again on the payments topic (as the saga does for an order still
    waiting) makes the same call again and writes nothing; the provider's answer is absorbed
    once by the order's row, and a redelivery of it changes nothing and calls nothing."""
    orders_log, payments_log = Log("orders"), Log("payments")
    table: dict[str, Row] = {}
    order = placed(quantity=1)
    saga_step(table, order, orders_log.append(order), NOW, RetryPolicy())
    reserved = StockReserved.new(sku="sku-a", order_id="o1", quantity=1)
    asked = saga_step(table, reserved, orders_log.append(reserved), NOW, RetryPolicy())
    charging = table["o1"]
    request = PaymentRequested.new(order_id="o1", amount_cents=500, payment_method="pm_card_ok")
    again = saga_step(table, request, payments_log.append(request), NOW, RetryPolicy())
    assert again.calls == asked.calls and len(asked.calls) == 1 and table["o1"] == charging
    answer = answer_of(asked.calls[0], Charge(True, charge_id="ch_1"))
    at_answer = payments_log.append(answer)
    outcome = saga_step(table, answer, at_answer, NOW, RetryPolicy())
    assert [e.type for e in sent(outcome.sends, "payments")] == ["payment_succeeded"]
    row = table["o1"]
    assert payment(row)["status"] == "succeeded" and row["status"] == "confirmed"
    assert already_applied(row, at_answer)
    redelivered = saga_step(table, answer, at_answer, NOW, RetryPolicy())
    assert redelivered.calls == [] and table["o1"] == row, "a redelivered answer charges nothing"


def test_a_payment_for_an_order_without_a_row_changes_nothing() -> None:
    table: dict[str, Row] = {}
    request = PaymentRequested.new(order_id="o9", amount_cents=500, payment_method="pm_card_ok")
    step = saga_step(table, request, Log("payments").append(request), NOW, RetryPolicy())
    assert table == {} and step.rows == [] and step.sends == [] and step.calls == []


def test_the_saga_starts_the_charge_and_applies_its_answer_in_the_order_s_own_step() -> None:
    """``agents.orders.saga_step``: the order's reservation starts the charge on the payment
    row in the same step (no payments message), the provider's answer confirms the order in
    the step that settles the payment (its outcome still sent to the topic), and a redelivery
    of either changes no row and makes no second call."""
    orders_log, payments_log = Log("orders"), Log("payments")
    orders: dict[str, Row] = {}

    def step(log: Log, event: Event) -> tuple[Position, SagaStep]:
        position = log.append(event)
        return position, saga_step(orders, event, position, NOW, RetryPolicy())

    step(orders_log, placed(quantity=1))
    reserved = StockReserved.new(sku="sku-a", order_id="o1", quantity=1)
    at_reserved, asked = step(orders_log, reserved)
    assert orders["o1"]["status"] == "reserved"
    assert payment(orders["o1"])["status"] == "charging"
    assert [call.call for call in asked.calls] == ["charge"]
    assert sent(asked.sends, "payments") == [], "the charge is started here, not sent"
    answer = answer_of(asked.calls[0], Charge(True, charge_id="ch_1"))
    at_answer, settled = step(payments_log, answer)
    assert orders["o1"]["status"] == "confirmed"
    assert payment(orders["o1"])["status"] == "succeeded"
    assert [e.type for e in sent(settled.sends, "payments")] == ["payment_succeeded"]
    assert [e.type for e in sent(settled.sends, "inventory")] == ["commit_stock"]
    assert [order_id for order_id, _ in settled.rows] == ["o1"]
    rows = json.loads(json.dumps(orders))
    again = saga_step(orders, reserved, at_reserved, NOW, RetryPolicy())
    assert again.calls == [] and json.loads(json.dumps(orders)) == rows
    again = saga_step(orders, answer, at_answer, NOW, RetryPolicy())
    assert [e.type for e in sent(again.sends, "inventory")] == ["commit_stock"], \
        "a redelivered answer sends what it caused again"
    assert json.loads(json.dumps(orders)) == rows
    outcome = sent(settled.sends, "payments")[0]
    _, read_back = step(payments_log, outcome)
    assert read_back.sends == [] and read_back.rows == [], "the outcome, read back, is a no-op"
    assert json.loads(json.dumps(orders)) == rows


def test_a_charge_that_comes_after_the_order_ended_is_refunded_through_the_topic() -> None:
    """A step applies the payment rules once: the refund that the late charge's outcome asks
    for goes to the payments topic (the payment already took the answer in this step), and
    starts when the saga reads it."""
    orders_log, payments_log = Log("orders"), Log("payments")
    orders: dict[str, Row] = {}

    def step(log: Log, event: Event) -> SagaStep:
        position = log.append(event)
        return saga_step(orders, event, position, NOW, RetryPolicy())

    step(orders_log, placed(quantity=1))
    asked = step(orders_log, StockReserved.new(sku="sku-a", order_id="o1", quantity=1))
    step(orders_log, CancelRequested.new(order_id="o1"))
    assert orders["o1"]["status"] == "cancelled"
    assert work_pending(orders["o1"]), "its charge is still being made"
    late = step(payments_log, answer_of(asked.calls[0], Charge(True, charge_id="ch_1")))
    assert orders["o1"]["charged_cents"] == 500
    assert payment(orders["o1"])["status"] == "succeeded"
    [refund] = [e for e in sent(late.sends, "payments") if e.type == "refund_requested"]
    assert late.calls == []
    refunding = step(payments_log, refund)
    assert payment(orders["o1"])["status"] == "refunding"
    assert [call.call for call in refunding.calls] == ["refund"]
    assert [order_id for order_id, _ in refunding.rows] == ["o1"], "a payment's own change too"
    assert work_pending(orders["o1"]), "a refund under way keeps the order among the open ones"
    refunded = step(payments_log, answer_of(refunding.calls[0], Refund(True, refund_id="re_1")))
    assert payment(orders["o1"])["status"] == "refunded" and refunded.calls == []
    assert not work_pending(orders["o1"])
