"""Registries of the components plugins provide, built lazily and guarded."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pluggy

log = logging.getLogger(__name__)

#: registry name -> the hook that fills it
FAMILIES = {
    "orchestrators": "register_orchestrators",
    "archetype_providers": "register_archetype_providers",
    "llm_providers": "register_llm_providers",
    "voice_backends": "register_voice_backends",
    "alert_channels": "register_alert_channels",
}


class DuplicateComponentError(RuntimeError):
    """Two plugins registered the same id in one family."""


class ComponentUnavailable(LookupError):
    """A component is unknown or its factory failed."""


@dataclass
class PluginContext:
    """What a component factory receives from the core.

    ``config`` is the component's own table, ``[default.plugins.<id>]``;
    ``config_dir`` resolves files named there; ``cache`` is the app's
    flask-caching object (memoization shared by workers when Redis is set);
    ``metrics`` emits statsd counters and timers (a no-op when statsd is off).
    """

    id: str
    config: Mapping[str, Any]
    config_dir: str
    cache: Any = None
    metrics: Any = None


class Registry:
    """One family's components: id -> factory, instances built on first use."""

    def __init__(self, family: str, make_context: Callable[[str], PluginContext]):
        self.family = family
        self._make_context = make_context
        self._factories: dict[str, tuple[str, Callable[[PluginContext], Any]]] = {}
        self._instances: dict[str, Any] = {}

    def register(self, component_id: str, factory: Callable[[PluginContext], Any], plugin: str = "") -> None:
        if component_id in self._factories:
            owner = self._factories[component_id][0]
            raise DuplicateComponentError(f"{self.family} id {component_id!r} registered by both {owner} and {plugin}")
        self._factories[component_id] = (plugin, factory)

    def ids(self) -> list[str]:
        return sorted(self._factories)

    def owner(self, component_id: str) -> str:
        return self._factories[component_id][0]

    def statuses(self) -> dict[str, Any]:
        """``status()`` of every built component that has one (circuit breakers, queues...)."""
        return {cid: instance.status() for cid, instance in self._instances.items() if callable(getattr(instance, "status", None))}

    def get(self, component_id: str) -> Any:
        """The built component; ComponentUnavailable if unknown or its factory fails."""
        if component_id in self._instances:
            return self._instances[component_id]
        if component_id not in self._factories:
            raise ComponentUnavailable(f"no {self.family} component {component_id!r}")
        try:
            instance = self._factories[component_id][1](self._make_context(component_id))
        except Exception as exc:
            log.exception("%s component %s failed to build", self.family, component_id)
            raise ComponentUnavailable(f"{self.family} component {component_id!r} failed to build: {exc}") from exc
        self._instances[component_id] = instance
        return instance


def build_registries(pm: pluggy.PluginManager, make_context: Callable[[str], PluginContext]) -> dict[str, Registry]:
    """Ask every plugin to register its components, family by family."""
    registries = {}
    for family, hook_name in FAMILIES.items():
        registry = Registry(family, make_context)
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            impl.function(register=_bound_register(registry, impl.plugin_name))
        registries[family] = registry
    return registries


def _bound_register(registry: Registry, plugin: str) -> Callable[[str, Callable], None]:
    def register(component_id: str, factory: Callable[[PluginContext], Any]) -> None:
        registry.register(component_id, factory, plugin)

    return register
