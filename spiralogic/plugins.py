"""The plugin manager: finds plugins, applies the allow and disable lists."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import pluggy

from spiralogic import hookspecs

ENTRY_POINT_GROUP = "spiralogic"
log = logging.getLogger(__name__)


def build_plugin_manager(allowed: list[str], disabled: list[str], extra: Iterable[object] = ()) -> pluggy.PluginManager:
    """Load every plugin of the entry-point group except those config rules out, plus ``extra``.

    ``check_pending`` runs last, so a misspelled hook in any of them fails at boot.
    """
    pm = pluggy.PluginManager("spiralogic")
    pm.add_hookspecs(hookspecs)
    for name in disabled:
        pm.set_blocked(name)
    if allowed:
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name not in allowed:
                pm.set_blocked(ep.name)
    pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in extra:
        pm.register(plugin)
    pm.check_pending()
    return pm


@dataclass(frozen=True)
class PluginInfo:
    name: str
    source: str
    version: str | None
    hooks: tuple[str, ...]


def describe_plugins(pm: pluggy.PluginManager) -> list[PluginInfo]:
    """What is loaded, from which distribution, implementing which hooks."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    infos = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            continue
        dist = dists.get(id(plugin))
        hooks = tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ()))
        infos.append(
            PluginInfo(
                name=name,
                source=getattr(plugin, "__name__", type(plugin).__name__),
                version=dist.version if dist else None,
                hooks=hooks,
            )
        )
    return sorted(infos, key=lambda info: info.name)


@dataclass
class HookOutcome:
    plugin: str
    result: Any = None
    error: BaseException | None = None


PluginConfig = Callable[[str], Mapping[str, Any]]


def no_config(plugin_name: str) -> Mapping[str, Any]:
    return {}


def call_each(pm: pluggy.PluginManager, hook_name: str, plugin_config: PluginConfig = no_config, **kwargs: Any) -> Iterator[HookOutcome]:
    """Call every implementation of a hook in pluggy's order, isolating failures.

    pluggy aborts a hook call at the first exception; a guardrail or observer
    that raises must not silence the others or take the request down. An
    implementation that takes ``config`` gets its own plugin's table,
    ``[default.plugins.<plugin name>]``.
    """
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames if name != "config"}
        if "config" in impl.argnames:
            args["config"] = plugin_config(impl.plugin_name)
        try:
            yield HookOutcome(impl.plugin_name, impl.function(**args))
        except Exception as exc:  # noqa: BLE001 - a plugin's fault is logged, never raised
            log.exception("plugin %s failed in %s", impl.plugin_name, hook_name)
            yield HookOutcome(impl.plugin_name, error=exc)


def first_result(pm: pluggy.PluginManager, hook_name: str, plugin_config: PluginConfig = no_config, **kwargs: Any) -> Any:
    """A ``firstresult`` hook's answer, skipping implementations that raise."""
    for outcome in call_each(pm, hook_name, plugin_config, **kwargs):
        if outcome.error is None and outcome.result is not None:
            return outcome.result
    return None
