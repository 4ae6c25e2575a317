"""Keyed reads answered by the worker that owns the key: Faust's router, made dependable.

Faust's ``table_route`` hashes the key with the producer's partitioner, which needs the
producer to know the changelog topic's partitions. A worker that has not yet written to a
table does not, and Faust then fails the request. This router fetches the topic's metadata
first (a no-op once known) and answers 503 with ``Retry-After`` while partitions are being
reassigned, instead of an error page.
"""

from __future__ import annotations

from typing import Any, cast

from faust.app.router import Router
from faust.types import K
from faust.types.web import Request, Response, Web

from web.errors import ApiError

__all__ = ["ShopRouter", "Unavailable"]


class Unavailable(ApiError):
    """The key's owner is not known right now (a rebalance is under way); retry shortly."""

    status = 503
    code = "unavailable"


class ShopRouter(Router):
    """Faust's router, with producer metadata loaded before hashing a key."""

    async def route_req(self, table_name: str, key: K, web: Web, request: Request) -> Response:
        topic = self._get_table_topic(self._get_table(table_name))
        producer = cast(Any, self.app.producer)._ensure_producer()
        await producer.partitions_for(topic)
        try:
            dest_url = self.key_store(table_name, key)
        except KeyError:
            raise Unavailable(
                f"the owner of this {table_name} key is being reassigned; retry in a second",
                headers={"Retry-After": "1"},
            ) from None
        return await self._route_req(dest_url, web, request)
