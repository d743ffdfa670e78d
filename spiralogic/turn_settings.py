"""The settings every chat turn reads, copied once from the settings object.

Dynaconf resolves an attribute on each read (1–3 µs, more for a nested
table) and a turn reads about a dozen. Settings are fixed while the service
runs (a change means a restart), so the app keeps this copy beside them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CanarySettings:
    """``[canary]``: who may steer routing with the canary header."""

    header_allowed: str
    staff_keys: tuple[str, ...]
    staff_networks: tuple[str, ...]


@dataclass(frozen=True)
class TurnSettings:
    soft_budget_ms: int
    hard_budget_ms: int
    fallback_reserve_ms: int
    orchestrator: str
    cohort_group: str
    rollout_percent: float
    shadow_challenge_intensity: str
    generation_provider: str
    fallback_provider: str
    archetype_memo_ttl: int
    store_raw_text: bool
    rate_limit_per_user: str
    rate_limit_per_address: str
    canary: CanarySettings

    @classmethod
    def of(cls, settings: Any) -> TurnSettings:
        return cls(
            soft_budget_ms=settings.soft_budget_ms,
            hard_budget_ms=settings.hard_budget_ms,
            fallback_reserve_ms=settings.budgets.fallback_reserve_ms,
            orchestrator=settings.orchestrator,
            cohort_group=settings.rollout.cohort_group,
            rollout_percent=settings.rollout.percent,
            shadow_challenge_intensity=settings.shadow_challenge_intensity,
            generation_provider=settings.generation.provider,
            fallback_provider=settings.generation.fallback_provider,
            archetype_memo_ttl=settings.archetype_memo_ttl,
            store_raw_text=settings.store_raw_text,
            rate_limit_per_user=settings.rate_limits.per_user,
            rate_limit_per_address=settings.rate_limits.per_address,
            canary=CanarySettings(
                header_allowed=settings.canary.header_allowed,
                staff_keys=tuple(settings.canary.staff_keys),
                staff_networks=tuple(settings.canary.staff_networks),
            ),
        )
