"""Settings: one Dynaconf object per app, layered and validated at start-up.

Layers, lowest first: ``config/settings.toml`` (``[default]`` then the table of
the environment named by ``SPIRALOGIC_ENV``), ``config/.secrets.toml``,
``SPIRALOGIC_*`` environment variables, the playbook's bare names
(``ORCHESTRATOR``...), then overrides passed to ``create_app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dynaconf import Dynaconf, ValidationError, Validator

from spiralogic.turn import ORCHESTRATORS

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_DIR / "config"
DEFAULT_DATA_DIR = PROJECT_DIR / "instance"
INTENSITIES = ("low", "med", "high")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


VALIDATORS = [
    Validator("orchestrator", must_exist=True, is_in=ORCHESTRATORS),
    Validator("soft_budget_ms", "hard_budget_ms", must_exist=True, is_type_of=int, gt=0),
    Validator("archetype_memo_ttl", must_exist=True, is_type_of=int, gte=0),
    Validator("shadow_challenge_intensity", must_exist=True, is_in=INTENSITIES),
    Validator("tts_max_text_chars", must_exist=True, is_type_of=int, gt=0),
    Validator("database_url", "cache_redis_url", "data_dir", must_exist=True, is_type_of=str),
    Validator("max_request_bytes", must_exist=True, is_type_of=int, gte=1024),
    Validator("store_raw_text", must_exist=True, is_type_of=bool),
    Validator("log_level", must_exist=True, is_in=("DEBUG", "INFO", "WARNING", "ERROR")),
    Validator("rollout.percent", must_exist=True, is_type_of=(int, float), gte=0, lte=100),
    Validator("rollout.cohort_group", must_exist=True, is_type_of=str, len_min=1),
    Validator("generation.provider", "generation.fallback_provider", must_exist=True, is_type_of=str, len_min=1),
    Validator("telemetry.queue_size", "telemetry.batch_size", must_exist=True, is_type_of=int, gt=0),
    Validator("telemetry.flush_interval_ms", must_exist=True, is_type_of=int, gt=0),
    Validator("plugins.disabled", "plugins.allowed", must_exist=True, is_type_of=list),
    Validator("server.host", must_exist=True, is_type_of=str),
    Validator("server.port", must_exist=True, is_type_of=int, gt=0, lt=65536),
    Validator("server.workers", "server.worker_connections", must_exist=True, is_type_of=int, gt=0),
]


def load_settings(overrides: Mapping[str, Any] | None = None) -> Dynaconf:
    """Build and validate the settings; raise ConfigError naming the bad key."""
    settings = Dynaconf(
        root_path=str(CONFIG_DIR),
        settings_files=["settings.toml", ".secrets.toml"],
        environments=True,
        env_switcher="SPIRALOGIC_ENV",
        envvar_prefix="SPIRALOGIC",
        loaders=["dynaconf.loaders.env_loader", "spiralogic.settings_env"],
        validators=VALIDATORS,
        merge_enabled=True,
    )
    for key, value in (overrides or {}).items():
        settings.set(key, value)
    try:
        settings.validators.validate()
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    if settings.soft_budget_ms >= settings.hard_budget_ms:
        raise ConfigError(
            "invalid configuration: SOFT_BUDGET_MS "
            f"({settings.soft_budget_ms}) must be below HARD_BUDGET_MS ({settings.hard_budget_ms})"
        )
    return settings


def data_dir(settings: Dynaconf) -> Path:
    return Path(settings.data_dir) if settings.data_dir else DEFAULT_DATA_DIR


def database_url(settings: Dynaconf) -> str:
    """The configured URL; empty means the embedded SQLite file in the data directory."""
    if settings.database_url:
        return settings.database_url
    directory = data_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'spiralogic.db'}"
