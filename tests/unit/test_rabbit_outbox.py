"""The durable outbox keeps messages in order across reopening; recent ids forget the oldest."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from rabbit_bridge.consumer import RecentIds
from rabbit_bridge.outbox import Outbox, OutgoingMessage
from rabbit_bridge.publisher import RabbitPublisher
from rabbit_bridge.topology import PROMOTIONS_EXCHANGE


def message(n: int, key: str = "k") -> OutgoingMessage:
    return OutgoingMessage("shop.tasks", key, f"id-{n}", f'{{"n": {n}}}'.encode(), 1.0 + n,
                           {"attempt": n})


def test_messages_come_back_oldest_first_after_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.append([message(n) for n in range(5)])
    outbox.append([message(n) for n in range(5, 8)])
    outbox.close()

    reopened = Outbox(tmp_path / "outbox.sqlite3")
    assert reopened.depth == 8
    stored = reopened.oldest(3)
    assert [s.message for s in stored] == [message(n) for n in range(3)]
    reopened.remove_through(stored[-1].seq)
    assert reopened.depth == 5
    assert [s.message.message_id for s in reopened.oldest(100)] == [
        f"id-{n}" for n in range(3, 8)]
    reopened.close()


def test_an_empty_append_writes_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.append([])
    assert outbox.depth == 0 and outbox.oldest(10) == []
    outbox.close()


@given(st.lists(st.text(min_size=1, max_size=3), max_size=200), st.integers(1, 20))
def test_recent_ids_see_exactly_the_last_ones(ids: list[str], size: int) -> None:
    recent = RecentIds(size)
    window: list[str] = []
    for message_id in ids:
        assert recent.seen(message_id) == (message_id in window)
        if message_id in window:
            window.remove(message_id)
        window.append(message_id)
        window = window[-size:]


def test_a_forgotten_id_is_new_again() -> None:
    recent = RecentIds()
    assert not recent.seen("a")
    recent.forget("a")
    assert not recent.seen("a")
    assert recent.seen("a")
    assert not recent.seen(None)


class NoRabbit:
    """A RabbitMQ connection that is never up."""

    is_connected = False
    connection = None


async def test_a_durable_message_is_in_the_outbox_file_when_publish_returns(
        tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    publisher = RabbitPublisher(NoRabbit(), path)  # type: ignore[arg-type]
    await publisher.on_start()
    try:
        mid = publisher.publish(PROMOTIONS_EXCHANGE, "promotion.redeemed", {"code": "TEN"},
                                message_id="promotion.redeemed:TEN:e1", durable=True)
        publisher.publish(PROMOTIONS_EXCHANGE, "promotion.created", {"code": "X"})
        # What a kill -9 at this point leaves on disk: the durable message, not the other.
        on_disk = Outbox(path)
        stored = on_disk.oldest(10)
        on_disk.close()
        assert [s.message.message_id for s in stored] == [mid]
        assert publisher.outbox_depth == 1 and publisher.pending == 1
    finally:
        await publisher.on_stop()
