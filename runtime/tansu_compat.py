"""Compatibility with the Tansu dev broker: true end offsets, and a short fetch wait.

Only used when ``SHOP_KAFKA_COMPAT=tansu`` (the launcher and the test fixtures set it); never
against Apache Kafka.

The bug: Tansu answers ListOffsets(LATEST) with the first offset of the partition's last
stored batch + 1, not the last offset + 1. Two batches [0 1][2 3] give 3 where Kafka says 4.
Faust takes that answer as a changelog's highwater, so a rebalance under load crashes the
worker (``ConsistencyError ... higher than the last offset in that topic (highwater)``) and a
table restored from its changelog stops one batch short and loses the last updates.

The fix: after asking the broker, read the last batch of each non-empty partition with a
short-lived consumer (no group, no commits) from the reported offset - 1, the first offset of
that batch, and answer the last offset seen + 1. It costs one fetch per partition at the
start of a recovery, not per event.

The fetch wait: see TansuConsumerThread below.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, server_list
from faust.types import TP
from faust.types.transports import ConsumerT

from runtime.consumer import ShopConsumer
from runtime.transport import ShopTransport

__all__ = ["TansuTransport", "true_end_offsets"]

#: How long to wait for the last batches before saying so in the log, and before giving up
#: and trusting the broker's answer (which loses the rest of a last batch from a restored
#: table, so it is worth a long wait: a loaded machine can take seconds to answer a fetch).
FETCH_WARN_S = 5.0
FETCH_TIMEOUT_S = 60.0  # under Faust's own limit on it, broker_request_timeout (90 s)

log = logging.getLogger(__name__)


async def true_end_offsets(
    bootstrap_servers: str | Sequence[str], reported: Mapping[TP, int | None]
) -> dict[TP, int | None]:
    """Return the real end offset (last offset + 1) of each partition Tansu ``reported``."""
    corrected: dict[TP, int | None] = dict(reported)
    to_read = {tp: end for tp, end in reported.items() if end}  # empty partitions are right
    if not to_read:
        return corrected
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        partitions = {TopicPartition(tp.topic, tp.partition): tp for tp in to_read}
        consumer.assign(list(partitions))
        for ktp, tp in partitions.items():
            consumer.seek(ktp, to_read[tp] - 1)  # first offset of the last batch
        waiting = set(partitions)
        began = time.monotonic()
        warn_at = began + FETCH_WARN_S
        while waiting and time.monotonic() < began + FETCH_TIMEOUT_S:
            batches = await consumer.getmany(*waiting, timeout_ms=200)
            for ktp, records in batches.items():
                if records:
                    tp = partitions[ktp]
                    corrected[tp] = max(cast(int, corrected[tp]), records[-1].offset + 1)
                    waiting.discard(ktp)
            if waiting and time.monotonic() > warn_at:
                warn_at += FETCH_WARN_S
                log.warning("Tansu end offsets: still reading the last batch of %d partitions "
                            "after %.0f s (%s)", len(waiting), time.monotonic() - began,
                            ", ".join(sorted(f"{t.topic}[{t.partition}]" for t in waiting)[:5]))
        if waiting:
            log.error("Tansu end offsets: gave up after %.0f s on %s; a table restored from "
                      "them may miss its last updates", FETCH_TIMEOUT_S,
                      ", ".join(sorted(f"{t.topic}[{t.partition}]" for t in waiting)))
    finally:
        await consumer.stop()
    return corrected


class TansuConsumerThread(AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread with Tansu's end offsets corrected."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # How long a fetch may wait for data (SHOP_TANSU_FETCH_WAIT). Tansu answers an empty
        # fetch only when this runs out, even if data arrives meanwhile, so it is the delay of
        # every hop of a saga while the shop is quiet. Faust asks for 1,500 ms (a 3-hop order
        # then took 1.7 s). Measured here, idle, per 10 s: 10 ms -> worker 1.4 s + Tansu 3.0 s
        # of CPU (order p50 83 ms at 20/s); 50 ms -> 0.4 + 1.35 s; 100 ms -> 0.2 + 1.2 s (order
        # p50 ~275 ms). 50 ms, the default, is the trade. Read when the consumer starts.
        wait_s = transport.app.settings.tansu_fetch_wait
        consumer._fetch_max_wait_ms = round(wait_s * 1000)
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        reported = await super()._highwaters(partitions)
        transport = cast(Any, self.transport)
        servers = server_list(transport.url, transport.default_port)
        return cast(Mapping[TP, int], await true_end_offsets(servers, reported))


class TansuConsumer(ShopConsumer):
    """Faust's aiokafka consumer using :class:`TansuConsumerThread`."""

    def _new_consumer_thread(self) -> TansuConsumerThread:
        return TansuConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TansuTransport(ShopTransport):
    """The shop's transport (runtime/transport.py) for the Tansu broker."""

    Consumer: ClassVar[type[ConsumerT]] = TansuConsumer
