"""runtime/tables.OwnWrites: a global table's writer never applies its own older changelog
records over its newer writes, and still ends where the changelog ends."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.tables import OwnWrites

KEYS = (b"a", b"b")

#: One step of a worker and the changelog it reads, as a hypothesis draws them:
#: ("write", key): this worker writes key (sent, not landed); ("land",): the oldest send lands;
#: ("ack",): the producer's callback of the oldest landed send runs; ("other", key): another
#: worker's write of key lands; ("read",): this worker applies the next changelog record.
STEP = st.one_of(
    st.tuples(st.just("write"), st.sampled_from(KEYS)),
    st.tuples(st.just("land")),
    st.tuples(st.just("ack")),
    st.tuples(st.just("other"), st.sampled_from(KEYS)),
    st.tuples(st.just("read")),
)


class World:
    """One worker's copy of a global table, and the changelog it writes and reads."""

    def __init__(self) -> None:
        self.own = OwnWrites()
        self.copy: dict[bytes, str] = {}
        self.log: list[tuple[bytes, str]] = []
        self.unsent: list[tuple[bytes, str]] = []
        self.unacked: list[tuple[bytes, int]] = []
        self.read_to = 0
        self.latest_own: dict[bytes, str] = {}
        self.others: set[bytes] = set()
        self.n = 0

    def step(self, step: tuple[str, ...]) -> None:
        kind = step[0]
        if kind == "write":
            key = step[1].encode() if isinstance(step[1], str) else step[1]
            self.n += 1
            value = f"mine-{self.n}"
            self.copy[key] = self.latest_own[key] = value
            self.own.written(key)
            self.unsent.append((key, value))
        elif kind == "land" and self.unsent:
            key, value = self.unsent.pop(0)
            self.log.append((key, value))
            self.unacked.append((key, len(self.log) - 1))
        elif kind == "ack" and self.unacked:
            key, offset = self.unacked.pop(0)
            later = self.own.sent(key, offset)
            if later is not None:
                self.copy[key] = later
        elif kind == "other":
            key = step[1]
            self.n += 1
            self.log.append((key, f"other-{self.n}"))
            self.others.add(key)
        elif kind == "read" and self.read_to < len(self.log):
            key, value = self.log[self.read_to]
            if self.own.admit(key, self.read_to, value):
                self.copy[key] = value
            self.read_to += 1

    def settle(self) -> None:
        while self.unsent:
            self.step(("land",))
        while self.unacked:
            self.step(("ack",))
        while self.read_to < len(self.log):
            self.step(("read",))


@settings(max_examples=400)
@given(st.lists(STEP, max_size=60))
def test_the_writer_never_sees_its_own_older_value_again(steps: list[tuple[str, ...]]) -> None:
    world = World()
    for step in steps:
        world.step(step)
        for key, value in world.latest_own.items():
            if key not in world.others:
                assert world.copy[key] == value, (key, world.copy[key], value)


@settings(max_examples=400)
@given(st.lists(STEP, max_size=60))
def test_once_everything_is_read_the_copy_is_what_the_changelog_says(
        steps: list[tuple[str, ...]]) -> None:
    world = World()
    for step in steps:
        world.step(step)
    world.settle()
    last = {key: value for key, value in world.log}
    assert world.copy == last


def test_a_record_held_back_during_a_failed_send_is_applied_when_it_fails() -> None:
    own: OwnWrites[str] = OwnWrites()
    own.written(b"a")
    assert not own.admit(b"a", 3, "other"), "held back while the write is in flight"
    assert own.sent(b"a", None) == "other"
    assert own.admit(b"a", 4, "next")


def test_a_record_after_mine_is_applied_and_one_before_is_not() -> None:
    own: OwnWrites[str] = OwnWrites()
    own.written(b"a")
    assert not own.admit(b"a", 9, "older, read before my offset was known")
    assert own.sent(b"a", 10) is None
    assert not own.admit(b"a", 10, "mine")
    assert own.admit(b"a", 5, "caught up: nothing of this worker's is pending any more")
    own.written(b"a")
    assert not own.admit(b"a", 20, "mine, read before its offset was known")
    assert not own.admit(b"a", 21, "another worker's, after mine")
    assert own.sent(b"a", 20) == "another worker's, after mine"
