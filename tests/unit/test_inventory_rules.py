"""models/inventory.py: the stock arithmetic, idempotent per order, never negative."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import Effect, Event, decode_event
from models.catalog import StockLevelChanged
from models.inventory import (
    INVENTORY_EVENTS,
    LEDGER_ARCHIVE_OVER,
    LEDGER_BUCKET_S,
    Bucket,
    CommitStock,
    Entry,
    ReleaseStock,
    ReserveStock,
    Restock,
    ReturnStock,
    Stock,
    StockRejected,
    StockReserved,
    apply_inventory_event,
    bucket_of,
    commit,
    release,
    reserve,
    restock,
    return_sold,
)

ORDERS = ("o1", "o2", "o3", "o4")


def stocked(available: int = 10) -> Stock:
    return restock(Stock("sku-a"), available, initial=True)


def assert_adds_up(stock: Stock, added: int) -> None:
    counts = (stock.available, stock.reserved, stock.sold)
    assert min(counts) >= 0, stock
    assert stock.initial + stock.restocked == added == sum(counts), stock
    assert stock.reserved == sum(stock.holds.values()), stock
    assert all(q > 0 for q in stock.holds.values()), stock
    assert all(q > 0 for q in stock.returns.values()), stock


# -- any sequence of commands ---------------------------------------------------------------

order_ids = st.sampled_from(ORDERS)
quantities = st.integers(-1, 7)
commands = st.one_of(
    st.tuples(st.just("reserve"), order_ids, quantities),
    st.tuples(st.just("release"), order_ids, st.just(0)),
    st.tuples(st.just("commit"), order_ids, st.just(0)),
    st.tuples(st.just("return"), order_ids, quantities),
    st.tuples(st.just("restock"), st.booleans().map(str), st.integers(1, 6)),
)


@settings(max_examples=300)
@given(initial=st.integers(0, 8), script=st.lists(commands, max_size=40))
def test_any_sequence_of_commands_keeps_the_stock_whole(
    initial: int, script: list[tuple[str, str, int]]
) -> None:
    stock = stocked(initial) if initial else Stock("sku-a")
    added = initial
    # A model of the ledger kept by hand beside the rules: order -> (quantity, state).
    ledger: dict[str, tuple[int, str]] = {}
    for command, who, quantity in script:
        q, state = ledger.get(who, (0, ""))
        if command == "reserve":
            fits = 0 < quantity <= stock.available
            stock, ok = reserve(stock, who, quantity)
            assert ok == (state in ("held", "sold") or (not state and fits))
            if not state:
                ledger[who] = (quantity, "held") if fits else (0, "rejected")
        elif command == "release":
            stock = release(stock, who)
            if state in ("", "held"):
                ledger[who] = (q, "released")
        elif command == "commit":
            stock = commit(stock, who)
            if state == "held":
                ledger[who] = (q, "sold")
        elif command == "return":
            sold_before = stock.sold
            stock = return_sold(stock, who, quantity)
            if state in ("held", "sold"):
                ledger[who] = (q, "returned")
            elif not state and 0 < quantity <= sold_before - sum(
                    q for q, s in ledger.values() if s == "sold"):
                ledger[who] = (quantity, "returned")  # sold to an order the ledger forgot
        else:
            initial_again = who == "True" and stock.initial > 0
            stock = restock(stock, quantity, initial=who == "True")
            added += 0 if initial_again else quantity  # a first stock is set once
        assert_adds_up(stock, added)
        assert {o: (e.quantity, e.state) for o, e in stock.ledger.items()} == ledger
        assert stock.reserved == sum(q for q, s in ledger.values() if s == "held")
    assert Stock.from_row(stock.sku, json.loads(json.dumps(stock.to_row()))) == stock


@given(script=st.lists(commands, max_size=20))
def test_the_rules_never_change_the_stock_they_are_given(
    script: list[tuple[str, str, int]]
) -> None:
    stock = stocked(6)
    for command, who, quantity in script:
        row = stock.to_row()
        if command == "reserve":
            after, _ = reserve(stock, who, quantity)
        elif command == "release":
            after = release(stock, who)
        elif command == "commit":
            after = commit(stock, who)
        elif command == "return":
            after = return_sold(stock, who, quantity)
        else:
            after = restock(stock, quantity)
        assert stock.to_row() == row, "a rule changed its input"
        stock = after


# -- reserve --------------------------------------------------------------------------------


def test_reserving_holds_the_quantity_for_the_order() -> None:
    stock, ok = reserve(stocked(10), "o1", 4)
    assert ok
    assert (stock.available, stock.reserved, stock.sold) == (6, 4, 0)
    assert stock.holds == {"o1": 4}


def test_the_last_unit_can_be_reserved_but_not_one_more() -> None:
    stock, ok = reserve(stocked(3), "o1", 3)
    assert ok and stock.available == 0
    short, ok = reserve(stocked(3), "o2", 4)
    assert not ok and (short.available, short.reserved) == (3, 0)
    assert short.ledger["o2"].state == "rejected", "asked again, the answer stands"


@pytest.mark.parametrize("quantity", [0, -1])
def test_a_reservation_of_nothing_is_refused(quantity: int) -> None:
    stock, ok = reserve(stocked(3), "o1", quantity)
    assert not ok and (stock.available, stock.reserved) == (3, 0)


@given(first=st.integers(1, 5), again=st.integers(-2, 50))
def test_reserving_again_for_the_same_order_holds_nothing_more(first: int, again: int) -> None:
    held, ok = reserve(stocked(5), "o1", first)
    assert ok
    twice, ok = reserve(held, "o1", again)
    assert ok, "asked again: the answer stands"
    assert twice is held


# -- release, commit, return ----------------------------------------------------------------


def test_release_gives_the_hold_back_and_commit_sells_it() -> None:
    held, _ = reserve(stocked(10), "o1", 4)
    held, _ = reserve(held, "o2", 3)
    released = release(held, "o1")
    assert (released.available, released.reserved, released.sold) == (7, 3, 0)
    assert released.holds == {"o2": 3}
    sold = commit(released, "o2")
    assert (sold.available, sold.reserved, sold.sold) == (7, 0, 3)
    assert sold.holds == {}


@pytest.mark.parametrize("rule", [release, commit], ids=["release", "commit"])
def test_release_or_commit_of_a_hold_that_is_gone_changes_nothing(rule: Any) -> None:
    held, _ = reserve(stocked(10), "o1", 4)
    done = rule(held, "o1")
    assert rule(done, "o1") is done, "the second time, the hold is gone"


def test_a_commit_for_an_order_never_held_changes_nothing() -> None:
    held, _ = reserve(stocked(10), "o1", 4)
    assert commit(held, "o-unknown") is held


def test_a_release_that_overtakes_its_reservation_holds_nothing_later() -> None:
    released = release(stocked(10), "o1")
    assert released.ledger["o1"].state == "released"
    late, ok = reserve(released, "o1", 4)
    assert not ok and late is released
    assert (late.available, late.reserved) == (10, 0)


def test_sold_stock_is_returned_once_per_order() -> None:
    held, _ = reserve(stocked(10), "o1", 4)
    sold = commit(held, "o1")
    back = return_sold(sold, "o1", 4)
    assert (back.available, back.reserved, back.sold) == (10, 0, 0)
    assert back.returns == {"o1": 4}
    assert return_sold(back, "o1", 4) is back


def test_a_return_puts_back_what_the_order_bought_whatever_it_names() -> None:
    sold = commit(reserve(stocked(10), "o1", 4)[0], "o1")
    back = return_sold(sold, "o1", 99)
    assert (back.available, back.reserved, back.sold) == (10, 0, 0)


@pytest.mark.parametrize("quantity", [0, -2, 5])
def test_a_return_of_an_order_not_in_the_ledger_is_bounded_by_what_is_sold(
        quantity: int) -> None:
    sold = commit(reserve(stocked(10), "o1", 4)[0], "o1")
    assert return_sold(sold, "o-forgotten", quantity) is sold


def test_a_forgotten_order_returns_no_more_than_was_sold_to_forgotten_orders() -> None:
    """An order not in the ledger cannot take back units still sold to one that is."""
    sold = commit(reserve(stocked(1), "o1", 1)[0], "o1")
    assert return_sold(sold, "o-unknown", 1) is sold
    back = return_sold(sold, "o1", 1)
    assert (back.available, back.sold) == (1, 0)


def test_a_reservation_repeated_after_the_sale_holds_nothing() -> None:
    sold = commit(reserve(stocked(10), "o1", 4)[0], "o1")
    again, ok = reserve(sold, "o1", 4)
    assert ok
    assert again == sold
    assert commit(again, "o1").sold == 4


def test_a_return_that_overtakes_its_commit_still_puts_the_stock_back() -> None:
    held, _ = reserve(stocked(10), "o1", 4)
    returned = return_sold(held, "o1", 4)
    after = commit(returned, "o1")
    assert (after.available, after.reserved, after.sold) == (10, 0, 0)


# -- restock --------------------------------------------------------------------------------


@given(quantity=st.integers(max_value=0), initial=st.booleans())
def test_a_restock_needs_a_positive_quantity(quantity: int, initial: bool) -> None:
    with pytest.raises(ValueError, match="positive quantity"):
        restock(stocked(3), quantity, initial=initial)


def test_a_restock_counts_as_initial_or_restocked() -> None:
    first = restock(Stock("sku-a"), 5, initial=True)
    more = restock(first, 3)
    assert (more.initial, more.restocked, more.available) == (5, 3, 8)


def test_a_first_stock_is_set_once() -> None:
    first = restock(Stock("sku-a"), 5, initial=True)
    assert restock(first, 7, initial=True) is first, "seeding again changes nothing"
    later = restock(restock(Stock("sku-a"), 2), 5, initial=True)
    assert (later.initial, later.restocked, later.available) == (5, 2, 7)


# -- rows and events ------------------------------------------------------------------------


def test_an_unknown_sku_has_no_stock() -> None:
    assert Stock.from_row("sku-x", None) == Stock("sku-x")
    assert Stock.from_row("sku-x", {}) == Stock("sku-x")
    assert Stock("sku-x").public() == {"sku": "sku-x", "available": 0, "reserved": 0, "sold": 0}


def test_the_row_keeps_the_ledger() -> None:
    stock = return_sold(commit(reserve(stocked(9), "o1", 2, at=5)[0], "o1", at=6), "o1", 2, at=7)
    stock, _ = reserve(stock, "o2", 3, at=8, placed=4)
    row = json.loads(json.dumps(stock.to_row()))
    assert row["ledger"] == {"o1": [2, "returned", 7, 0], "o2": [3, "held", 8, 4]}
    assert Stock.from_row("sku-a", row) == stock
    assert (stock.holds, stock.returns) == ({"o2": 3}, {"o1": 2})
    assert stock.public() == {"sku": "sku-a", "available": 6, "reserved": 3, "sold": 0}


def test_inventory_commands_decode_from_the_wire() -> None:
    for event in (ReturnStock.new(sku="sku-a", order_id="o1", quantity=2),
                  Restock.new(sku="sku-a", quantity=5, initial=True)):
        back: Event = decode_event(INVENTORY_EVENTS, event.dumps())
        assert type(back) is type(event)
        assert back.asdict() == event.asdict()
    assert Restock.new(sku="sku-a", quantity=1).initial is False


# -- the inventory agent's rule: answers and stock levels ------------------------------------


def kinds(effects: list[Effect]) -> list[tuple[str, str, str]]:
    return [(e.topic, e.key, e.event.type) for e in effects]


def test_a_reservation_is_answered_on_the_orders_topic() -> None:
    stock, effects, *_ = apply_inventory_event(
        stocked(10), ReserveStock.new(sku="sku-a", order_id="o1", quantity=3))
    assert stock.holds == {"o1": 3}
    assert kinds(effects) == [("orders", "o1", "stock_reserved")]
    answer = effects[0].event
    assert isinstance(answer, StockReserved)
    assert (answer.order_id, answer.sku, answer.quantity, answer.correlation_id) == (
        "o1", "sku-a", 3, "o1")


def test_a_shortage_is_answered_with_what_is_left() -> None:
    stock, effects, *_ = apply_inventory_event(
        stocked(2), ReserveStock.new(sku="sku-a", order_id="o1", quantity=3))
    assert (stock.available, stock.reserved, stock.holds) == (2, 0, {})
    assert kinds(effects) == [("orders", "o1", "stock_rejected")]
    answer = effects[0].event
    assert isinstance(answer, StockRejected)
    assert (answer.requested, answer.available) == (3, 2)


@pytest.mark.parametrize(("available", "quantity", "level"), [
    (10, 4, None),  # 6 left: still in stock, nothing to tell the catalog
    (10, 5, "low_stock"),
    (3, 3, "out_of_stock"),
])
def test_the_catalog_hears_when_the_stock_level_changes(available: int, quantity: int,
                                                        level: str | None) -> None:
    stock, effects, *_ = apply_inventory_event(
        stocked(available), ReserveStock.new(sku="sku-a", order_id="o1", quantity=quantity))
    notices = [e for e in effects if e.topic == "catalog"]
    if level is None:
        assert notices == []
        return
    assert kinds(notices) == [("catalog", "sku-a", "stock_level_changed")]
    notice = notices[0].event
    assert isinstance(notice, StockLevelChanged)
    assert (notice.level, notice.available) == (level, stock.available)


def test_a_release_that_brings_the_stock_back_tells_the_catalog() -> None:
    held, _ = reserve(stocked(3), "o1", 3)
    stock, effects, *_ = apply_inventory_event(held, ReleaseStock.new(sku="sku-a", order_id="o1"))
    assert stock.available == 3
    assert kinds(effects) == [("catalog", "sku-a", "stock_level_changed")]


def test_every_restock_tells_the_catalog() -> None:
    stock, effects, *_ = apply_inventory_event(stocked(10), Restock.new(sku="sku-a", quantity=1))
    assert stock.available == 11
    assert kinds(effects) == [("catalog", "sku-a", "stock_level_changed")]


@pytest.mark.parametrize("command", [
    CommitStock.new(sku="sku-a", order_id="o1"),
    ReturnStock.new(sku="sku-a", order_id="o1", quantity=2),
    ReleaseStock.new(sku="sku-a", order_id="o-unknown"),
], ids=lambda e: e.type)
def test_commands_that_leave_the_level_alone_send_nothing(command: Event) -> None:
    held, _ = reserve(stocked(20), "o1", 2)
    if isinstance(command, ReturnStock):
        held = commit(held, "o1")
    _, effects, *_ = apply_inventory_event(held, command)
    assert effects == []


def test_an_event_that_is_not_an_inventory_command_changes_nothing() -> None:
    stock = stocked(4)
    answer = StockReserved.new(order_id="o1", sku="sku-a", quantity=1)
    assert apply_inventory_event(stock, answer) == (stock, [], {}, ())


# -- the ledger is bounded: finished orders are pruned, their late duplicates change nothing --

KEEP = 10
PLANS = (("reserve", "commit"), ("reserve", "commit", "return"), ("reserve", "release"),
         ("release", "reserve"), ("reserve", "return", "commit"))


class Shelf:
    """A sku's stock and its archive rows, changed as the inventory agent changes them."""

    def __init__(self, stock: Stock, keep: int = KEEP, over: int = 0) -> None:
        self.stock, self.keep, self.over = stock, keep, over
        self.rows: dict[int, dict[str, Entry]] = {}

    def apply(self, event: Event) -> list[Effect]:
        change = apply_inventory_event(self.stock, event, self.keep,
                                       lambda bucket: self.rows.get(bucket, {}), self.over)
        self.rows.update(change.archives)
        for bucket in change.dropped:
            del self.rows[bucket]
        assert set(self.rows) == set(change.stock.buckets), "a listed row is missing"
        self.stock = change.stock
        return change.effects

    @property
    def ledger(self) -> dict[str, Entry]:
        """Return every entry the sku remembers (a recent entry overrides an archived one)."""
        archived = {o: e for bucket in sorted(self.rows) for o, e in self.rows[bucket].items()}
        return {**archived, **self.stock.ledger}


