"""The Shop-Position token (models/positions.py) and the applied positions a worker keeps and
waits on (runtime/positions.py)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import runtime.positions
from models.positions import MAX_POSITIONS, BadToken, Written, decode_token, encode_token
from runtime.positions import (
    APPLIERS,
    FOLLOWS,
    GLOBAL_TOPICS,
    AppliedPositions,
    causes_of,
    positions,
    sending,
)
from runtime.tables import note_source_offsets

SECRET = "a-test-secret-of-at-least-32-characters!"
TOPICS = frozenset(APPLIERS)

written = st.builds(Written, st.sampled_from(sorted(TOPICS)), st.integers(0, 999_999),
                    st.integers(0, 10**18 - 1))


@given(st.lists(written, min_size=1, max_size=MAX_POSITIONS,
                unique_by=lambda w: (w.topic, w.partition)))
def test_a_token_names_what_it_was_made_of(sent: list[Written]) -> None:
    token = encode_token(sent, SECRET)
    assert decode_token(token, SECRET, TOPICS) == sorted(sent)


def test_a_token_keeps_the_latest_offset_of_each_partition() -> None:
    token = encode_token([Written("orders", 3, 7), Written("orders", 3, 9),
                          Written("support", 0, 1)], SECRET)
    assert token.count(",") == 1
    assert decode_token(token, SECRET, TOPICS) == [Written("orders", 3, 9),
                                                   Written("support", 0, 1)]


def test_a_token_reads_as_documented() -> None:
    token = encode_token([Written("orders", 3, 1207)], SECRET)
    topic, partition, offset, signature = token.split(":")
    assert (topic, partition, offset) == ("orders", "3", "1207")
    assert len(signature) == 16 and int(signature, 16) >= 0


@pytest.mark.parametrize("header", [
    "", "orders", "orders:3:1207", "orders:3:1207:", "orders:-1:5:0123456789abcdef",
    "orders:03:5:0123456789abcdef", "orders:3:05:0123456789abcdef",
    "orders:3:5:0123456789ABCDEF", "orders:3:5:0123456789abcde", "orders:3:5:0123456789abcdefa",
    "orders:3:99999999999999999999:0123456789abcdef", "orders:3:5:0123456789abcdef,",
    "Orders:3:5:0123456789abcdef", "orders:3:5:01234567\x0089abcdef",
    ",".join(["orders:3:5:0123456789abcdef"] * (MAX_POSITIONS + 1)), "x" * 5000,
])
def test_a_malformed_token_is_refused(header: str) -> None:
    with pytest.raises(BadToken):
        decode_token(header, SECRET, TOPICS)


def test_a_forged_or_foreign_token_is_refused() -> None:
    token = encode_token([Written("orders", 3, 1207)], SECRET)
    with pytest.raises(BadToken, match="not issued"):
        decode_token(token.replace(":1207:", ":1208:"), SECRET, TOPICS)
    with pytest.raises(BadToken, match="not issued"):
        decode_token(token, SECRET + "-another", TOPICS)
    with pytest.raises(BadToken, match="no topic"):
        decode_token(encode_token([Written("dead-letters", 0, 1)], SECRET), SECRET, TOPICS)


def test_a_token_needs_one_to_four_partitions() -> None:
    with pytest.raises(ValueError):
        encode_token([], SECRET)
    with pytest.raises(ValueError):
        encode_token([Written("orders", p, 1) for p in range(MAX_POSITIONS + 1)], SECRET)


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_a_wait_ends_when_the_applier_reaches_the_offset() -> None:
    async def scenario() -> tuple[str, str, str]:
        known = AppliedPositions()
        known.assigned([("orders", 0)])
        known.handled("orders", 0, 4)
        at_once = await known.wait("orders", 0, 4, 0)
        waiting = asyncio.ensure_future(known.wait("orders", 0, 6, 5.0))
        await asyncio.sleep(0)
        known.handled("orders", 0, 5)
        await asyncio.sleep(0)
        assert not waiting.done()
        known.handled("orders", 0, 7)
        return at_once, await waiting, await known.wait("orders", 0, 8, 0.01)

    assert run(scenario()) == ("applied", "applied", "timeout")


def test_a_partition_given_up_ends_its_waits_as_moved() -> None:
    async def scenario() -> tuple[str, str, int | None]:
        known = AppliedPositions()
        known.assigned([("orders", 0), ("orders", 1)])
        known.handled("orders", 1, 3)
        waiting = asyncio.ensure_future(known.wait("orders", 1, 9, 5.0))
        await asyncio.sleep(0)
        known.assigned([("orders", 0)])
        return await waiting, await known.wait("orders", 1, 0, 5.0), known.applied("orders", 1)

    assert run(scenario()) == ("moved", "moved", None)


def test_a_global_topic_is_applied_and_waited_on_by_every_worker() -> None:
    async def scenario() -> str:
        known = AppliedPositions()  # owns nothing of the catalog topic
        waiting = asyncio.ensure_future(known.wait("catalog", 0, 2, 5.0))
        await asyncio.sleep(0)
        known.assigned([])
        known.handled("catalog", 0, 2)
        return await waiting

    assert run(scenario()) == "applied"


def test_a_partition_taken_over_starts_at_its_committed_offset() -> None:
    known = AppliedPositions()
    known.assigned([("orders", 0), ("orders", 1)])
    known.taken_over({("orders", 0): 10, ("orders", 1): None})
    assert known.applied("orders", 0) == 9
    assert known.applied("orders", 1) is None


def test_a_partition_taken_over_is_caught_up_once_it_applied_what_it_held() -> None:
    known = AppliedPositions()
    assert known.caught_up()
    known.assigned([("orders", 0), ("support", 0)])
    assert not known.caught_up()  # the end offsets are not known yet
    known.taken_over({("orders", 0): 5, ("support", 0): 3})
    known.catch_up_to({("orders", 0): 8, ("support", 0): 3})
    assert not known.caught_up()  # orders[0] held 5, 6 and 7 still to be read again
    known.handled("orders", 0, 6)
    assert not known.caught_up()
    known.handled("orders", 0, 7)
    assert known.caught_up()
    known.assigned([("orders", 0), ("support", 0)])  # kept partitions need no catching up
    assert known.caught_up()
    known.assigned([("orders", 0)])
    known.assigned([("orders", 0), ("orders", 5)])
    assert not known.caught_up()
    known.catch_up_to({("orders", 5): 0})  # an empty partition
    assert known.caught_up()


def test_a_global_tables_changelog_advances_its_topic_on_every_worker() -> None:
    before = positions.applied("catalog", 0) or -1
    row = {"sku": "X", "_applied": {"offsets": {"catalog": before + 5}, "ids": []}}
    note_source_offsets("catalog", json.dumps(row).encode())
    note_source_offsets("catalog", b"not json")
    note_source_offsets("catalog", b"[1, 2]")
    note_source_offsets("catalog", json.dumps({"_applied": {"offsets": {"orders": 10**6}}}
                                              ).encode())
    note_source_offsets("catalog", None)
    assert positions.applied("catalog", 0) == before + 5
    revision = (positions.applied("promotions", 0) or -1) + 3
    note_source_offsets("promotions", json.dumps({"code": "X", "revision": revision}).encode())
    assert positions.applied("promotions", 0) == revision


def landed(topic: str, partition: int, offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic=topic, partition=partition, offset=offset)


def sent_to(topic: str, partition: int, offset: int) -> asyncio.Future[SimpleNamespace]:
    future: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
    future.set_result(landed(topic, partition, offset))
    return future


def test_every_followed_hop_is_from_and_to_a_topic_the_api_reads() -> None:
    assert set(FOLLOWS) <= set(APPLIERS)
    assert all(caused <= set(APPLIERS) for caused in FOLLOWS.values())
    # A global topic is applied by every worker, its agent on one: what it sent is unknown
    # to the others, so it follows nothing.
    assert not set(FOLLOWS) & GLOBAL_TOPICS


def test_an_applier_collects_its_sends_to_the_topics_its_topic_follows() -> None:
    async def scenario() -> tuple[list[object], list[object], list[object]]:
        to_users, to_orders = sent_to("users", 1, 5), sent_to("orders", 0, 2)
        with causes_of("user-emails") as claimed:
            sending("users", to_users)
            sending("orders", to_orders)  # not a hop the e-mails follow
        with causes_of(None) as not_applier:
            sending("users", to_users)
        with causes_of("support") as nothing_followed:
            sending("users", to_users)
        sending("users", to_users)  # outside any event: nobody collects it
        return claimed, not_applier, nothing_followed

    claimed, not_applier, nothing_followed = run(scenario())
    assert len(claimed) == 1 and not not_applier and not nothing_followed


def test_what_an_applied_event_caused_is_answered_once_it_landed() -> None:
    async def scenario() -> list[object]:
        known = AppliedPositions()
        known.assigned([("user-emails", 0)])
        later: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        known.handled("user-emails", 0, 7, [later])
        assert known.applied("user-emails", 0) == 7  # applied at once, its cause in flight
        in_flight = await known.caused("user-emails", 0, 7, 0.01)
        waiting = asyncio.ensure_future(known.caused("user-emails", 0, 7, 5.0))
        await asyncio.sleep(0)
        later.set_result(landed("users", 3, 41))
        failed: asyncio.Future[SimpleNamespace] = asyncio.get_running_loop().create_future()
        failed.set_exception(RuntimeError("the producer failed"))
        known.handled("user-emails", 0, 8, [sent_to("users", 1, 2), failed])
        known.handled("user-emails", 0, 9)
        return [in_flight, await waiting, await known.caused("user-emails", 0, 7, 0),
                await known.caused("user-emails", 0, 8, 0.01),
                await known.caused("user-emails", 0, 9, 0)]

    assert run(scenario()) == [None, (("users", 3, 41),), (("users", 3, 41),), None, ()]


def test_causes_are_bounded_and_go_with_their_partition(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.positions, "MAX_CAUSES", 3)

    async def scenario() -> list[object]:
        known = AppliedPositions()
        known.assigned([("orders", 0), ("orders", 1)])
        for offset in range(4):
            known.handled("orders", 0, offset, [sent_to("user-orders", 2, 10 + offset)])
        forgotten = await known.caused("orders", 0, 0, 0)
        kept = await known.caused("orders", 0, 3, 0)
        known.assigned([("orders", 1)])
        return [forgotten, kept, await known.caused("orders", 0, 3, 0)]

    assert run(scenario()) == [(), (("user-orders", 2, 13),), ()]


def test_a_handled_batch_advances_its_appliers_topics_to_their_last_offsets() -> None:
    from agents.batches import note_applied

    def event(topic: str, partition: int, offset: int) -> SimpleNamespace:
        return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                       offset=offset))

    before = positions.applied("user-orders", 5) or -1
    batch = [event("user-orders", 5, before + 3), event("user-orders", 5, before + 2)]
    note_applied(batch, "orders.by-user")  # type: ignore[arg-type]
    note_applied([event("user-orders", 5, before + 9)], "analytics.sessions")  # type: ignore[arg-type]
    assert positions.applied("user-orders", 5) == before + 3
