"""Messages through the official ``anthropic`` client (provider id ``anthropic``).

Needs ``ANTHROPIC_API_KEY``. Token counts come from the stream itself: input
tokens in ``message_start``, output tokens in ``message_delta``. Budgets,
retries and the breaker are shared: see ``llm_common``.
"""

from __future__ import annotations

from typing import Any, Iterator

import anthropic
import httpx2

from spiralogic.components import PluginContext
from spiralogic_plugins.llm_common import ProviderConfig, ProviderStreamError, Request, StreamingProvider, SystemPrompts


class AnthropicMessages(StreamingProvider):
    """Streams ``/v1/messages``; a reply is complete only once ``message_stop`` arrived."""

    connection_errors = (anthropic.APIConnectionError,)

    @classmethod
    def from_context(cls, context: PluginContext) -> AnthropicMessages:
        config = ProviderConfig.parse(context.config, f"plugins.{context.id}", "ANTHROPIC_API_KEY")
        # max_retries=0: retries are ours, bounded by the turn's deadline.
        client = anthropic.Anthropic(api_key=config.api_key, base_url=config.base_url, max_retries=0)
        # The resource is resolved (imported) now, not within the first turn's budget.
        return cls(context.id, config, SystemPrompts.from_context(context, config), client.messages)

    def _start(self, request: Request, timeout: httpx2.Timeout) -> Any:
        return self.endpoint.create(
            model=request.model,
            system=request.system,
            messages=[{"role": "user", "content": request.text}],
            max_tokens=request.max_tokens,
            stream=True,
            timeout=timeout,
        )

    def _texts(self, stream: Any, usage: dict[str, int]) -> Iterator[str]:
        stopped = False
        for event in stream:
            if event.type == "message_start":
                usage.update(prompt=event.message.usage.input_tokens, completion=event.message.usage.output_tokens)
            elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                yield event.delta.text
            elif event.type == "message_delta":
                usage["completion"] = event.usage.output_tokens
            elif event.type == "message_stop":
                stopped = True
        if not stopped:
            raise ProviderStreamError(f"{self.id}: the stream ended without message_stop")
