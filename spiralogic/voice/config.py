"""The voice settings (``[default.voice]`` and ``tts_max_text_chars``) as one typed value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from spiralogic.voice import PRESETS


@dataclass(frozen=True)
class VoiceConfig:
    backend: str
    allowed_presets: tuple[str, ...]
    max_text_chars: int
    daily_char_quota: int
    quota_warn_ratio: float
    memo_window_s: int
    broker_url: str
    queue_name: str
    workers: int
    max_attempts: int
    retry_backoff_s: float
    lease_s: int
    requeue_after_s: int
    tags_off_p95_s: float
    queue_age_window_s: int
    retention_s: int
    daily_budget_usd: float
    data_dir: Path
    #: a backend's own settings table (its price per 1000 characters lives there)
    backend_config: Callable[[str], Mapping[str, Any]] = lambda backend: {}

    @classmethod
    def from_settings(cls, settings, data_dir: Path, backend_config: Callable[[str], Mapping[str, Any]]) -> VoiceConfig:
        voice = settings.voice
        return cls(
            backend=voice.backend,
            # Empty allows every preset. (A list can only narrow this from one layer: Dynaconf adds lists up.)
            allowed_presets=tuple(voice.allowed_presets) or PRESETS,
            max_text_chars=settings.tts_max_text_chars,
            daily_char_quota=voice.daily_char_quota,
            quota_warn_ratio=voice.quota_warn_ratio,
            memo_window_s=voice.memo_window_s,
            broker_url=voice.broker_url,
            queue_name=voice.queue_name,
            workers=voice.workers,
            max_attempts=voice.max_attempts,
            retry_backoff_s=voice.retry_backoff_s,
            lease_s=voice.lease_s,
            requeue_after_s=voice.requeue_after_s,
            tags_off_p95_s=voice.tags_off_p95_s,
            queue_age_window_s=voice.queue_age_window_s,
            retention_s=voice.retention_s,
            daily_budget_usd=voice.daily_budget_usd,
            data_dir=data_dir,
            backend_config=backend_config,
        )

    def price_per_1k_chars(self, backend: str) -> float:
        """The backend's ``price_per_1k_chars``; 0 when it has none or it is not a number."""
        price = self.backend_config(backend).get("price_per_1k_chars", 0)
        return float(price) if isinstance(price, (int, float)) and not isinstance(price, bool) and price >= 0 else 0.0

    def preset_for(self, wanted: str | None) -> str:
        """``wanted`` if allowed, else the default preset (the first allowed one)."""
        return wanted if wanted in self.allowed_presets else self.allowed_presets[0]
