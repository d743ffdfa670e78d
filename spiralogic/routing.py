"""Which orchestrator answers a request, and why.

Precedence: the kill switch (baseline wins), the canary header
(``x-experiment-spiralogic: on|off``, when admitted), an aborted rollout (baseline), GA
(phase ``ga`` or ``ORCHESTRATOR=spiralogic``), the sticky cohort bucket, then
baseline. If the rollout state cannot be read, baseline answers. Cohort
buckets use the Unleash gradual-rollout formula with one group for the whole
rollout, so raising the percent only ever adds users.
"""

from __future__ import annotations

from dataclasses import dataclass

import mmh3

HEADER = "x-experiment-spiralogic"


@dataclass(frozen=True)
class Route:
    orchestrator: str
    reason: str


@dataclass(frozen=True)
class Rollout:
    """The runtime rollout state a request is routed by."""

    phase: str = "baseline"
    percent: float = 0
    kill_switch: bool = False
    readable: bool = True


def cohort_bucket(group: str, user_id: str) -> int:
    """The user's bucket, 1..100, stable for a given group."""
    return mmh3.hash(f"{group}:{user_id}", 0, signed=False) % 100 + 1


def in_cohort(group: str, user_id: str, percent: float) -> bool:
    return percent > 0 and cohort_bucket(group, user_id) <= percent


def choose_route(
    header: str | None, user_id: str, *, orchestrator: str, rollout: Rollout, group: str, header_ignored: bool = False
) -> Route:
    """``header_ignored``: a header was sent but not admitted (see spiralogic.canary); the
    route is chosen as without one, and its reason says the header was ignored."""
    if not rollout.readable:
        return Route("baseline", "rollout_unreadable")
    if rollout.kill_switch:
        return Route("baseline", "kill_switch")
    flag = (header or "").strip().lower()
    if flag == "on":
        return Route("spiralogic", "header_on")
    if flag == "off":
        return Route("baseline", "header_off")
    route = _without_header(user_id, orchestrator=orchestrator, rollout=rollout, group=group)
    return Route(route.orchestrator, "header_ignored") if header_ignored else route


def _without_header(user_id: str, *, orchestrator: str, rollout: Rollout, group: str) -> Route:
    if rollout.phase == "aborted":
        return Route("baseline", "aborted")
    if orchestrator == "spiralogic" or rollout.phase == "ga":
        return Route("spiralogic", "ga")
    if in_cohort(group, user_id, rollout.percent):
        return Route("spiralogic", "cohort")
    return Route("baseline", "default")
