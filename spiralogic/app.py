"""The application factory.

Order matters and is fixed: settings (validated), plugin manager, component
registries, database and telemetry, HTTP surface, then the plugins' start-up
hook. Nothing happens at import time.
"""

from __future__ import annotations

import atexit
from typing import Any, Iterable, Mapping

from flask import Flask
from flask_caching import Cache

from spiralogic import admin, admin_dashboard, admin_rollout, api, feedback, gates, limits, logging_setup
from spiralogic.admission import Admission
from spiralogic.alert_delivery import AlertDelivery
from spiralogic.alert_metrics import known_metrics, metric_source
from spiralogic.alerting import AlertEngine, load_routes, load_rules
from spiralogic.clock import utcnow
from spiralogic.components import ComponentUnavailable, PluginContext, build_registries
from spiralogic.db import create_engine
from spiralogic.errors import register_error_handlers
from spiralogic.evaluator import Evaluator
from spiralogic.flags import RuntimeFlags
from spiralogic.history import HistoryMemo
from spiralogic.journal import Journal
from spiralogic.metrics import build_metrics
from spiralogic.modes import ModeController
from spiralogic.plugins import build_plugin_manager, call_each, first_result
from spiralogic.rating_store import RatingStore
from spiralogic.rollout import RolloutControl
from spiralogic.settings import CONFIG_DIR, ConfigError, PluginTables, data_dir, database_url, load_settings
from spiralogic.state import EXTENSION, AppState
from spiralogic.telemetry import TelemetryWriter
from spiralogic.turn_metrics import emit_turn_metrics
from spiralogic.turn_settings import TurnSettings
from spiralogic.voice.routes import init_app as init_voice


def create_app(overrides: Mapping[str, Any] | None = None, plugins: Iterable[object] = ()) -> Flask:
    """Build the app. ``overrides`` win over every settings layer; ``plugins`` are
    registered beside the entry-point ones (for embedding and tests)."""
    settings = load_settings(overrides)
    app = Flask("spiralogic")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    logging_setup.configure(settings.log_level, settings.log_format)

    pm = build_plugin_manager(list(settings.plugins.allowed), list(settings.plugins.disabled), plugins)
    cache = Cache(app, config=_cache_config(settings))

    plugin_config = PluginTables(settings)

    def plugin_context(component_id: str) -> PluginContext:
        return PluginContext(
            id=component_id, config=plugin_config(component_id), config_dir=str(CONFIG_DIR), cache=cache, metrics=metrics
        )

    metrics = build_metrics(settings)
    registries = build_registries(pm, plugin_context)
    _check_generation(settings, registries["llm_providers"])
    engine = create_engine(database_url(settings))
    telemetry = TelemetryWriter(
        engine,
        Journal(data_dir(settings) / "telemetry-journal"),
        queue_size=settings.telemetry.queue_size,
        batch_size=settings.telemetry.batch_size,
        flush_interval=settings.telemetry.flush_interval_ms / 1000,
        prepare=lambda turn, record: _score(pm, plugin_config, turn, record),
        on_record=lambda turn, record: _observe(pm, plugin_config, metrics, turn, record),
    )
    atexit.register(telemetry.close)
    ratings = RatingStore(
        engine,
        Journal(data_dir(settings) / "feedback-journal"),
        telemetry.journal,
        turn_wait_s=settings.feedback.turn_wait_s,
        on_queued=telemetry.start,
    )
    telemetry.replay_also(ratings)
    flags = RuntimeFlags(engine, ttl=settings.modes.cache_s)
    modes = ModeController(engine, flags, settings, clock=utcnow)
    alerts = _alerts(settings, engine, pm, plugin_config, registries["alert_channels"], flags)
    rollout = RolloutControl(flags, dict(settings.rollout.phase_percent), lambda now: gates.evaluate(engine, gates.load_gates(), now))
    evaluator = Evaluator(
        engine, [lambda now: modes.evaluate(), alerts.evaluate], interval_s=settings.evaluator.interval_s, clock=utcnow
    )
    app.extensions[EXTENSION] = AppState(
        settings, pm, registries, engine, telemetry, cache, data_dir(settings), flags, modes, _admission(settings), evaluator, metrics, alerts, rollout, ratings, _history(settings, engine, metrics), plugin_config, TurnSettings.of(settings)
    )

    logging_setup.init_app(app, api.request_id)
    register_error_handlers(app)
    limits.init_app(app, settings)
    app.register_blueprint(api.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(admin_rollout.bp)
    app.register_blueprint(admin_dashboard.bp)
    init_voice(app, clock=utcnow)
    if settings.evaluator.in_app:
        # Started by the first request, not here: CLI commands build the app too and must not run it.
        app.before_request(evaluator.start)
    pm.hook.startup(app=app)
    return app


def _score(pm, plugin_config, turn, record) -> None:
    """Off the request path: an evaluator (an LLM judge, even) never slows a turn."""
    quality = first_result(pm, "score_response", plugin_config, turn=turn, draft=turn.reply)
    if quality is not None:
        record.metadata["qualityScore"] = quality


def _observe(pm, plugin_config, metrics, turn, record) -> None:
    """Off the request path, once per turn: statsd metrics, then the plugins' observers."""
    emit_turn_metrics(metrics, record)
    for _ in call_each(pm, "turn_completed", plugin_config, turn=turn, record=record):
        pass


def _alerts(settings, engine, pm, plugin_config, channels, flags) -> AlertEngine:
    """The alert rules of config/alerts.toml, delivered through the channel plugins."""
    path = CONFIG_DIR / settings.alerts.rules_file
    try:
        rules, routes = load_rules(path), load_routes(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: alerts.rules_file: {exc}") from None
    unknown = {rule.metric for rule in rules} - known_metrics()
    if unknown:
        raise ConfigError(f"invalid configuration: alerts.rules_file: unknown metrics {sorted(unknown)}")
    return AlertEngine(engine, rules, metric_source(engine), AlertDelivery(pm, plugin_config, channels, routes, flags))


def _check_generation(settings, providers) -> None:
    """The providers the operator chose must build now, not fail on the first request."""
    for key in ("provider", "fallback_provider"):
        try:
            providers.get(settings.generation[key])
        except ComponentUnavailable as exc:
            raise ConfigError(f"invalid configuration: generation.{key}: {exc}") from None


def _admission(settings) -> Admission:
    rules = settings.admission
    return Admission(
        degrade_in_flight=rules.degrade_in_flight,
        max_in_flight=rules.max_in_flight,
        degrade_lag_ms=rules.degrade_lag_ms,
        reject_lag_ms=rules.reject_lag_ms,
    )


def _history(settings, engine, metrics) -> HistoryMemo:
    return HistoryMemo(engine, fresh_s=settings.history.memo_ms / 1000, users=settings.history.memo_users, metrics=metrics)


def _cache_config(settings) -> dict[str, Any]:
    if settings.cache_redis_url:
        return {
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": settings.cache_redis_url,
            "CACHE_KEY_PREFIX": "spiralogic:",
            # A Redis that stops answering must cost a turn milliseconds, not its whole budget.
            "CACHE_OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    return {"CACHE_TYPE": "SimpleCache", "CACHE_THRESHOLD": 10000}
