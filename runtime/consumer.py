"""Faust's aiokafka consumer, with four guards so that an offset is committed only once
its event was handled.

Faust commits, per partition, the run of acknowledged offsets that follows the committed one.
Four ways it gets that wrong around a rebalance, each of which lost orders in the crash test
(an order placed during a failover answered 404 for good):

1. *Skipping ahead* (``getmany``). After a rebalance Faust resumes the flow and the
   partitions *before* it seeks them back to their committed offsets
   (``Recovery.on_recovery_completed``), and aiokafka's seek asks for each partition's
   committed offset in turn, so records flow while the seek goes on; when it ends it sets
   every read offset back. The next record is then "ahead", and Faust's drain loop takes the
   offsets between as a gap (meant for compacted topics): acknowledged, handled or not.
   A record ahead of its partition's read
   offset is not handed over here: the partition is sought back, so the records between come
   (again) in order. What was already handed over comes a second time, which every state
   change tolerates (tables/replay.py). A partition that comes back ahead of the same offset
   SEEK_BACK_LIMIT times has a real gap (a compacted or transactional topic, which ShopStream
   does not use, or records deleted by retention): it is let through, with a warning.
   The read offset is the last offset handed over; Faust's seek sets it to the committed
   offset, the *next* to read, so a record right after an unread committed offset passed
   unnoticed. :meth:`ShopConsumer.perform_seek` keeps the meaning (committed - 1).
2. *Counting a stale acknowledgement* (``ack``). A message fetched before a rebalance that
   enters a stream after it is skipped by Faust (its generation is not the consumer's) *and
   acknowledged*, and so is one whose handler finished after the rebalance. Either way its
   offset counted as handled in the new generation, whose copy of the event may still wait
   in a buffer: committed, then dropped at the next rebalance. Here an acknowledgement from
   another generation releases the message but is not counted (its partition's owner reads it
   again from the committed offset).
3. *Committing past the head* (``_new_offset``). Faust commits past the committed offset when
   the acknowledged run starts one after it (``min(acked) - committed > 1`` is its test:
   faust-streaming issue #606), and past offset 0 always. Here the run must start at the
   committed offset itself, or at an offset the drain loop took as a gap.

4. *Emptied buffers* (``resume_flow``). Every time Faust resumes the flow it first empties
   every stream's buffer (``FlowControlEvent.resume`` clears the queues), and after a
   rebalance it does so right after its seek, while the stream partitions already flowed:
   what was handed over meanwhile is gone unhandled, and the read offsets are past it. A
   partition with a committed offset lost the record at it (the next one is not "ahead");
   one never committed lost everything handed over (780 orders in one crash-test run: the
   killed worker had never committed its ``orders`` partitions). Here a flow resumed after
   this generation's seek makes the partitions be read again from their committed offsets
   (never committed: from their first offset) before anything more is handed over.
   Only the stream partitions are read again, and only when the flow resumes for them: the
   restore of the tables also resumes the flow, for the changelogs alone (the streams stay
   paused), and a seek of this generation may come before it (Faust seeks whenever a fetch
   returns while the flow is stopped). The records of a batch that are not read again
   (changelogs, standbys, global tables) are still handed over: dropping them left their
   positions past records never applied, and a survivor of a kill -9 restored its tables
   for ever, answering 503 until the next rebalance.

``shop_consumer_records_ahead_total``, ``shop_consumer_stale_acks_total``,
``shop_consumer_commits_withheld_total`` and ``shop_consumer_read_again_total`` count each
guard at work.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from functools import cached_property

from aiokafka.errors import IllegalStateError
from aiokafka.structs import TopicPartition
from faust.transport.consumer import ensure_TP
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from prometheus_client import Counter

from runtime.positions import positions

__all__ = [
    "COMMITS_WITHHELD",
    "OUT_OF_ORDER",
    "READ_AGAIN",
    "SEEK_BACK_LIMIT",
    "STALE_ACKS",
    "ShopConsumer",
    "committable_run",
    "is_ahead",
    "last_read",
]

log = logging.getLogger(__name__)

#: Times a partition is sought back to the same offset before a gap there is taken as real.
SEEK_BACK_LIMIT = 3
#: Tries to learn the end offsets of the partitions taken over (runtime/positions.py).
END_OFFSET_TRIES = 3
#: Seek-backs remembered (partition and offset) before the memory is cleared.
REMEMBERED = 10_000

OUT_OF_ORDER = Counter(
    "shop_consumer_records_ahead_total",
    "Records that came ahead of their partition's next offset: 'sought_back' (the partition "
    "is read again from that offset) or 'gap' (let through as Faust does: the offsets "
    "between are taken as handled)",
    ["outcome"],
)
STALE_ACKS = Counter(
    "shop_consumer_stale_acks_total",
    "Acknowledgements of messages fetched in an earlier group generation, not counted as "
    "handled (the partition's owner reads them again from the committed offset)",
)
READ_AGAIN = Counter(
    "shop_consumer_read_again_total",
    "Times the stream partitions were read again from their committed offsets because "
    "Faust emptied the streams' buffers as the flow resumed after a rebalance",
)
COMMITS_WITHHELD = Counter(
    "shop_consumer_commits_withheld_total",
    "Commits held back because the partition's committed offset itself was not handled yet "
    "while later offsets were (Faust would have committed past it)",
)


def is_ahead(offset: int, read_offset: int | None) -> bool:
    """Return True if a record at ``offset`` would leave offsets unread after ``read_offset``
    (the last offset handed over, or the committed offset just sought to)."""
    return read_offset is not None and offset > read_offset + 1


def last_read(committed: int | None) -> int | None:
    """Return the read offset (the last offset handed over) of a partition sought to its
    ``committed`` offset (the next to read); None if nothing before it was read."""
    return committed - 1 if committed is not None and committed > 0 else None


def committable_run(acked: Sequence[int], committed: int | None) -> int:
    """Return how many of the sorted, distinct offsets ``acked`` (none below ``committed``)
    may be committed: the run of consecutive offsets that begins at ``committed``, every
    offset before which is done. Without a committed offset the run begins at the first
    acknowledged offset, as in Faust (a partition never committed has no known head)."""
    if not acked or (committed is not None and acked[0] != committed):
        return 0
    run = 1
    while run < len(acked) and acked[run] == acked[run - 1] + 1:
        run += 1
    return run


class ShopConsumer(Consumer):
    """Faust's aiokafka consumer that seeks back instead of skipping ahead."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._sought_back: dict[tuple[TP, int], int] = {}
        self._withheld_at: dict[TP, int] = {}  # the head each partition's commit waits for
        self._stale_logged: int | None = None  # the generation a stale ack was logged in
        self._sought_in: int | None = None  # the generation perform_seek last ran in
        self._read_again = False  # the buffers were emptied: read from the committed offsets
        self._note_ends: asyncio.Future[None] | None = None  # see _note_ends_of_taken_over
        self._sought: Mapping[TP, int | None] = {}  # the committed offsets of the last seek

    async def perform_seek(self) -> None:
        """Faust's seek of every partition to its committed offset, leaving each read offset
        at the offset before it (what the drain loop and :func:`is_ahead` take a read
        offset to be) and keeping a committed offset of 0 (Faust forgets it)."""
        committed = {ensure_TP(tp): offset
                     for tp, offset in (await self.seek_to_committed()).items()}
        self._read_offset.update({tp: last_read(offset) for tp, offset in committed.items()})
        self._committed_offset.update({tp: offset for tp, offset in committed.items()
                                       if offset is not None and offset >= 0})
        self._sought_in = self.app.consumer_generation_id
        self._sought = committed

    async def _note_ends_of_taken_over(self) -> None:
        """Tell the positions how far each partition taken over must be applied to be caught
        up (its end offset now); after failed tries, that it is (never 503 for ever)."""
        for attempt in range(END_OFFSET_TRIES):
            tps = [TP(topic, partition) for topic, partition in positions.ends_unknown()]
            if not tps:
                return
            try:
                ends = await self.highwaters(*tps)
            except Exception as exc:
                log.warning("consumer: end offsets of %d partitions taken over: %s: %s "
                            "(try %d)", len(tps), type(exc).__name__, exc, attempt + 1)
                await asyncio.sleep(1.0)
                continue
            positions.catch_up_to({(tp.topic, tp.partition): end for tp, end in ends.items()})
        positions.catch_up_to({tp: 0 for tp in positions.ends_unknown()})

    def resume_flow(self) -> None:
        """Faust's resume of the flow, which always follows ``app.flow_control.resume()``,
        which empties every stream's buffer. Once the partitions were sought in this
        generation, what was handed over meanwhile is gone unhandled, with the read offsets
        past it: the partitions are read again from their committed offsets before anything
        more is handed over (see :meth:`getmany`)."""
        super().resume_flow()
        if self.app.in_recovery:  # the restore's: only the changelogs flow, nothing to read
            return  # again, and the tables are not restored yet (no position to note)
        if self._sought_in is not None and self._sought_in == self.app.consumer_generation_id:
            self._read_again = True
            self._note_positions()

    def _note_positions(self) -> None:
        """Recovery is over and the partitions were sought: what came before each committed
        offset is in the tables (runtime/positions.py); learn in the background how far each
        partition taken over must be applied to be caught up (once at a time: each try opens
        connections, and Faust seeks again and again while the flow is paused)."""
        positions.taken_over({(tp.topic, tp.partition): offset
                              for tp, offset in self._sought.items()})
        if positions.ends_unknown() and (self._note_ends is None or self._note_ends.done()):
            self._note_ends = asyncio.ensure_future(self._note_ends_of_taken_over())

    async def _read_again_from_committed(self) -> set[TP]:
        """Seek every assigned stream partition to its committed offset (never committed: to
        its first offset) and set its read offset to the offset before; return the
        partitions sought (the changelogs and the topics without acknowledgements are not)."""
        self._read_again = False
        is_changelog = self._is_changelog_tp
        acks_enabled_for = self.app.topics.acks_enabled_for
        offsets = {tp: self._committed_offset[tp] for tp in self.assignment()
                   if acks_enabled_for(tp.topic) and not is_changelog(tp)}
        if not offsets:
            return set()
        firsts = await self._thread.call_thread(self._seek_all_in_thread, offsets)
        # Nothing comes before a partition's first offset: it is the head a commit starts at.
        self._committed_offset.update(firsts)
        for tp, offset in {**offsets, **firsts}.items():
            self._read_offset[tp] = last_read(offset)
        READ_AGAIN.inc()
        log.info("consumer: the streams' buffers were emptied as the flow resumed; reading "
                 "%d partitions again from their committed offsets", len(offsets))
        return set(offsets)

    async def _seek_all_in_thread(self, offsets: Mapping[TP, int | None]) -> dict[TP, int]:
        """Seek each partition to its offset, or to its first when it has none, and return
        those first offsets (called in the consumer's thread, which owns aiokafka)."""
        consumer = self._thread._ensure_consumer()
        first: list[TopicPartition] = []
        for tp, offset in offsets.items():
            if offset:
                with contextlib.suppress(IllegalStateError):  # no longer assigned
                    consumer.seek(tp, offset)
            elif self.app.conf.consumer_auto_offset_reset == "earliest":
                first.append(TopicPartition(tp.topic, tp.partition))
        if first:  # to the offset itself, not by a reset: a partition awaiting a reset has
            # no position, which Faust's livelock check asserts (and crashes the consumer)
            beginnings = await consumer.beginning_offsets(first)
            for tp, offset in beginnings.items():
                with contextlib.suppress(IllegalStateError):
                    consumer.seek(tp, offset)
            return {TP(tp.topic, tp.partition): offset for tp, offset in beginnings.items()}
        return {}

    async def seek(self, partition: TP, offset: int) -> None:
        """Faust's seek, leaving the read offset at the offset before ``offset``."""
        await super().seek(partition, offset)
        self._read_offset[ensure_TP(partition)] = last_read(offset)

    def ack(self, message: Message) -> bool:
        """Faust's acknowledgement, not counted for a message of an earlier generation."""
        if message.generation_id == self.app.consumer_generation_id:
            return bool(super().ack(message))
        with ack_lock:
            if not message.acked:
                message.acked = True
                self._unacked_messages.discard(message)
                STALE_ACKS.inc()
                if self._stale_logged != self.app.consumer_generation_id:
                    self._stale_logged = self.app.consumer_generation_id
                    log.info("consumer: not counting the acknowledgement of %s[%s]@%s, fetched "
                             "in generation %s (now %s), nor any other of that generation",
                             message.topic, message.partition, message.offset,
                             message.generation_id, self.app.consumer_generation_id)
        return False

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for ``tp``: one past the run of handled offsets (or gaps the
        drain loop let through) that begins at the committed offset; None if none does."""
        acked = self._acked[tp]
        if not acked:
            return None
        index = self._acked_index[tp]
        gaps = self._gap[tp]
        if gaps:  # gap offsets up to the highest acknowledged one count as acknowledged
            end = max(acked) + 1
            for interval in gaps.overlap(0, end):
                acked.extend(o for o in range(interval.begin, interval.end) if o not in index)
                index.update(range(interval.begin, interval.end))
                end = max(end, interval.end)
            gaps.chop(0, end)
        acked.sort()
        committed = self._committed_offset[tp]
        if committed is not None and acked[0] < committed:  # acknowledged after a commit
            done = acked[:bisect.bisect_left(acked, committed)]
            del acked[:len(done)]
            index.difference_update(done)
        run = committable_run(acked, committed)
        if not run:
            if acked and committed is not None:
                self._withhold(tp, committed, acked[0])
            return None
        batch = acked[:run]
        del acked[:run]
        index.difference_update(batch)
        self._withheld_at.pop(tp, None)
        return batch[-1] + 1

    async def _commit_offsets(self, offsets: Mapping[TP, int],
                              start_new_transaction: bool = True) -> bool:
        """Faust's commit, logged per partition (from, to) with SHOP_LOG_COMMITS=on."""
        before = {tp: self._committed_offset[tp] for tp in offsets} if self._log_commits else {}
        committed = bool(await super()._commit_offsets(
            offsets, start_new_transaction=start_new_transaction))
        if before:
            log.info("consumer: committed in generation %s: %s (%s)",
                     self.app.consumer_generation_id,
                     ", ".join(f"{tp.topic}[{tp.partition}] {before[tp]}->{offset}"
                               for tp, offset in sorted(offsets.items())),
                     "done" if committed else "not done")
        return committed

    @cached_property
    def _log_commits(self) -> bool:
        settings = getattr(self.app, "settings", None)
        return settings is not None and settings.log_commits == "on"

    def _withhold(self, tp: TP, committed: int, first_acked: int) -> None:
        COMMITS_WITHHELD.inc()
        if self._withheld_at.get(tp) != committed:
            self._withheld_at[tp] = committed
            log.info("consumer: %s[%s] commit waits for offset %s (handled from %s on)",
                     tp.topic, tp.partition, committed, first_acked)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Take the offsets from ``offset_from`` up to, not including, ``offset_to`` (the
        record being handed over, which is acknowledged when handled) as a gap. Faust's
        version also takes ``offset_to`` and never the committed offset itself."""
        committed = self._committed_offset[tp]
        if committed is not None:
            offset_from = max(offset_from, committed)
        if offset_from < offset_to:
            gaps = self._gap[tp]
            gaps.addi(offset_from, offset_to)
            await asyncio.sleep(0)
            gaps.merge_overlaps()

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:  # noqa: ASYNC109
        """Faust's batch of records, without those ahead of their partition's read offset
        (checked as Faust's drain loop checks it, right after this yields), nor those of
        partitions sought back or read again meanwhile."""
        if self._read_again:
            await self._read_again_from_committed()
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        sought: set[TP] = set()
        async for tp, message in super().getmany(timeout):
            if self._read_again:  # the flow resumed meanwhile: the rest of this batch of the
                # partitions read again is from before; that of the others (changelogs) is not
                sought |= await self._read_again_from_committed()
            if tp in sought:
                continue  # read again from where the partition was sought to
            last = read_offset.get(tp)
            if (is_ahead(message.offset, last) and acks_enabled_for(message.topic)
                    and await self._seek_back(tp, message.offset, last)):
                sought.add(tp)
                continue
            yield tp, message

    async def _seek_back(self, tp: TP, offset: int, last: int | None) -> bool:
        """Seek ``tp`` back to the offset after ``last``; return False if its gap is to be
        let through."""
        assert last is not None
        key = (tp, last)
        tries = self._sought_back.get(key, 0)
        if tries >= SEEK_BACK_LIMIT:
            OUT_OF_ORDER.labels("gap").inc()
            log.warning("consumer: %s[%s] still comes at %s after %d seeks back to %s: "
                        "taking the offsets between as a gap", tp.topic, tp.partition,
                        offset, tries, last)
            return False
        if len(self._sought_back) >= REMEMBERED:
            self._sought_back.clear()
        self._sought_back[key] = tries + 1
        OUT_OF_ORDER.labels("sought_back").inc()
        log.info("consumer: %s[%s]@%s came ahead of read offset %s: reading the partition "
                 "again from %s", tp.topic, tp.partition, offset, last, last + 1)
        # no longer assigned: not sought, and the record is not ours to hand over
        await self._thread.call_thread(self._seek_all_in_thread, {tp: last + 1})
        return True
