"""The payment provider ShopStream calls, and the simulated one that stands in for it.

A provider answers a charge or a refund (:class:`Charge`, :class:`Refund`), or fails to answer:
it raises :class:`ProviderUnavailable` or does not answer in time. Both calls are idempotent
by key: the same key never charges or refunds twice, it returns the first answer again.

:class:`SimulatedProvider` keeps a ledger as a real provider's dashboard shows it: every charge
and refund it made, per order, with its idempotency key, amount, outcome, id and the attempts
it saw (:meth:`SimulatedProvider.ledger`). The ledger lives in the memory of the process that
made the calls. Its payment methods (tokens, never card numbers) choose its answers and faults,
each a function of the method and the attempt number of the key, so tests are exact:

``pm_card_ok``
    charged.
``pm_card_declined``, ``pm_card_insufficient_funds``
    declined at once, with that reason.
``pm_card_slow``
    charged after ``slow_seconds``.
``pm_card_declined_late``
    declined (``card_declined``) after ``slow_seconds``.
``pm_card_flaky``
    the first :data:`FLAKY_TRIES` attempts raise :class:`ProviderUnavailable`, the next
    one is charged.
``pm_card_timeout``
    every attempt hangs for ``hang_seconds`` (past any sensible call timeout).
``pm_card_refund_flaky``
    charged; the first :data:`FLAKY_TRIES` attempts of its refund raise, the next refunds.
``pm_card_refund_fails``
    charged; every attempt of its refund raises.

Any other method is declined as ``unknown_payment_method``.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FLAKY_TRIES",
    "PAYMENT_METHODS",
    "Charge",
    "PaymentProvider",
    "ProviderUnavailable",
    "Refund",
    "SimulatedProvider",
]

#: The payment methods the simulated provider knows.
PAYMENT_METHODS = ("pm_card_ok", "pm_card_declined", "pm_card_insufficient_funds",
                   "pm_card_slow", "pm_card_declined_late", "pm_card_flaky", "pm_card_timeout",
                   "pm_card_refund_flaky", "pm_card_refund_fails")

#: How many attempts of a flaky call raise before one succeeds.
FLAKY_TRIES = 2

#: Methods declined at once, with their reasons.
_DECLINED = {"pm_card_declined": "card_declined",
             "pm_card_insufficient_funds": "insufficient_funds"}
#: Methods whose charge succeeds at the first attempt.
_CHARGED = frozenset({"pm_card_ok", "pm_card_refund_flaky", "pm_card_refund_fails"})


@dataclass(frozen=True, slots=True)
class Charge:
    """A provider's answer to a charge: its id if it succeeded, else why not."""

    ok: bool
    charge_id: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Refund:
    """A provider's answer to a refund."""

    ok: bool
    refund_id: str = ""
    reason: str = ""


class ProviderUnavailable(Exception):
    """The provider could not take the call now (a transient fault: the call may be retried)."""


class PaymentProvider(Protocol):
    """What ShopStream needs of a payment provider; both calls must be idempotent by key."""

    async def charge(self, idempotency_key: str, amount_cents: int, method: str, *,
                     order_id: str = "") -> Charge:
        """Charge ``amount_cents`` with ``method``; the same key never charges twice."""
        ...

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int, *,
                     order_id: str = "") -> Refund:
        """Refund ``amount_cents`` of ``charge_id``; the same key never refunds twice."""
        ...

    def ledger(self, order_id: str) -> dict[str, Any]:
        """Return the charges and refunds the provider shows for ``order_id``."""
        ...


