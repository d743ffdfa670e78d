"""The ``webhook`` alert channel: a Slack-compatible message per alert transition.

URLs per channel come from ``[default.plugins.webhook] urls`` (set them as
secrets: a Slack webhook URL is a credential). A channel without a URL is
skipped with a log line. Delivery retries briefly on transport errors and
5xx, from the evaluator loop, never from a request.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import httpx
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from spiralogic import hookimpl

log = logging.getLogger(__name__)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code >= 500
    return isinstance(exc, httpx.TransportError)


class WebhookChannel:
    def __init__(self, urls: Mapping[str, str], timeout_s: float):
        self.urls = dict(urls)
        self.client = httpx.Client(timeout=timeout_s)

    @classmethod
    def from_context(cls, context) -> WebhookChannel:
        return cls(context.config.get("urls") or {}, float(context.config.get("timeout_s", 5)))

    def notify(self, alert) -> None:
        url = self.urls.get(alert.rule.channel)
        if not url:
            log.info("no webhook URL for %s; %s not sent", alert.rule.channel, alert.rule.name)
            return
        self._post(url, self.payload(alert))

    @staticmethod
    def payload(alert) -> dict[str, Any]:
        return {
            "text": alert.text,
            "channel": alert.rule.channel,
            "attachments": [
                {
                    "color": {"firing": "danger", "resolved": "good"}.get(alert.to_state, "warning"),
                    "fields": [
                        {"title": "alert", "value": alert.rule.name, "short": True},
                        {"title": "state", "value": alert.to_state, "short": True},
                        {"title": "severity", "value": alert.rule.severity, "short": True},
                        {"title": "value", "value": "no data" if alert.value is None else f"{alert.value:g}", "short": True},
                    ],
                    "ts": int(alert.at.timestamp()),
                }
            ],
        }

    @retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(3), wait=wait_exponential(0.2, max=2), reraise=True)
    def _post(self, url: str, body: dict[str, Any]) -> None:
        self.client.post(url, json=body).raise_for_status()


@hookimpl
def register_alert_channels(register):
    register("webhook", WebhookChannel.from_context)
