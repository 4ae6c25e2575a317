"""Failed logins lock a key out for 1 s, 2 s, 4 s ... after the free ones; success clears."""

from __future__ import annotations

import pytest

from web.login_throttle import LoginThrottle, TooManyAttempts


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_past_the_free_ones_lock_out_for_doubling_times() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=3, base_s=1.0, max_s=8.0, clock=clock)
    keys = ("account:a", "address:1.2.3.4")
    for _ in range(3):
        throttle.check(keys)
        throttle.failed(keys)
    throttle.check(keys)  # the free failures lock nothing
    waits = []
    for _ in range(5):
        throttle.failed(keys)
        with pytest.raises(TooManyAttempts) as caught:
            throttle.check(keys)
        waits.append(int(caught.value.headers["Retry-After"]))
        clock.now += 100
    assert waits == [1, 2, 4, 8, 8]
    throttle.check(("account:b", "address:5.6.7.8"))  # others are not affected


def test_a_success_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    throttle = LoginThrottle(free_failures=1, clock=clock)
    throttle.failed(("account:a", "address:x"))
    throttle.failed(("account:a", "address:x"))
    throttle.succeeded("account:a")
    throttle.check(("account:a",))
    with pytest.raises(TooManyAttempts):
        throttle.check(("address:x",))
