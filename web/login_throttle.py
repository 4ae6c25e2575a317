"""Throttling failed logins, per account and per address, on the worker that checks them.

A login is checked on the worker that owns the e-mail key, so every attempt on an account
meets the same throttle. After ``free_failures`` failures a key waits 1 s, then 2, 4, ...
up to 15 min before the next attempt; a success clears the account's count.

The counts are bounded: past ``limit`` keys, those whose last failure is older than the
longest lock-out go, and if failures from more keys than that came within it (a spray of
addresses), the keys that failed least recently go too, down to three quarters of ``limit``
(so the pruning is not redone on every failure).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from web.errors import ApiError

__all__ = ["LoginThrottle", "TooManyAttempts"]


class TooManyAttempts(ApiError):
    """Too many failed logins; wait for the time in Retry-After."""

    status = 429
    code = "too_many_requests"


class LoginThrottle:
    """Failed-login counts and lock-outs by key (an account, an address)."""

    def __init__(self, free_failures: int = 5, base_s: float = 1.0, max_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, limit: int = 10_000) -> None:
        self.free_failures, self.base_s, self.max_s = free_failures, base_s, max_s
        self.limit = limit
        self.clock = clock
        self._failures: dict[str, tuple[int, float, float]] = {}  # key: (count, until, last)

    def check(self, keys: Iterable[str]) -> None:
        """Raise TooManyAttempts if any of ``keys`` is locked out now."""
        now = self.clock()
        wait = max((self._failures.get(k, (0, 0.0, 0.0))[1] - now for k in keys), default=0.0)
        if wait > 0:
            raise TooManyAttempts(
                "too many failed logins; try again later",
                headers={"Retry-After": str(max(1, round(wait)))})

    def failed(self, keys: Iterable[str]) -> None:
        """Count a failed login against each of ``keys``."""
        now = self.clock()
        for key in keys:
            count, until, _ = self._failures.get(key, (0, 0.0, now))
            count += 1
            if count > self.free_failures:
                lock = min(self.max_s, self.base_s * 2 ** (count - self.free_failures - 1))
                until = now + lock
            self._failures[key] = (count, until, now)
        if len(self._failures) > self.limit:
            self._prune(now)

    def _prune(self, now: float) -> None:
        kept = {k: v for k, v in self._failures.items() if now - v[2] < self.max_s}
        if len(kept) > self.limit * 3 // 4:
            newest = sorted(kept.items(), key=lambda item: item[1][2])[-(self.limit * 3 // 4):]
            kept = dict(newest)
        self._failures = kept

    def __len__(self) -> int:
        return len(self._failures)

    def succeeded(self, key: str) -> None:
        """Clear the count of ``key`` (the account that just logged in)."""
        self._failures.pop(key, None)
