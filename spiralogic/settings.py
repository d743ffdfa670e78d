"""Settings: one Dynaconf object per app, layered and validated at start-up.

Layers, lowest first: ``config/settings.toml`` (``[default]`` then the table of
the environment named by ``SPIRALOGIC_ENV``), ``config/.secrets.toml``,
``SPIRALOGIC_*`` environment variables, the playbook's bare names
(``ORCHESTRATOR``...), then overrides passed to ``create_app``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Mapping

from dynaconf import Dynaconf, ValidationError, Validator
from limits import parse_many

from spiralogic.turn import ORCHESTRATORS
from spiralogic.voice import PRESETS

PROJECT_DIR = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_DIR / "config"
DEFAULT_DATA_DIR = PROJECT_DIR / "instance"
INTENSITIES = ("low", "med", "high")
#: the environment tables of settings.toml that SPIRALOGIC_ENV may name
ENVIRONMENTS = ("development", "testing", "staging", "production")


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _not_bool(value: Any) -> bool:
    return not isinstance(value, bool)


def _number(*names: str, kind: Any = int, **bounds: Any) -> Validator:
    """A required number. bool is an int subclass, so ``true`` would pass is_type_of=int alone."""
    message = {"condition": "{name} must be a number but it is {value} in env {env}"}
    return Validator(*names, must_exist=True, is_type_of=kind, condition=_not_bool, messages=message, **bounds)


def _rate_limit(value: Any) -> bool:
    try:
        return bool(parse_many(value))
    except (TypeError, ValueError):
        return False


def _networks(value: Any) -> bool:
    try:
        return all(ipaddress.ip_network(network, strict=False) for network in value)
    except (TypeError, ValueError):
        return False


VALIDATORS = [
    Validator("orchestrator", must_exist=True, is_in=ORCHESTRATORS),
    _number("soft_budget_ms", "hard_budget_ms", gt=0),
    _number("budgets.fallback_reserve_ms", gte=0),
    _number("archetype_memo_ttl", gte=0),
    Validator("shadow_challenge_intensity", must_exist=True, is_in=INTENSITIES),
    _number("tts_max_text_chars", gt=0),
    Validator("database_url", "cache_redis_url", "data_dir", must_exist=True, is_type_of=str),
    _number("max_request_bytes", gte=1024),
    Validator("store_raw_text", must_exist=True, is_type_of=bool),
    Validator("log_level", must_exist=True, is_in=("DEBUG", "INFO", "WARNING", "ERROR")),
    Validator("log_format", must_exist=True, is_in=("json", "text")),
    Validator("rate_limits.enabled", must_exist=True, is_type_of=bool),
    Validator(
        "rate_limits.per_user",
        "rate_limits.per_address",
        must_exist=True,
        is_type_of=str,
        condition=_rate_limit,
        messages={"condition": "{name} must be a rate limit such as 60/minute but it is {value} in env {env}"},
    ),
    _number("rate_limits.trusted_proxies", gte=0),
    Validator("canary.header_allowed", must_exist=True, is_in=("anyone", "staff")),
    Validator("canary.staff_keys", must_exist=True, is_type_of=list, condition=lambda keys: all(isinstance(key, str) for key in keys)),
    Validator(
        "canary.staff_networks",
        must_exist=True,
        is_type_of=list,
        condition=_networks,
        messages={"condition": "{name} must list networks in CIDR notation (10.0.0.0/8) but it is {value} in env {env}"},
    ),
    _number("rollout.percent", kind=(int, float), gte=0, lte=100),
    Validator("rollout.cohort_group", must_exist=True, is_type_of=str, len_min=1),
    _number("rollout.phase_percent.canary", "rollout.phase_percent.beta", kind=(int, float), gte=0, lte=100),
    Validator("generation.provider", "generation.fallback_provider", must_exist=True, is_type_of=str, len_min=1),
    Validator("voice.backend", "voice.queue_name", must_exist=True, is_type_of=str, len_min=1),
    Validator(
        "voice.allowed_presets",
        must_exist=True,
        is_type_of=list,
        condition=lambda presets: set(presets) <= set(PRESETS),
        messages={"condition": f"{{name}} must list presets among {', '.join(PRESETS)} but it is {{value}} in env {{env}}"},
    ),
    Validator(
        "voice.broker_url",
        must_exist=True,
        is_type_of=str,
        condition=lambda url: url == "" or url.startswith(("redis://", "rediss://", "unix://")),
        messages={"condition": "{name} must be empty (SQLite) or a redis:// URL but it is {value} in env {env}"},
    ),
    _number(
        "voice.daily_char_quota",
        "voice.workers",
        "voice.max_attempts",
        "voice.lease_s",
        "voice.requeue_after_s",
        "voice.queue_age_window_s",
        "voice.retention_s",
        gt=0,
    ),
    _number("voice.memo_window_s", gte=0),
    _number("voice.quota_warn_ratio", kind=(int, float), gt=0, lte=1),
    _number("voice.retry_backoff_s", "voice.tags_off_p95_s", "voice.daily_budget_usd", kind=(int, float), gte=0),
    _number("telemetry.queue_size", "telemetry.batch_size", gt=0),
    _number("telemetry.flush_interval_ms", gt=0),
    _number("history.memo_ms", gte=0),
    _number("history.memo_users", gt=0),
    _number("feedback.turn_wait_s", kind=(int, float), gte=0),
    Validator("plugins.disabled", "plugins.allowed", must_exist=True, is_type_of=list),
    Validator("admin_token", must_exist=True, is_type_of=str),
    _number("modes.window_s", "modes.min_turns", "modes.lite_recovery_s", "modes.fallback_recovery_s", gt=0),
    _number(
        "modes.lite_slow_ratio",
        "modes.fallback_hard_ratio",
        "modes.fallback_error_ratio",
        "modes.recovery_error_ratio",
        "modes.fallback_probe_ratio",
        kind=(int, float),
        gte=0,
        lte=1,
    ),
    _number("modes.cache_s", kind=(int, float), gte=0),
    _number("admission.degrade_in_flight", "admission.max_in_flight", "admission.retry_after_s", gt=0),
    _number("admission.degrade_lag_ms", "admission.reject_lag_ms", kind=(int, float), gt=0),
    Validator("alerts.rules_file", must_exist=True, is_type_of=str, len_min=1),
    Validator("evaluator.in_app", must_exist=True, is_type_of=bool),
    _number("evaluator.interval_s", kind=(int, float), gt=0),
    Validator("statsd.host", "statsd.prefix", must_exist=True, is_type_of=str),
    _number("statsd.port", gt=0, lt=65536),
    Validator("server.host", must_exist=True, is_type_of=str),
    _number("server.port", gt=0, lt=65536),
    _number("server.workers", "server.worker_connections", gt=0),
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
        merge_enabled=True,
    )
    for key, value in (overrides or {}).items():
        settings.set(key, value)
    # Registered only now: validators given to Dynaconf() run on first access, i.e. before the
    # overrides and outside the try below (a raw ValidationError an override could not fix).
    settings.validators.register(*VALIDATORS)
    if settings.current_env.lower() not in ENVIRONMENTS:
        # Dynaconf silently falls back to [default] for an unknown name: a typo would run on defaults.
        raise ConfigError(
            f"invalid configuration: SPIRALOGIC_ENV must be one of {', '.join(ENVIRONMENTS)} "
            f"but it is {_one_line(settings.current_env)}"
        )
    try:
        settings.validators.validate()
    except ValidationError as exc:
        raise ConfigError(_one_line(f"invalid configuration: {exc}")) from None
    if settings.soft_budget_ms >= settings.hard_budget_ms:
        raise ConfigError(
            "invalid configuration: SOFT_BUDGET_MS "
            f"({settings.soft_budget_ms}) must be below HARD_BUDGET_MS ({settings.hard_budget_ms})"
        )
    return settings


def _one_line(text: str) -> str:
    """Values are echoed in messages; a newline in one must not split the CLI's one-line error."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def data_dir(settings: Dynaconf) -> Path:
    return Path(settings.data_dir) if settings.data_dir else DEFAULT_DATA_DIR


def database_url(settings: Dynaconf) -> str:
    """The configured URL; empty means the embedded SQLite file in the data directory."""
    if settings.database_url:
        return settings.database_url
    directory = data_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'spiralogic.db'}"


def plugin_table(settings: Dynaconf, name: str) -> Mapping[str, Any]:
    """A plugin's own settings, ``[default.plugins.<name>]`` (empty if it has none)."""
    return settings.plugins.get(name) or {}


class PluginTables:
    """``plugin_table`` for one app, each table read once.

    Hooks receive their plugin's table on every turn, and a Dynaconf lookup
    costs more than many of the hooks; the settings do not change while the
    app runs.
    """

    def __init__(self, settings: Dynaconf):
        self._settings = settings
        self._tables: dict[str, Mapping[str, Any]] = {}

    def __call__(self, name: str) -> Mapping[str, Any]:
        if name not in self._tables:
            self._tables[name] = plugin_table(self._settings, name)
        return self._tables[name]
