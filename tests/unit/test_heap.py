"""The heap frozen at start-up: kept out of full collections, and thawed for a rebalance."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from runtime import heap


class Node:
    """An object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_freeze_keeps_the_live_heap_out_of_full_collections() -> None:
    alive = cycle()  # a cycle still referenced from outside (by `keep`)
    keep = alive()
    frozen = heap.freeze()
    assert frozen == gc.get_freeze_count() > 0
    del keep  # the cycle becomes garbage after the freeze
    gc.collect()
    assert alive() is not None, "a frozen cycle is not collected"


def test_collect_all_thaws_and_collects_what_the_freeze_held() -> None:
    alive = cycle()
    keep = alive()
    heap.freeze()
    del keep
    heap.collect_all()
    assert gc.get_freeze_count() == 0
    assert alive() is None


def test_freeze_collects_garbage_first() -> None:
    dead = cycle()  # nothing refers to it any more
    heap.freeze()
    assert dead() is None, "garbage is collected before the heap is frozen, not kept for ever"