def command(kind: str, order_id: str, quantity: int, at: int, placed: int = 0) -> Event:
    """Return an inventory command for sku-a that occurred at second ``at``."""
    fields: dict[str, Any] = {"type": kind + "_stock", "event_id": f"{order_id}-{kind}-{at}",
                              "occurred_at": datetime.fromtimestamp(at, UTC), "sku": "sku-a",
                              "order_id": order_id, "placed_at": placed}
    classes: dict[str, Any] = {"reserve": ReserveStock, "release": ReleaseStock,
                               "commit": CommitStock, "return": ReturnStock}
    if kind in ("reserve", "return"):
        fields["quantity"] = quantity
    return classes[kind](**fields)


@st.composite
def sku_logs(draw: st.DrawFn, keep: int = KEEP) -> list[Event]:
    """The inventory log of one sku as the saga writes it, with duplicates appended late.

    Each order lives less than ``keep`` seconds (its commands follow one of PLANS, in any of
    the orders Kafka allows between partitions, and carry the order's placing time, or none
    as from older versions); a duplicate of any earlier command (same event, same time) may
    be appended at any later point, long after its order was archived or pruned.
    """
    log: list[Event] = []
    clock = 1_000
    lives: list[tuple[str, int, int, list[str]]] = []  # (order, quantity, placed, plan left)
    for _ in range(draw(st.integers(1, 60))):
        step = draw(st.sampled_from(("order", "advance", "advance", "duplicate", "tick")))
        if step == "order":
            order_id, quantity = f"o{len(lives)}", draw(st.integers(1, 3))
            placed = draw(st.sampled_from((clock, clock, 0)))
            plan = list(draw(st.sampled_from(PLANS)))
            log.append(command(plan.pop(0), order_id, quantity, clock, placed))
            lives.append((order_id, quantity, placed, plan))
        elif step == "advance":
            going = [life for life in lives if life[3] and clock - life[2] < keep // 2]
            if going:
                order_id, quantity, placed, plan = draw(st.sampled_from(going))
                log.append(command(plan.pop(0), order_id, quantity, clock, placed))
        elif step == "duplicate" and log:
            log.append(draw(st.sampled_from(log)))
        else:
            clock += draw(st.integers(1, 2 * keep))
    return log


@settings(max_examples=150)
@given(data=st.data(), keep=st.sampled_from((KEEP, 45, 200)), over=st.sampled_from((0, 3, 64)))
def test_pruning_the_ledger_changes_no_count(data: st.DataObject, keep: int, over: int) -> None:
    """The stock with a bounded ledger, its finished orders archived by the time they were
    placed (past ``over`` of them waiting), counts as one that never forgets, event by event."""
    log = data.draw(sku_logs(keep))
    forgetting = Shelf(restock(Stock("sku-a"), 5, initial=True), keep, over)
    remembering = Shelf(restock(Stock("sku-a"), 5, initial=True), 10**9)
    answered: set[str] = set()
    for event in log:
        said, meant = forgetting.apply(event), remembering.apply(event)
        now, then = forgetting.stock, remembering.stock
        assert (now.available, now.reserved, now.sold) == (then.available, then.reserved,
                                                          then.sold)
        assert_adds_up(now, 5)
        if event.event_id not in answered:  # a duplicate's answer goes to a finished order
            assert kinds(said) == kinds(meant)
        answered.add(event.event_id)
        for order_id, entry in forgetting.ledger.items():
            kept = entry.state == "held" or entry.at >= now.seen - keep - 2 * LEDGER_BUCKET_S
            assert kept or bucket_of(entry.placed) in now.buckets, order_id
        assert {o: (e.quantity, e.state) for o, e in remembering.ledger.items()} == {
            o: (e.quantity, e.state) for o, e in forgetting.ledger.items()
        } | {o: (e.quantity, e.state) for o, e in remembering.ledger.items()
             if o not in forgetting.ledger}


@settings(max_examples=100)
@given(log=sku_logs(200))
def test_the_recent_ledger_keeps_only_holds_and_recent_orders(log: list[Event]) -> None:
    """Finished orders leave the sku's row once their bucket is two buckets old, a bucket a
    command (the rows' cost follows the sku's recent orders), and are found in their archive
    row: the sku remembers every order one that never archives remembers."""
    archiving = Shelf(restock(Stock("sku-a"), 5, initial=True), 200)
    keeping = Shelf(restock(Stock("sku-a"), 5, initial=True), 200, over=10**9)
    for event in log:
        archiving.apply(event)
        keeping.apply(event)

    def closed() -> set[int]:
        closing = archiving.stock.seen - 2 * LEDGER_BUCKET_S
        return {bucket_of(e.placed) for e in archiving.stock.ledger.values()
                if e.state != "held" and bucket_of(e.placed) <= closing}

    seen = archiving.stock.seen
    for n in range(len(closed())):  # a command each: new orders, placed now
        archiving.apply(command("reserve", f"new{n}", 1, seen, seen))
        keeping.apply(command("reserve", f"new{n}", 1, seen, seen))
    assert closed() == set()
    remembered = archiving.ledger  # an archive row goes whole, so it may remember longer
    for order_id, entry in keeping.ledger.items():
        assert (remembered[order_id].quantity, remembered[order_id].state) == (
            entry.quantity, entry.state), order_id
    again = Stock.from_row("sku-a", json.loads(json.dumps(archiving.stock.to_row())))
    assert again == archiving.stock


def test_a_finished_order_moves_to_its_archive_row_and_is_found_there() -> None:
    shelf = Shelf(restock(Stock("sku-a"), 10, initial=True), keep=900)
    reserved = command("reserve", "o1", 4, 100, 100)
    committed = command("commit", "o1", 4, 101, 100)
    for event in (reserved, committed, command("reserve", "o2", 1, 125, 125)):
        shelf.apply(event)
    assert "o1" not in shelf.stock.ledger, "archived once its bucket (100-109) closed"
    assert shelf.rows == {100: {"o1": Entry(4, "sold", 101, 100)}}
    assert shelf.stock.buckets == {100: Bucket(101, 4)}
    effects = shelf.apply(reserved)  # asked again: the archive answers with the sale
    assert [type(e.event) for e in effects] == [StockReserved]
    assert (shelf.stock.available, shelf.stock.sold) == (5, 4)
    shelf.apply(command("return", "o1", 4, 130, 100))
    assert (shelf.stock.available, shelf.stock.sold) == (9, 0)
    assert shelf.stock.ledger["o1"].state == "returned", "a changed entry is recent again"
    assert shelf.stock.buckets[100].sold == 0, "and no longer counted as sold in its bucket"
    shelf.apply(command("return", "o1", 4, 130, 100))
    assert (shelf.stock.available, shelf.stock.sold) == (9, 0), "returned once"
    shelf.apply(command("reserve", "o3", 1, 131, 131))
    assert shelf.rows[100]["o1"].state == "returned" and "o1" not in shelf.stock.ledger


def test_an_archive_row_goes_as_a_whole_and_its_orders_stay_known_as_pruned() -> None:
    shelf = Shelf(restock(Stock("sku-a"), 10, initial=True), keep=100)
    reserved = command("reserve", "o1", 4, 100, 100)
    for event in (reserved, command("commit", "o1", 4, 101, 100),
                  command("reserve", "o2", 1, 130, 130)):
        shelf.apply(event)
    assert 100 in shelf.rows
    shelf.apply(command("reserve", "o3", 1, 300, 300))
    assert shelf.rows == {} and shelf.stock.horizon == 101
    effects = shelf.apply(reserved)
    assert [type(e.event) for e in effects] == [StockRejected], "a pruned order's duplicate"
    assert (shelf.stock.available, shelf.stock.reserved, shelf.stock.sold) == (4, 2, 4)


def test_a_sku_sold_seldom_keeps_its_whole_ledger_in_its_row() -> None:
    """Under LEDGER_ARCHIVE_OVER finished orders past their bucket, nothing is archived."""
    shelf = Shelf(restock(Stock("sku-a"), 100, initial=True), keep=900,
                  over=LEDGER_ARCHIVE_OVER)
    for n in range(LEDGER_ARCHIVE_OVER + 1):
        at = 1_000 + 10 * n
        shelf.apply(command("reserve", f"o{n}", 1, at, at))
        shelf.apply(command("commit", f"o{n}", 1, at + 1, at))
    assert shelf.rows == {} and len(shelf.stock.ledger) == LEDGER_ARCHIVE_OVER + 1
    shelf.apply(command("reserve", "last", 1, 1_700, 1_700))
    assert list(shelf.rows) == [1_000], "one past the limit: the oldest bucket goes"


def test_an_old_row_reads_as_the_recent_ledger() -> None:
    row = {"sku": "sku-a", "initial": 5, "restocked": 0, "available": 3, "reserved": 2,
           "sold": 0, "ledger": {"o1": [2, "held", 7]}, "horizon": 0, "seen": 7}
    stock = Stock.from_row("sku-a", row)
    assert stock.ledger == {"o1": Entry(2, "held", 7, 0)} and stock.buckets == {}


def test_a_finished_order_is_forgotten_and_its_late_duplicates_change_nothing() -> None:
    reserved = command("reserve", "o1", 4, 100)
    committed = command("commit", "o1", 4, 101)
    shelf = Shelf(restock(Stock("sku-a"), 10, initial=True))
    for event in (reserved, committed, command("reserve", "o2", 1, 200)):
        shelf.apply(event)
    assert "o1" not in shelf.ledger and shelf.stock.horizon == 101
    for late in (reserved, committed, command("release", "o1", 0, 101)):
        effects = shelf.apply(late)
        stock = shelf.stock
        assert (stock.available, stock.reserved, stock.sold) == (5, 1, 4)
        assert "o1" not in shelf.ledger
        assert all(not isinstance(e.event, StockReserved) for e in effects)


def test_a_paid_order_cancelled_after_it_was_forgotten_still_returns_its_units() -> None:
    shelf = Shelf(restock(Stock("sku-a"), 10, initial=True))
    for event in (command("reserve", "o1", 4, 100), command("commit", "o1", 4, 101),
                  command("reserve", "o2", 1, 200)):
        shelf.apply(event)
    returned = command("return", "o1", 4, 300)
    shelf.apply(returned)
    assert (shelf.stock.available, shelf.stock.sold) == (9, 0)
    shelf.apply(returned)
    assert shelf.stock.sold == 0, "returned once"


def test_a_hold_is_never_forgotten() -> None:
    shelf = Shelf(restock(Stock("sku-a"), 10, initial=True))
    shelf.apply(command("reserve", "o1", 4, 100, 100))
    shelf.apply(command("reserve", "o2", 1, 10_000, 10_000))
    assert shelf.stock.holds == {"o1": 4, "o2": 1}
