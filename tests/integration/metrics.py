"""A worker's ``/metrics`` read by the crash tests: proof that a kill hit uncommitted work.

A crash test asserts that the survivor took the dead worker's partitions over
(``shop_partitions_taken_over_total``, runtime/rebalance.py) and that its replay guard skipped
the events the dead worker had processed but not committed (``shop_replays_skipped_total``,
tables/replay.py), and arranges both: the victim commits rarely (``SHOP_COMMIT_INTERVAL``) and
is killed only once it has written rows (:func:`kill_once_working`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from scripts.devstack import Worker

__all__ = ["VICTIM_COMMIT_INTERVAL", "WRITES_OUT_S", "Takeover", "kill_once_working",
           "metrics_of", "sample", "samples_by"]

#: The victim's commit interval (SHOP_COMMIT_INTERVAL, seconds): far longer than a crash test
#: runs before its kill, so that nothing the victim processed is committed when it dies (a
#: rebalance commits too: the tests kill after the group has settled).
VICTIM_COMMIT_INTERVAL = "60"
#: How long the victim goes on after its first rows before the kill: its table writes reach
#: the changelogs, so the survivor restores rows that already hold the events it reads again.
WRITES_OUT_S = 0.5


async def metrics_of(http: aiohttp.ClientSession, url: str) -> str:
    """Return the worker's /metrics text ("" while it does not answer)."""
    try:
        async with http.get(f"{url}/metrics") as response:
            return await response.text() if response.status == 200 else ""
    except (aiohttp.ClientError, TimeoutError, OSError):
        return ""


def samples_by(text: str, name: str, label: str, **labels: str) -> dict[str, float]:
    """Return the samples ``name`` matching ``labels`` of /metrics ``text``, by ``label``."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for one in family.samples:
            if one.name == name and all(one.labels.get(k) == v for k, v in labels.items()):
                key = one.labels.get(label, "")
                found[key] = found.get(key, 0.0) + one.value
    return found


def sample(text: str, name: str, **labels: str) -> float:
    """Return the sum of the samples ``name`` matching ``labels`` (0 if there is none)."""
    return sum(samples_by(text, name, "", **labels).values())


@dataclass(frozen=True)
class Takeover:
    """A survivor's partitions taken over (of ``topic``) and replays skipped (per table)."""

    topic: str
    taken_over: float
    skipped: dict[str, float]

    @classmethod
    async def read(cls, http: aiohttp.ClientSession, url: str, topic: str) -> Takeover:
        text = await metrics_of(http, url)
        assert text, f"{url}/metrics did not answer"
        return cls(topic, sample(text, "shop_partitions_taken_over_total", topic=topic),
                   samples_by(text, "shop_replays_skipped_total", "table", reason="replay"))

    @classmethod
    async def after(cls, http: aiohttp.ClientSession, url: str, before: Takeover,
                    within: float = 60.0) -> Takeover:
        """Wait until the worker at ``url`` has taken partitions of ``before.topic`` over and
        skipped replays since ``before``; return what it did since (fail after ``within``
        seconds)."""
        deadline = time.monotonic() + within
        done = Takeover(before.topic, 0.0, {})
        while not (done.taken_over > 0 and done.skipped):
            assert time.monotonic() < deadline, (
                f"{url} has not taken {before.topic} partitions over and skipped replays "
                f"within {within:.0f} s: {done.describe()}")
            await asyncio.sleep(0.2)
            text = await metrics_of(http, url)
            if text:
                done = cls(before.topic,
                           sample(text, "shop_partitions_taken_over_total", topic=before.topic),
                           samples_by(text, "shop_replays_skipped_total", "table",
                                      reason="replay")).since(before)
        return done

    def since(self, before: Takeover) -> Takeover:
        """Return what happened between ``before`` and this reading."""
        return Takeover(self.topic, self.taken_over - before.taken_over,
                        {table: n - before.skipped.get(table, 0.0)
                         for table, n in self.skipped.items()
                         if n > before.skipped.get(table, 0.0)})

    def describe(self) -> str:
        skipped = ", ".join(f"{table} {n:.0f}" for table, n in sorted(self.skipped.items()))
        return (f"took over {self.taken_over:.0f} {self.topic} partitions; replays skipped: "
                f"{skipped or 'none'}")


async def kill_once_working(http: aiohttp.ClientSession, victim: Worker,
                            working: Callable[[str], float], *, within: float = 120.0,
                            before_kill: Callable[[], Awaitable[None]] | None = None,
                            ) -> float:
    """Kill ``victim`` (SIGKILL) once ``working(its /metrics)`` shows rows written (> 0),
    WRITES_OUT_S after reading it; return that reading (what it had written by then, which
    has reached the changelogs when it dies).

    ``before_kill`` runs right before the kill (to read the survivor's metrics)."""
    deadline = time.monotonic() + within  # generous: a loaded machine starts slowly
    while not (done := working(await metrics_of(http, victim.url))):
        assert time.monotonic() < deadline, f"{victim.name} wrote nothing in {within:.0f} s"
        await asyncio.sleep(0.02)
    await asyncio.sleep(WRITES_OUT_S)
    if before_kill is not None:
        await before_kill()
    victim.kill()
    return done
