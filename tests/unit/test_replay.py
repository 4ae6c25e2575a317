"""tables/replay.py: a counter guarded by the replay guard counts each event exactly once.

The simulations below play a Kafka log to a table the way at-least-once delivery does:
in order, with crashes after which the consumer starts again from an earlier offset, and with
producer retries that append an event a second time (same event id, higher offset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from tables.replay import (
    RECENT_IDS,
    Position,
    Row,
    Send,
    already_applied,
    decide_once,
    mark_applied,
    update_many,
    update_once,
)

KEYS = ("s1", "s2")


@dataclass(frozen=True)
class Entry:
    """One record of a topic's log: the key it is for and the event id it carries."""

    topic: str
    offset: int
    key: str
    event_id: str

    @property
    def position(self) -> Position:
        return Position(self.topic, self.offset, self.event_id)


def count_event(row: Row | None) -> Row:
    """The table update under test: one more event for this key, in a row built fresh (as
    the agents' rules build theirs: the guard, not the update, keeps the row's history)."""
    return {"n": (row or {}).get("n", 0) + 1}


def apply(table: dict[str, Row], entry: Entry) -> bool:
    return update_once(table, entry.key, entry.position, count_event, table_name="test-counter")


def skipped(table: str, reason: str | None = None) -> float:
    """Return the events ``table`` skipped (for ``reason``, or for either)."""
    return sum(REGISTRY.get_sample_value("shop_replays_skipped_total",
                                         {"table": table, "reason": why}) or 0.0
               for why in ([reason] if reason else ["replay", "duplicate"]))


def skipped_total() -> float:
    return skipped("test-counter")


@st.composite
def logs(draw: st.DrawFn, topic: str = "t", *, duplicates: bool = True) -> list[Entry]:
    """A topic's log: new events, and duplicates of events appended at most RECENT_IDS back."""
    log: list[Entry] = []
    original_at: dict[str, int] = {}  # event id -> offset of its first append
    for _ in range(draw(st.integers(1, 80))):
        offset = len(log)
        recent = [eid for eid, at in original_at.items() if offset - at <= RECENT_IDS]
        if duplicates and recent and draw(st.integers(0, 3)) == 0:
            event_id = draw(st.sampled_from(sorted(recent)))
            key = next(e.key for e in log if e.event_id == event_id)
        else:
            event_id = f"{topic}-e{offset}"
            key = draw(st.sampled_from(KEYS))
            original_at[event_id] = offset
        log.append(Entry(topic, offset, key, event_id))
    return log


def deliver_with_crashes(draw: st.DrawFn, log: list[Entry], max_crashes: int = 6) -> list[Entry]:
    """Deliver ``log`` in order; after a crash, start again from an earlier offset."""
    delivered: list[Entry] = []
    next_offset, crashes = 0, 0
    while next_offset < len(log):
        delivered.append(log[next_offset])
        next_offset += 1
        if crashes < max_crashes and draw(st.integers(0, 7)) == 0:
            crashes += 1
            next_offset = draw(st.integers(0, next_offset))
    return delivered


def distinct_per_key(log: list[Entry]) -> Counter[str]:
    firsts = {e.event_id: e.key for e in reversed(log)}
    return Counter(firsts.values())


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_one_topic_with_replays_and_duplicates_counts_each_event_once(data: st.DataObject) -> None:
    log = data.draw(logs())
    delivered = deliver_with_crashes(data.draw, log)
    table: dict[str, Row] = {}
    skipped_before = skipped_total()

    applied = sum(apply(table, entry) for entry in delivered)

    expected = distinct_per_key(log)
    assert {key: row["n"] for key, row in table.items()} == dict(expected)
    assert applied == sum(expected.values())
    assert skipped_total() - skipped_before == len(delivered) - applied


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_two_topics_with_independent_replays_count_each_event_once(data: st.DataObject) -> None:
    """Rows absorb events of two topics, delivered interleaved, each topic replayed on its own."""
    # Without duplicates: the ids ring is not involved, only the offsets per topic.
    topic_logs = {t: data.draw(logs(t, duplicates=False)) for t in ("a", "b")}
    streams = {t: deliver_with_crashes(data.draw, log) for t, log in topic_logs.items()}
    interleave = data.draw(st.randoms(use_true_random=False))
    table: dict[str, Row] = {}

    while any(streams.values()):
        topic = interleave.choice(sorted(t for t, s in streams.items() if s))
        apply(table, streams[topic].pop(0))

    expected = distinct_per_key(topic_logs["a"] + topic_logs["b"])
    assert {key: row["n"] for key, row in table.items()} == dict(expected)


