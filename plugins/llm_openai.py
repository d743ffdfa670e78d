"""Chat completions through the official ``openai`` client: OpenAI itself and compatible servers.

``openai`` talks to OpenAI's API and needs ``OPENAI_API_KEY``.
``openai_compatible`` talks to any server that speaks the same wire protocol
(Ollama, vLLM, llama.cpp server, LiteLLM) at its ``base_url``; a key is
optional there, and the OpenAI key from the environment is never sent to it.
Budgets, retries and the breaker are shared: see ``llm_common``.
"""

from __future__ import annotations

from typing import Any, Iterator

import httpx2
import openai

from spiralogic.components import PluginContext
from spiralogic_plugins.llm_common import ProviderConfig, ProviderStreamError, Request, StreamingProvider, SystemPrompts

# The client insists on a key; a local server that needs none still gets this one,
# never the OpenAI key that the client would otherwise read from the environment.
NO_KEY = "no-key"


class OpenAIChat(StreamingProvider):
    """Streams ``/chat/completions``, with the usage chunk at the end of the stream."""

    connection_errors = (openai.APIConnectionError,)
    #: the variable that must provide the key (None: the key is optional)
    key_variable: str | None = "OPENAI_API_KEY"
    #: OpenAI's API names the reply limit max_completion_tokens; compatible servers know max_tokens
    limit_parameter = "max_completion_tokens"

    @classmethod
    def from_context(cls, context: PluginContext) -> OpenAIChat:
        config = ProviderConfig.parse(context.config, f"plugins.{context.id}", cls.key_variable)
        # max_retries=0: retries are ours, bounded by the turn's deadline.
        client = openai.OpenAI(api_key=config.api_key or NO_KEY, base_url=config.base_url, max_retries=0)
        # The resource is resolved (imported) now, not within the first turn's budget.
        return cls(context.id, config, SystemPrompts.from_context(context, config), client.chat.completions)

    def _start(self, request: Request, timeout: httpx2.Timeout) -> Any:
        return self.endpoint.create(
            model=request.model,
            messages=[{"role": "system", "content": request.system}, {"role": "user", "content": request.text}],
            stream=True,
            stream_options={"include_usage": True},
            timeout=timeout,
            **{self.limit_parameter: request.max_tokens},
        )

    def _texts(self, stream: Any, usage: dict[str, int]) -> Iterator[str]:
        finished = False
        for chunk in stream:
            if chunk.usage is not None:
                usage.update(prompt=chunk.usage.prompt_tokens, completion=chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta is not None and choice.delta.content:
                    yield choice.delta.content
                finished = finished or choice.finish_reason is not None
        if not finished:
            raise ProviderStreamError(f"{self.id}: the stream ended without a finish_reason")


class OpenAICompatibleChat(OpenAIChat):
    """The same protocol on a server of the operator's choosing."""

    key_variable = None
    limit_parameter = "max_tokens"
