"""The ``Shop-Position`` token: where a write landed, as a client may send it back.

A write that the API could not show applied in time answers 202 with a token naming the
write's topic, partition and offset. A request that carries the token back is answered only
once the partition's owner has applied at least that offset (web/positions.py).

The format, one position::

    <topic>:<partition>:<offset>:<signature>      e.g.  orders:3:1207:5be1f02c9a4d7e61

``topic`` is a topic of the shop, ``partition`` and ``offset`` decimal integers without
leading zeros, and ``signature`` the first 16 hex digits of the HMAC-SHA256 of
``topic:partition:offset`` with the worker's secret (``SHOP_JWT_SECRET``): a client cannot
make a worker wait for an offset no write produced. A header holds at most
:data:`MAX_POSITIONS` positions separated by commas (a write can land on two topics). Anything
else is refused whole: :class:`BadToken`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass

__all__ = ["MAX_POSITIONS", "BadToken", "Written", "decode_token", "encode_token"]

#: The most positions one header may carry.
MAX_POSITIONS = 4
_SIGNATURE_HEX = 16
_ONE = re.compile(r"([a-z][a-z0-9._-]{0,99}):(0|[1-9][0-9]{0,5}):(0|[1-9][0-9]{0,17}):"
                  rf"([0-9a-f]{{{_SIGNATURE_HEX}}})")


class BadToken(ValueError):
    """A ``Shop-Position`` header that is malformed, names no topic of the shop, or is forged."""


@dataclass(frozen=True, slots=True, order=True)
class Written:
    """Where a write landed: its topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    @property
    def text(self) -> str:
        """The position without its signature."""
        return f"{self.topic}:{self.partition}:{self.offset}"


def _signature(position: Written, secret: str) -> str:
    digest = hmac.new(secret.encode(), position.text.encode(), hashlib.sha256).hexdigest()
    return digest[:_SIGNATURE_HEX]


def encode_token(positions: Iterable[Written], secret: str) -> str:
    """Return the header value naming ``positions`` (the latest of each partition)."""
    latest: dict[tuple[str, int], Written] = {}
    for position in positions:
        known = latest.get((position.topic, position.partition))
        if known is None or known.offset < position.offset:
            latest[(position.topic, position.partition)] = position
    if not latest or len(latest) > MAX_POSITIONS:
        raise ValueError(f"a token names 1 to {MAX_POSITIONS} partitions, not {len(latest)}")
    return ",".join(f"{p.text}:{_signature(p, secret)}" for p in sorted(latest.values()))


def decode_token(header: str, secret: str, topics: Collection[str]) -> list[Written]:
    """Return the positions of a ``Shop-Position`` header, or raise :class:`BadToken`.

    ``topics`` are the topics a token may name.
    """
    parts = header.split(",")
    if len(header) > 1024 or len(parts) > MAX_POSITIONS:
        raise BadToken(f"Shop-Position names at most {MAX_POSITIONS} positions")
    found = []
    for part in parts:
        match = _ONE.fullmatch(part.strip())
        if match is None:
            raise BadToken("Shop-Position is not topic:partition:offset:signature")
        topic, partition, offset, signature = match.groups()
        if topic not in topics:
            raise BadToken(f"Shop-Position names no topic of this shop ({topic!r})")
        position = Written(topic, int(partition), int(offset))
        if not hmac.compare_digest(signature, _signature(position, secret)):
            raise BadToken("Shop-Position was not issued by this shop")
        found.append(position)
    return found
