"""Everything the app builds once at start-up, kept on ``app.extensions``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pluggy
from dynaconf import Dynaconf
from flask import current_app
from sqlalchemy.engine import Engine

from spiralogic.admission import Admission
from spiralogic.alerting import AlertEngine
from spiralogic.components import Registry
from spiralogic.evaluator import Evaluator
from spiralogic.flags import RuntimeFlags
from spiralogic.history import HistoryMemo
from spiralogic.metrics import Metrics
from spiralogic.modes import ModeController
from spiralogic.rating_store import RatingStore
from spiralogic.rollout import RolloutControl
from spiralogic.telemetry import TelemetryWriter
from spiralogic.turn_settings import TurnSettings

EXTENSION = "spiralogic"


@dataclass
class AppState:
    settings: Dynaconf
    pm: pluggy.PluginManager
    registries: dict[str, Registry]
    engine: Engine
    telemetry: TelemetryWriter
    cache: Any
    data_dir: Path
    flags: RuntimeFlags
    modes: ModeController
    admission: Admission
    evaluator: Evaluator
    metrics: Metrics
    alerts: AlertEngine
    rollout: RolloutControl
    ratings: RatingStore
    history: HistoryMemo
    #: a plugin's own settings table, by plugin name
    plugin_config: Callable[[str], Mapping[str, Any]]
    #: what every turn reads of ``settings``, copied once
    turn_settings: TurnSettings
    counters: Counter = field(default_factory=Counter)


def app_state(app=None) -> AppState:
    return (app or current_app).extensions[EXTENSION]
