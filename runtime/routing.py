"""Who owns a key: Faust's router, made dependable.

Faust's ``table_route`` forwards a request for a key to the worker that owns the key's
partition. Its router as shipped needs the producer to already know the changelog topic
(a worker that has not written to the table fails to find the owner). This router loads the
topic's metadata first, remembers what cannot change (each key's partition, this worker's
own address), and raises :class:`OwnerUnknown` while the owner is not known (a rebalance).

Forwarding a request to the owner, and the 503 answers, are the web layer's
(``web/routing.py``): this module only says who owns a key.
"""

from __future__ import annotations

from typing import Any, cast

from faust.app.router import Router
from faust.exceptions import NotReady
from faust.types import TP, K
from yarl import URL

__all__ = ["OwnerUnknown", "ShopRouter"]


class OwnerUnknown(Exception):
    """The owner of a key is not known right now (its partition is being reassigned)."""


#: How many keys' partitions each router remembers (the oldest is forgotten first).
PARTITION_CACHE_SIZE = 10_000


class ShopRouter(Router):
    """Faust's router, with the changelog topic's metadata loaded first.

    The owner of a key is looked up on every request (ownership moves at rebalances), but
    what cannot change is remembered: each table's changelog topic, this worker's own host
    and port, and each key's partition (a hash of the key over the topic's partitions, whose
    number a topic keeps for its life).
    """

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self._topics: dict[str, tuple[str, Any]] = {}
        self._partitions: dict[tuple[str, K], int] = {}
        self._idents: dict[str, tuple[str, int]] = {}
        self._own: tuple[str, int] | None = None

    async def owner_url(self, table_name: str, key: K) -> URL | None:
        """Return the URL of the worker that owns ``key``, or None if it is this one."""
        owner = await self._owner_text(table_name, key)
        return URL(owner) if owner is not None else None

    async def _owner_text(self, table_name: str, key: K) -> str | None:
        """Return the URL of the worker that owns ``key`` as text, None if it is this one.

        Raise :class:`OwnerUnknown` while the owner is not known.
        """
        known = self._topics.get(table_name)
        if known is None:
            table = self._get_table(table_name)
            known = self._topics[table_name] = (self._get_table_topic(table),
                                                table.changelog_topic)
        topic, changelog = known
        try:
            partition = self._partitions.get((topic, key))
            if partition is None:
                producer = cast(Any, self.app.producer)._ensure_producer()
                if producer._metadata.partitions_for_topic(topic) is None:
                    await producer.partitions_for(topic)
                partition = self.app.producer.key_partition(
                    topic, changelog.prepare_key(key, None)[0]).partition
                if len(self._partitions) >= PARTITION_CACHE_SIZE:
                    del self._partitions[next(iter(self._partitions))]
                self._partitions[(topic, key)] = partition
            owner: str = cast(Any, self._assignor)._tps_url[TP(topic, partition)]
        except (KeyError, NotReady):
            raise OwnerUnknown(f"the owner of this {table_name} key is being reassigned; "
                               "retry in a second") from None
        return None if self._ident(owner) == self._own_ident() else owner

    def partition_owner(self, topic: str, partition: int) -> URL | None:
        """Return the URL of the worker that owns ``topic[partition]``, None if it is this one.

        Raise :class:`OwnerUnknown` while the owner is not known.
        """
        owner = cast(Any, self._assignor)._external_tps_url.get(TP(topic, partition))
        if owner is None:
            raise OwnerUnknown(f"the owner of {topic}[{partition}] is being reassigned; "
                               "retry in a second")
        return None if self._ident(owner) == self._own_ident() else URL(owner)

    def other_workers(self) -> list[URL]:
        """Return the URLs of the other workers of the group (as of the last rebalance)."""
        assignor = cast(Any, self._assignor)
        urls = {*assignor._tps_url.values(), *assignor._external_tps_url.values()}
        return [URL(url) for url in sorted(urls) if self._ident(url) != self._own_ident()]

    def _ident(self, url: str) -> tuple[str, int]:
        ident = self._idents.get(url)
        if ident is None:
            ident = self._idents[url] = self._urlident(URL(url))
        return ident

    def _own_ident(self) -> tuple[str, int]:
        if self._own is None:
            self._own = self._urlident(URL(str(self.app.conf.canonical_url)))
        return self._own
