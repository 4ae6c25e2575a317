"""The table class every ShopStream table uses: string keys as raw UTF-8, like the topics.

Faust serializes a table's ``str`` keys as JSON by default (``"abc"`` with quotes), while the
topics carry raw ``abc``. ``app.table_route`` hashes the changelog's key form to find the
worker that owns a key, so with JSON keys it asks the wrong worker. One key form everywhere
keeps the producer's partition, the row's partition and the routed worker the same.
"""

from __future__ import annotations

from typing import cast

import faust
from faust.tables.recovery import Recovery
from faust.types import AppT, CodecArg, ModelArg

__all__ = ["ShopGlobalTable", "ShopTable", "tables_ready"]


class RawStrKeys:
    """Serialize ``str`` keys as raw UTF-8 bytes (mixed into Faust's table classes)."""

    def _serializer_from_type(self, typ: ModelArg | None) -> CodecArg | None:
        if typ is str:
            return "raw"
        return super()._serializer_from_type(typ)  # type: ignore[misc]


class ShopTable(RawStrKeys, faust.Table):
    """A Faust table whose ``str`` keys are stored and routed as raw UTF-8 bytes."""


class ShopGlobalTable(RawStrKeys, faust.GlobalTable):
    """A Faust global table (every worker has all of it) with raw UTF-8 ``str`` keys."""


def tables_ready(app: AppT) -> bool:
    """Return True once this worker's tables are recovered and no rebalance is under way."""
    recovery = cast(Recovery, app.tables.recovery)  # type: ignore[attr-defined]
    return recovery.completed.is_set() and not app.rebalancing
