"""When the orders agent asks again for a lost answer: after a rebalance, or after very long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from faust.types import TP

from agents.orders import (
    CHASE_AFTER,
    CHASE_AFTER_S,
    CHASE_SAFETY,
    CHASE_WINDOW_S,
    FORGET_AFTER_S,
    SAFETY_SCAN_S,
    AskAgain,
    ChaseState,
    backlog,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def test_a_busy_worker_without_a_rebalance_chases_only_very_long_waits() -> None:
    state = ChaseState()
    state.note_rebalance(1, NOW - timedelta(hours=1), clock=0.0)  # the start, long ago
    clock = CHASE_WINDOW_S + 100
    slow = NOW - CHASE_AFTER - timedelta(seconds=20)
    assert not state.lost(slow, NOW, clock)
    assert state.lost(NOW - CHASE_SAFETY - timedelta(seconds=1), NOW, clock)


def test_after_a_rebalance_orders_waiting_across_it_are_chased() -> None:
    state = ChaseState()
    state.note_rebalance(1, NOW - timedelta(hours=1), clock=0.0)
    state.note_rebalance(2, NOW, clock=1000.0)
    before = NOW - CHASE_AFTER - timedelta(seconds=1)
    assert state.lost(before, NOW, 1000.0)
    assert not state.lost(NOW + timedelta(seconds=1), NOW + CHASE_AFTER * 2, 1001.0), (
        "an order that moved after the rebalance lost nothing")
    assert not state.lost(before, NOW, 1000.0 + CHASE_WINDOW_S + 1), "the window closes"
    state.note_rebalance(2, NOW + timedelta(minutes=5), clock=2000.0)
    assert state.rebalanced_at == NOW, "the same rebalance count opens no new window"


def test_scans_run_in_a_window_and_otherwise_now_and_then() -> None:
    state = ChaseState()
    state.note_rebalance(1, NOW, clock=0.0)
    assert state.scan_due(1.0) and state.scan_due(2.0)
    late = CHASE_WINDOW_S + 1
    assert state.scan_due(late)
    assert not state.scan_due(late + 1)
    assert state.scan_due(late + SAFETY_SCAN_S)


def test_the_open_order_index_follows_the_agent_and_rebuilds_after_a_rebalance() -> None:
    from tables.orders import OpenOrderIndex

    table = {"o1": "2026-05-01T12:15:00+00:00", "o2": "2026-05-01T12:16:00+00:00"}
    rows = {"o1": {"history": [{"at": "t0"}, {"at": "t1"}]},
            "o2": {"history": [{"at": "t2"}]}}
    reads: list[str] = []

    def order_row(order_id: str) -> dict[str, object] | None:
        reads.append(order_id)
        return rows.get(order_id)

    index = OpenOrderIndex(table.items, order_row)
    assert index.current(1) == {"o1": (table["o1"], "t1"), "o2": (table["o2"], "t2")}
    index.note("o3", "2026-05-01T12:20:00+00:00", "t3")
    index.drop("o1")
    assert set(index.current(1)) == {"o2", "o3"}
    assert reads == ["o1", "o2"], "no table reads between rebalances"
    table.pop("o1")
    table["o4"] = "2026-05-01T12:30:00+00:00"  # a partition came with the rebalance
    rows["o4"] = {"history": [{"at": "t4"}]}
    assert set(index.current(2)) == {"o2", "o4"}, "rebuilt from the tables"


def test_the_expiry_looks_at_the_open_orders_only_once_one_may_be_due() -> None:
    from tables.orders import OpenOrderIndex

    table = {"o1": "2026-05-01T12:15:00+00:00"}
    index = OpenOrderIndex(table.items, lambda _: {"history": [{"at": "t0"}]})
    assert index.may_be_due(1, "2026-05-01T12:00:00+00:00"), "unknown after a (re)build"
    index.look_again_at("2026-05-01T12:15:00+00:00")
    assert not index.may_be_due(1, "2026-05-01T12:14:59+00:00")
    assert index.may_be_due(1, "2026-05-01T12:15:00+00:00")
    # An order noted while a look was under way, due before what that look found, counts.
    index.note("o2", "2026-05-01T12:05:00+00:00", "t1")
    index.look_again_at("2026-05-01T12:15:00+00:00")
    assert index.may_be_due(1, "2026-05-01T12:05:00+00:00")
    index.look_again_at(None)
    assert not index.may_be_due(1, "2026-05-01T13:00:00+00:00"), "nothing open"
    index.note("o3", "2026-05-01T13:30:00+00:00", "t2")
    assert index.may_be_due(1, "2026-05-01T13:30:00+00:00")
    assert index.may_be_due(2, "2026-05-01T12:00:00+00:00"), "a rebalance: look again"


def test_an_order_is_asked_again_less_and_less_often() -> None:
    asked = AskAgain()
    assert asked.due("o1", 0.0)
    asked.note("o1", 0.0)
    waits = []
    clock = 0.0
    for _ in range(7):
        wait = next(w for w in range(1, 1000) if asked.due("o1", clock + w))
        assert not asked.due("o1", clock + wait - 1)
        waits.append(wait)
        clock += wait
        asked.note("o1", clock)
    step = CHASE_AFTER_S
    assert waits == [step, 2 * step, 4 * step, 8 * step, 16 * step, 16 * step, 16 * step]
    assert asked.due("o2", clock), "other orders are not held up"


def test_an_order_not_asked_for_long_starts_over() -> None:
    asked = AskAgain()
    for clock in (0.0, 5.0, 15.0):
        asked.note("o1", clock)
    asked.forget_old(15.0 + FORGET_AFTER_S + 1)
    asked.note("o1", 1000.0)
    assert asked.due("o1", 1000.0 + CHASE_AFTER_S)


def test_a_worker_behind_waits_before_chasing_orders_waiting_across_a_rebalance() -> None:
    state = ChaseState()
    state.note_rebalance(1, NOW, clock=1000.0)
    before = NOW - CHASE_AFTER - timedelta(seconds=1)
    assert not state.lost(before, NOW, 1000.0, behind=True), "its answer may be in the backlog"
    assert state.lost(NOW - CHASE_SAFETY - timedelta(seconds=1), NOW, 1000.0, behind=True), (
        "the safety net holds while behind")
    state.hold_window(1000.0 + CHASE_WINDOW_S - 1)  # still behind near the window's end
    caught_up = 1000.0 + CHASE_WINDOW_S + 10
    assert state.lost(before, NOW, caught_up), "the window waited for the backlog"
    state.hold_window(caught_up + 2 * CHASE_WINDOW_S)  # a closed window is not reopened
    assert not state.lost(before, NOW, caught_up + 2 * CHASE_WINDOW_S)


def test_the_backlog_counts_what_no_agent_took_yet_on_the_saga_topics() -> None:
    orders0, orders1, payments0, users0 = (TP("orders", 0), TP("orders", 1),
                                           TP("payments", 0), TP("users", 0))
    monitor = SimpleNamespace(
        tp_end_offsets={orders0: 100, orders1: 50, payments0: 10, users0: 999},
        tp_read_offsets={orders0: 89},  # offsets 90..99 not taken yet
    )
    consumer = SimpleNamespace(assignment=lambda: {orders0, orders1, payments0, users0},
                               _committed_offset={orders1: 45})  # nothing taken since 45
    app = SimpleNamespace(monitor=monitor, consumer=consumer)
    assert backlog(app) == 10 + 5 + 10
