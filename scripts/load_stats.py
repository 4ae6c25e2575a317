"""What a simulation counted: requests by endpoint and status, latencies, actions, orders.

Pure bookkeeping and text: ``scripts/simulate.py`` records into a :class:`Tally` and prints
:meth:`Tally.progress_line` every second and :meth:`Tally.summary` at the end.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from scripts.traffic import outcome_of

__all__ = ["Tally", "percentile"]


def percentile(values: Sequence[float], p: float) -> float:
    """Return the ``p``-th percentile (0-100, nearest rank) of ``values``; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Tally:
    """Counts of one simulation run."""

    requests: Counter[tuple[str, int | None]] = field(default_factory=Counter)
    latencies: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    actions: Counter[str] = field(default_factory=Counter)
    shed: int = 0
    errors: int = 0
    refused: int = 0
    orders_placed: int = 0
    orders_with_code: int = 0
    orders_declined_card: int = 0
    order_statuses: Counter[str] = field(default_factory=Counter)

    def record(self, endpoint: str, status: int | None, seconds: float) -> None:
        """Count one request to ``endpoint`` (``None``: no answer) that took ``seconds``."""
        self.requests[(endpoint, status)] += 1
        self.latencies[endpoint].append(seconds)
        outcome = outcome_of(status)
        if outcome == "error":
            self.errors += 1
        elif outcome == "refused":
            self.refused += 1

    @property
    def server_errors(self) -> int:
        """Return how many requests were answered with a 5xx."""
        return sum(n for (_, status), n in self.requests.items()
                   if status is not None and status >= 500)

    def progress_line(self, elapsed: float, in_flight: int) -> str:
        """Return one line: actions done, errors, refusals, and actions by kind."""
        kinds = " ".join(f"{kind}={n}" for kind, n in sorted(self.actions.items()))
        return (f"[{elapsed:5.1f}s] actions={sum(self.actions.values())} errors={self.errors}"
                f" refused={self.refused} shed={self.shed} in-flight={in_flight}"
                f" orders={self.orders_placed} | {kinds}")

    def summary(self, elapsed: float) -> str:
        """Return the summary table: requests by endpoint and status, p50/p99, orders."""
        lines = [f"simulate: {sum(self.actions.values())} actions, "
                 f"{sum(self.requests.values())} requests in {elapsed:.1f} s "
                 f"({self.errors} errors, {self.refused} refused, {self.shed} shed)",
                 "",
                 f"{'endpoint':<40} {'status':>6} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}"]
        for endpoint in sorted(self.latencies):
            times = self.latencies[endpoint]
            p50, p99 = percentile(times, 50) * 1000, percentile(times, 99) * 1000
            statuses = sorted((s for e, s in self.requests if e == endpoint),
                              key=lambda s: -1 if s is None else s)
            for index, status in enumerate(statuses):
                shown = "-" if status is None else str(status)
                timing = f"{p50:8.1f} {p99:8.1f}" if index == 0 else f"{'':8} {'':8}"
                lines.append(f"{endpoint:<40} {shown:>6} {self.requests[(endpoint, status)]:>7}"
                             f" {timing}")
        lines.append("")
        settled = ["confirmed", "rejected",
                   *sorted(set(self.order_statuses) - {"confirmed", "rejected"})]
        lines.append(f"orders: placed={self.orders_placed} " + " ".join(
            f"{name}={self.order_statuses[name]}" for name in settled))
        lines.append(f"orders placed with a promotion code: {self.orders_with_code}, "
                     f"with a card that fails: {self.orders_declined_card}")
        lines.append("actions: " + " ".join(
            f"{kind}={n}" for kind, n in sorted(self.actions.items())))
        return "\n".join(lines)
