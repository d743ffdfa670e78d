"""Per-turn latency budgets, as monotonic deadlines.

A timer alone does not hold a budget: on a CPU-saturated gevent worker a
``gevent.Timeout`` fires late or not at all. So every wait is bounded by the
time left *and* every loop re-checks the deadline after waking up. And the
orchestrator's share ends early by the worker's current event-loop lag
(``lag``): a wake-up that will come that late must be asked for that early,
and a request that found the loop lagging had already waited about that long
before its budget started.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


def no_lag() -> float:
    """The lag of a clock whose timers fire on time (tests, the CLI)."""
    return 0.0


class BudgetExceeded(Exception):
    """The turn's hard budget ran out while work was still under way."""


@dataclass(frozen=True)
class Budget:
    started: float
    soft_at: float
    hard_at: float
    reserve: float
    clock: Callable[[], float] = time.monotonic
    #: how late the worker's timers fire now (seconds)
    lag: Callable[[], float] = no_lag

    @classmethod
    def start(
        cls, soft_ms: int, hard_ms: int, reserve_ms: int, clock: Callable[[], float] = time.monotonic, lag: Callable[[], float] = no_lag
    ) -> Budget:
        now = clock()
        # The request waited about as long as the loop lags before this code could run.
        arrived = now - lag()
        return cls(now, arrived + soft_ms / 1000, arrived + hard_ms / 1000, reserve_ms / 1000, clock, lag)

    def soft_left(self) -> float:
        return max(0.0, self.soft_at - self.clock())

    def work_deadline(self) -> float:
        """When the orchestrator's share ends (monotonic): the hard budget less what fallback needs and the lag."""
        return self.hard_at - self.reserve - self.lag()

    def work_left(self) -> float:
        """Time left for the orchestrator."""
        return max(0.0, self.work_deadline() - self.clock())

    def check(self) -> None:
        """Raise BudgetExceeded once the orchestrator's share of the budget is gone."""
        if self.work_left() <= 0:
            raise BudgetExceeded()

    def elapsed_ms(self, at: float | None = None) -> int:
        return max(0, round(((self.clock() if at is None else at) - self.started) * 1000))