class SimulatedProvider:
    """A deterministic provider with a ledger: answers depend on the method and the attempt."""

    def __init__(self, slow_seconds: float = 0.5, hang_seconds: float = 3600.0,
                 capacity: int = 100_000) -> None:
        self.slow_seconds = slow_seconds
        self.hang_seconds = hang_seconds
        #: How many keys the ledger keeps (the oldest go first: a worker runs for weeks).
        self.capacity = capacity
        #: idempotency key -> the charge or refund made (or being tried) under it.
        self._entries: dict[str, dict[str, Any]] = {}

    async def charge(self, idempotency_key: str, amount_cents: int, method: str, *,
                     order_id: str = "") -> Charge:
        """Answer as the method says (see the module); a key already answered answers again."""
        entry = self._entry(idempotency_key, {
            "kind": "charge", "order_id": order_id or idempotency_key,
            "idempotency_key": idempotency_key, "amount_cents": amount_cents,
            "payment_method": method, "status": "processing", "id": "", "reason": "",
            "attempts": 0})
        entry["attempts"] += 1
        if entry["status"] != "processing":
            return Charge(entry["status"] == "succeeded", charge_id=entry["id"],
                          reason=entry["reason"])
        charge = await self._charge_now(idempotency_key, amount_cents, method, entry["attempts"])
        entry.update(status="succeeded" if charge.ok else "failed", id=charge.charge_id,
                     reason=charge.reason)
        return charge

    def _entry(self, key: str, new: dict[str, Any]) -> dict[str, Any]:
        """Return the ledger's entry of ``key``, made from ``new`` if it has none."""
        if key not in self._entries:
            while len(self._entries) >= self.capacity:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = new
        return self._entries[key]

    async def _charge_now(self, key: str, amount_cents: int, method: str,
                          attempt: int) -> Charge:
        if method == "pm_card_timeout":
            await asyncio.sleep(self.hang_seconds)
            raise ProviderUnavailable("the provider did not answer")
        if method == "pm_card_flaky" and attempt <= FLAKY_TRIES:
            raise ProviderUnavailable(f"the provider is unavailable (attempt {attempt})")
        if method in ("pm_card_slow", "pm_card_declined_late"):
            await asyncio.sleep(self.slow_seconds)
        if method == "pm_card_declined_late":
            return Charge(False, reason="card_declined")
        if method in _DECLINED:
            return Charge(False, reason=_DECLINED[method])
        if method not in _CHARGED | {"pm_card_slow", "pm_card_flaky"}:
            return Charge(False, reason="unknown_payment_method")
        if amount_cents < 0:
            return Charge(False, reason="invalid_amount")
        return Charge(True, charge_id="ch_" + _digest(key))

    async def refund(self, idempotency_key: str, charge_id: str, amount_cents: int, *,
                     order_id: str = "") -> Refund:
        """Refund a charge this provider made; its method may make the refund fail."""
        entry = self._entry(idempotency_key, {
            "kind": "refund", "order_id": order_id or idempotency_key.removeprefix("refund:"),
            "idempotency_key": idempotency_key, "amount_cents": amount_cents,
            "charge_id": charge_id, "status": "processing", "id": "", "reason": "",
            "attempts": 0})
        entry["attempts"] += 1
        if entry["status"] != "processing":
            return Refund(entry["status"] == "succeeded", refund_id=entry["id"],
                          reason=entry["reason"])
        refund = self._refund_now(idempotency_key, charge_id, entry["attempts"])
        entry.update(status="succeeded" if refund.ok else "failed", id=refund.refund_id,
                     reason=refund.reason)
        return refund

    def _refund_now(self, key: str, charge_id: str, attempt: int) -> Refund:
        if not charge_id.startswith("ch_"):
            return Refund(False, reason="unknown_charge")
        method = self._method_of(charge_id)
        if method == "pm_card_refund_fails" or (method == "pm_card_refund_flaky"
                                                and attempt <= FLAKY_TRIES):
            raise ProviderUnavailable(f"the refund could not be made (attempt {attempt})")
        return Refund(True, refund_id="re_" + _digest(key))

    def _method_of(self, charge_id: str) -> str:
        for entry in self._entries.values():
            if entry["kind"] == "charge" and entry["id"] == charge_id:
                return str(entry["payment_method"])
        return ""  # a charge made by another process: refunded as any other

    def ledger(self, order_id: str) -> dict[str, Any]:
        """Return the charges and refunds made for ``order_id``, oldest first (copies)."""
        mine = [e for e in self._entries.values() if e["order_id"] == order_id]
        return {"order_id": order_id, **{
            f"{kind}s": [{k: v for k, v in e.items() if k != "kind"}
                         for e in mine if e["kind"] == kind] for kind in ("charge", "refund")}}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:20]
