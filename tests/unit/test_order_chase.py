"""When the orders agent asks again for a lost answer: after a rebalance, or after very long."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.orders import (
    CHASE_AFTER,
    CHASE_SAFETY,
    CHASE_WINDOW_S,
    SAFETY_SCAN_S,
    ChaseState,
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
