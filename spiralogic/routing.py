"""Which orchestrator answers a request, and why.

Precedence: the canary header (``x-experiment-spiralogic: on|off``), then
``ORCHESTRATOR`` (``spiralogic`` is GA), then the sticky cohort bucket, then
baseline. Cohort buckets use the Unleash gradual-rollout formula with one
group for the whole rollout, so raising the percent only ever adds users.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmh3

HEADER = "x-experiment-spiralogic"


@dataclass(frozen=True)
class Route:
    orchestrator: str
    reason: str


def cohort_bucket(group: str, user_id: str) -> int:
    """The user's bucket, 1..100, stable for a given group."""
    return mmh3.hash(f"{group}:{user_id}", 0, signed=False) % 100 + 1


def in_cohort(group: str, user_id: str, percent: float) -> bool:
    return percent > 0 and cohort_bucket(group, user_id) <= percent


def choose_route(header: str | None, user_id: str, *, orchestrator: str, percent: float, group: str) -> Route:
    flag = (header or "").strip().lower()
    if flag == "on":
        return Route("spiralogic", "header_on")
    if flag == "off":
        return Route("baseline", "header_off")
    if orchestrator == "spiralogic":
        return Route("spiralogic", "orchestrator_setting")
    if in_cohort(group, user_id, percent):
        return Route("spiralogic", "cohort")
    return Route("baseline", "default")
