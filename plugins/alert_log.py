"""The ``log`` alert channel: every alert transition as one structured log line."""

from __future__ import annotations

import logging

from spiralogic import hookimpl

log = logging.getLogger("spiralogic.alerts")
LEVELS = {"INFO": logging.INFO, "WARN": logging.WARNING, "PAGE": logging.ERROR}


class LogChannel:
    def notify(self, alert) -> None:
        level = LEVELS[alert.rule.severity] if alert.to_state == "firing" else logging.INFO
        log.log(level, alert.text, extra={"alert": alert.rule.name, "state": alert.to_state, "channel": alert.rule.channel})


@hookimpl
def register_alert_channels(register):
    register("log", lambda context: LogChannel())
