"""Hosted and self-hosted LLM providers: ``openai``, ``anthropic`` and ``openai_compatible``.

Each is chosen by ``generation.provider`` and configured in its own table,
``[default.plugins.<id>]``. The vendors' clients come with the ``providers``
extra (``pip install 'spiralogic[providers]'``); this module imports none of
them, so without the extra the service still starts on its other providers,
and selecting one of these fails at start-up with a message saying so.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.hookspecs import Register

#: provider id -> (module in this package, class)
PROVIDERS = {
    "openai": ("llm_openai", "OpenAIChat"),
    "openai_compatible": ("llm_openai", "OpenAICompatibleChat"),
    "anthropic": ("llm_anthropic", "AnthropicMessages"),
}


@hookimpl
def register_llm_providers(register: Register) -> None:
    for provider_id, (module, cls) in PROVIDERS.items():
        register(provider_id, _factory(module, cls))


def _factory(module: str, cls: str) -> Callable[[PluginContext], Any]:
    def build(context: PluginContext) -> Any:
        try:
            implementation = importlib.import_module(f"{__package__}.{module}")
        except ImportError as exc:
            raise ImportError(f"{exc}; install the providers extra: pip install 'spiralogic[providers]'") from None
        return getattr(implementation, cls).from_context(context)

    return build