def test_a_skipped_duplicate_stays_skipped_after_other_topics_fill_the_ring() -> None:
    table: dict[str, Row] = {}
    original = Entry("orders", 0, "s1", "o-1")
    duplicate = Entry("orders", 1, "s1", "o-1")  # the producer retried: same id, next offset
    assert apply(table, original)
    assert not apply(table, duplicate)
    for offset in range(RECENT_IDS):  # the same row absorbs events of another topic
        assert apply(table, Entry("payments", offset, "s1", f"p-{offset}"))
    # The orders consumer crashes before committing offset 1 and gets it again.
    apply(table, duplicate)
    assert table["s1"]["n"] == 1 + RECENT_IDS


def test_a_replay_from_further_back_than_the_ids_ring_is_skipped() -> None:
    log = [Entry("t", offset, "s1", f"e{offset}") for offset in range(3 * RECENT_IDS)]
    table: dict[str, Row] = {}
    for entry in log + log:  # everything, then a restart from offset 0
        apply(table, entry)
    assert table["s1"]["n"] == len(log)


def test_none_and_empty_rows_have_applied_nothing() -> None:
    position = Position("analytics", 0, "e1")
    assert not already_applied(None, position)
    assert not already_applied({}, position)
    assert not already_applied({"n": 3}, position)


def test_an_applied_offset_and_every_earlier_one_are_replays() -> None:
    row = mark_applied({}, Position("analytics", 5, "e5"))
    assert already_applied(row, Position("analytics", 5, "e5"))
    assert already_applied(row, Position("analytics", 2, "e2"))
    assert not already_applied(row, Position("analytics", 6, "e6"))


def test_a_duplicate_at_a_higher_offset_is_recognised_by_its_id() -> None:
    row = mark_applied({}, Position("analytics", 5, "e5"))
    assert already_applied(row, Position("analytics", 9, "e5"))


def test_offsets_of_different_topics_are_independent() -> None:
    row = mark_applied({}, Position("orders", 10, "o10"))
    assert not already_applied(row, Position("payments", 3, "p3"))
    row = mark_applied(row, Position("payments", 3, "p3"))
    assert row["_applied"]["offsets"] == {"orders": 10, "payments": 3}
    assert already_applied(row, Position("orders", 10, "x"))
    assert not already_applied(row, Position("payments", 4, "p4"))


def test_the_offset_never_goes_back() -> None:
    row = mark_applied({}, Position("orders", 10, "o10"))
    row = mark_applied(row, Position("orders", 4, "o4"))
    assert row["_applied"]["offsets"]["orders"] == 10


def test_the_ids_ring_is_bounded_and_keeps_the_most_recent() -> None:
    row: dict[str, Any] = {}
    for offset in range(3 * RECENT_IDS):
        row = mark_applied(row, Position("analytics", offset, f"e{offset}"))
    ids = row["_applied"]["ids"]
    assert len(ids) == RECENT_IDS
    assert ids == [f"e{offset}" for offset in range(2 * RECENT_IDS, 3 * RECENT_IDS)]
    # An id that fell out of the ring is no longer recognised at a higher offset.
    assert not already_applied(row, Position("analytics", 10 * RECENT_IDS, "e0"))
    assert already_applied(row, Position("analytics", 10 * RECENT_IDS, f"e{3 * RECENT_IDS - 1}"))


def test_mark_applied_copies_and_keeps_the_row() -> None:
    row = {"n": 1, "name": "x"}
    marked = mark_applied(row, Position("analytics", 0, "e0"))
    assert row == {"n": 1, "name": "x"}
    assert marked["n"] == 1 and marked["name"] == "x"
    again = mark_applied(marked, Position("analytics", 1, "e1"))
    assert marked["_applied"]["ids"] == ["e0"]
    assert again["_applied"]["ids"] == ["e0", "e1"]


def test_update_once_passes_the_current_row_and_reports_whether_it_wrote() -> None:
    table: dict[str, Row] = {}
    seen: list[Row | None] = []

    def update(row: Row | None) -> Row:
        seen.append(row)
        return count_event(row)

    assert update_once(table, "k", Position("t", 0, "e0"), update, table_name="test-counter")
    assert not update_once(table, "k", Position("t", 0, "e0"), update, table_name="test-counter")
    assert update_once(table, "k", Position("t", 1, "e1"), update, table_name="test-counter")
    assert seen[0] is None
    assert seen[1] is not None and seen[1]["n"] == 1
    assert len(seen) == 2, "a replay must not call the update at all"
    assert table["k"]["n"] == 2


