"""Where alert transitions go: the ``alert_changed`` hook, the channels, and rollback.

Channels named in ``config/alerts.toml`` map to alert channel plugins
(``via``). A channel plugin that fails is logged; the others still deliver.
A rollback rule that fires aborts the rollout (phase ``aborted``: everyone on
baseline, the header still honoured), latched until an operator retries.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import pluggy

from spiralogic.alerting import NOTIFIED, Transition
from spiralogic.components import Registry
from spiralogic.flags import RuntimeFlags
from spiralogic.plugins import PluginConfig, call_each

log = logging.getLogger(__name__)


class AlertDelivery:
    def __init__(
        self,
        pm: pluggy.PluginManager,
        plugin_config: PluginConfig,
        channels: Registry,
        routes: Mapping[str, Mapping[str, Any]],
        flags: RuntimeFlags,
    ):
        self.pm = pm
        self.plugin_config = plugin_config
        self.channels = channels
        self.routes = routes
        self.flags = flags

    def __call__(self, transition: Transition) -> None:
        for _ in call_each(self.pm, "alert_changed", self.plugin_config, alert=transition):
            pass
        if transition.to_state in NOTIFIED:
            self._notify(transition)
        if transition.rule.action == "rollback" and transition.to_state == "firing":
            self._roll_back(transition)

    def _notify(self, transition: Transition) -> None:
        for via in self.routes.get(transition.rule.channel, {}).get("via", []):
            try:
                self.channels.get(via).notify(transition)
            except Exception:  # noqa: BLE001 - one channel down must not silence the rest
                log.exception("alert channel %s failed to deliver %s", via, transition.rule.name)

    def _roll_back(self, transition: Transition) -> None:
        if self.flags.all(fresh=True)["phase"] == "aborted":
            return
        log.error("rollback: %s fired; aborting the rollout", transition.rule.name)
        self.flags.set("phase", "aborted", actor=f"rollback:{transition.rule.name}", reason=transition.rule.summary, now=transition.at)