def test_update_once_counts_skips_under_the_table_name() -> None:
    class NamedTable(dict[str, Row]):
        name = "test-named-table"

    table = NamedTable()
    replays, duplicates = skipped(table.name, "replay"), skipped(table.name, "duplicate")
    update_once(table, "k", Position("t", 0, "e0"), count_event)
    update_once(table, "k", Position("t", 0, "e0"), count_event)  # redelivered
    update_once(table, "k", Position("t", 1, "e0"), count_event)  # appended again
    assert skipped(table.name, "replay") - replays == 1
    assert skipped(table.name, "duplicate") - duplicates == 1


# -- decide_once: the messages of a redelivered event are sent again -------------------------

def _decide(sends: list[Send]) -> Callable[[Row | None], tuple[Row | None, list[Send]]]:
    return lambda row: (count_event(row), sends)


def test_a_redelivered_event_sends_its_messages_again_even_after_later_events() -> None:
    """A later event on the row proves nothing about the producer: the worker may have died
    with both events' messages in its buffer, and the redelivery must send them again."""
    table: dict[str, Row] = {}
    commit = [("inventory", "sku-a", '{"type": "commit_stock"}')]
    notice = [("orders", "o1", '{"type": "order_shipped"}')]
    assert decide_once(table, "o1", Position("orders", 0, "e0"), _decide(commit),
                       keep_sends=RECENT_IDS) == commit
    decide_once(table, "o1", Position("orders", 1, "e1"), _decide([]), keep_sends=RECENT_IDS)
    decide_once(table, "o1", Position("orders", 2, "e2"), _decide(notice), keep_sends=RECENT_IDS)
    assert table["o1"]["n"] == 3
    assert decide_once(table, "o1", Position("orders", 0, "e0"), _decide([])) == commit
    assert decide_once(table, "o1", Position("orders", 1, "e1"), _decide([])) == []
    assert decide_once(table, "o1", Position("orders", 2, "e2"), _decide([])) == notice
    assert table["o1"]["n"] == 3, "a redelivery never decides again"


def test_a_row_keeps_the_messages_of_its_most_recent_sending_events_only() -> None:
    table: dict[str, Row] = {}
    for offset in range(5):
        decide_once(table, "k", Position("t", offset, f"e{offset}"),
                    _decide([("t", "k", f"m{offset}")]), keep_sends=2)
    assert [s["event_id"] for s in table["k"]["_applied"]["sent"]] == ["e3", "e4"]
    assert decide_once(table, "k", Position("t", 2, "e2"), _decide([])) == []
    assert decide_once(table, "k", Position("t", 3, "e3"), _decide([])) == [("t", "k", "m3")]
    # A skipped duplicate (new offset, same id) keeps them all.
    decide_once(table, "k", Position("t", 9, "e4"), _decide([]))
    assert len(table["k"]["_applied"]["sent"]) == 2


def test_an_event_that_sends_nothing_keeps_the_last_sending_events_messages() -> None:
    table: dict[str, Row] = {}
    decide_once(table, "k", Position("t", 0, "e0"), _decide([("t", "k", "m0")]))
    decide_once(table, "k", Position("t", 1, "e1"), _decide([]))
    assert decide_once(table, "k", Position("t", 0, "e0"), _decide([])) == [("t", "k", "m0")]


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_batches_of_updates_end_in_the_rows_one_by_one_updates_give(
    data: st.DataObject,
) -> None:
    """update_many over any cut of the delivery into batches = update_once per event."""
    delivered = deliver_with_crashes(data.draw, data.draw(logs()))
    one_by_one: dict[str, Row] = {}
    for entry in delivered:
        apply(one_by_one, entry)
    batched: dict[str, Row] = {}
    writes = 0

    class Counting(dict[str, Row]):
        def __setitem__(self, key: str, value: Row) -> None:
            nonlocal writes
            writes += 1
            super().__setitem__(key, value)

    table = Counting()
    rest = list(delivered)
    while rest:
        size = data.draw(st.integers(1, max(1, len(rest))))
        batch, rest = rest[:size], rest[size:]
        for key in KEYS:
            mine = [(e.position, count_event) for e in batch if e.key == key]
            if mine:
                assert update_many(table, key, mine, table_name="test-counter") == []
    batched.update(table)
    assert batched == one_by_one
    assert writes <= len(delivered)


def test_an_update_that_fails_is_left_out_and_the_others_apply() -> None:
    def boom(row: Row | None) -> Row:
        raise ValueError("bad")

    table: dict[str, Row] = {}
    failed = update_many(table, "k", [(Position("t", 0, "a"), count_event),
                                      (Position("t", 1, "b"), boom),
                                      (Position("t", 2, "c"), count_event)])
    assert [(index, str(exc)) for index, exc in failed] == [(1, "bad")]
    assert table["k"]["n"] == 2
