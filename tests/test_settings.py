"""Settings: layering (TOML, environments, secrets, env vars, overrides) and validation."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from typing import Any

import pytest

from spiralogic import settings as settings_module
from spiralogic.settings import ENVIRONMENTS, VALIDATORS, ConfigError, load_settings
from spiralogic.settings_env import PLAYBOOK_NAMES

TOML_PATH = settings_module.CONFIG_DIR / "settings.toml"
DOCS_PATH = settings_module.PROJECT_DIR / "docs" / "configuration.md"
TOML = tomllib.loads(TOML_PATH.read_text())


def flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"rollout": {"percent": 0}}`` -> ``{"rollout.percent": 0}``."""
    flat = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


DEFAULTS = flatten(TOML["default"])


def prefixed_var(key: str) -> str:
    return "SPIRALOGIC_" + key.upper().replace(".", "__")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Only what a test sets: no SPIRALOGIC_* or playbook names leaking in from the shell."""
    for name in list(os.environ):
        if name.startswith("SPIRALOGIC_") or name in PLAYBOOK_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("SPIRALOGIC_ENV", "testing")


def config_error(**overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(overrides or None)
    return str(info.value)


# -- Defaults and environment tables -------------------------------------------


def test_defaults_load_and_validate():
    settings = load_settings()
    expected = {**DEFAULTS, **flatten(TOML["testing"])}
    for key, value in expected.items():
        assert settings.get(key) == value, key
    assert settings.current_env.lower() == "testing"
    assert (settings.orchestrator, settings.soft_budget_ms, settings.hard_budget_ms) == ("baseline", 450, 700)


def test_development_is_the_default_environment(monkeypatch):
    monkeypatch.delenv("SPIRALOGIC_ENV")
    settings = load_settings()
    assert settings.current_env.lower() == "development"
    assert settings.log_level == TOML["development"]["log_level"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_table_merges_over_default(monkeypatch, env):
    monkeypatch.setenv("SPIRALOGIC_ENV", env)
    settings = load_settings()
    # [production.server] sets host and workers only; port and worker_connections survive the merge.
    for key, value in {**DEFAULTS, **flatten(TOML[env])}.items():
        assert settings.get(key) == value, key


def test_production_values(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_ENV", "production")
    settings = load_settings()
    assert settings.server.host == "0.0.0.0"
    assert settings.server.workers == 4
    assert settings.server.port == 8000
    assert settings.server.worker_connections == 1000
    assert settings.log_level == "INFO"


def test_unknown_environment_is_refused(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_ENV", "prodution")
    message = config_error()
    assert "SPIRALOGIC_ENV" in message and "prodution" in message
    assert "\n" not in message


# -- Environment variables -------------------------------------------------------


@pytest.mark.parametrize(
    "var, raw, key, expected",
    [
        ("SPIRALOGIC_SOFT_BUDGET_MS", "500", "soft_budget_ms", 500),
        ("SPIRALOGIC_HARD_BUDGET_MS", "900", "hard_budget_ms", 900),
        ("ORCHESTRATOR", "spiralogic", "orchestrator", "spiralogic"),
        ("ARCHETYPE_MEMO_TTL", "3600", "archetype_memo_ttl", 3600),
        ("SHADOW_CHALLENGE_INTENSITY", "high", "shadow_challenge_intensity", "high"),
        ("TTS_MAX_TEXT_CHARS", "900", "tts_max_text_chars", 900),
        ("DATABASE_URL", "postgresql+psycopg://app:s3cr#t@db:5432/spiralogic?sslmode=require", "database_url",
         "postgresql+psycopg://app:s3cr#t@db:5432/spiralogic?sslmode=require"),
        ("CACHE_REDIS_URL", "redis://cache:6379/0", "cache_redis_url", "redis://cache:6379/0"),
        ("SPIRALOGIC_STORE_RAW_TEXT", "true", "store_raw_text", True),
        ("SPIRALOGIC_DATA_DIR", "/var/lib/spiralogic", "data_dir", "/var/lib/spiralogic"),
    ],
)
def test_playbook_variable_overrides_toml_with_its_type(monkeypatch, var, raw, key, expected):
    monkeypatch.setenv(var, raw)
    value = load_settings().get(key)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize("bare", sorted(PLAYBOOK_NAMES))
def test_every_bare_name_maps_to_a_setting(bare):
    assert PLAYBOOK_NAMES[bare] in DEFAULTS


@pytest.mark.parametrize("bare, prefixed", [("spiralogic", "baseline"), ("baseline", "spiralogic")])
def test_bare_name_wins_over_prefixed(monkeypatch, bare, prefixed):
    monkeypatch.setenv("ORCHESTRATOR", bare)
    monkeypatch.setenv("SPIRALOGIC_ORCHESTRATOR", prefixed)
    assert load_settings().orchestrator == bare


def test_prefixed_name_alone_applies(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_ORCHESTRATOR", "spiralogic")
    monkeypatch.setenv("SPIRALOGIC_ARCHETYPE_MEMO_TTL", "60")
    settings = load_settings()
    assert settings.orchestrator == "spiralogic"
    assert settings.archetype_memo_ttl == 60


def test_nested_prefixed_variables(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_ROLLOUT__PERCENT", "25")
    monkeypatch.setenv("SPIRALOGIC_SERVER__PORT", "9000")
    monkeypatch.setenv("SPIRALOGIC_PLUGINS__DISABLED", '["spiralogic"]')
    settings = load_settings()
    assert settings.rollout.percent == 25 and type(settings.rollout.percent) is int
    assert settings.rollout.cohort_group == DEFAULTS["rollout.cohort_group"]  # merged, not replaced
    assert settings.server.port == 9000
    assert settings.server.host == DEFAULTS["server.host"]
    assert list(settings.plugins.disabled) == ["spiralogic"]


def test_env_vars_apply_on_top_of_environment_table(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_ENV", "production")
    monkeypatch.setenv("SPIRALOGIC_SERVER__WORKERS", "8")
    settings = load_settings()
    assert settings.server.workers == 8
    assert settings.server.host == "0.0.0.0"


# -- Secrets file and overrides ---------------------------------------------------


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A copy of config/ that a test may add a .secrets.toml to."""
    directory = tmp_path / "config"
    directory.mkdir()
    shutil.copy(TOML_PATH, directory / "settings.toml")
    monkeypatch.setattr(settings_module, "CONFIG_DIR", directory)
    return directory


def test_secrets_file_layers_between_toml_and_env(config_dir, monkeypatch):
    (config_dir / ".secrets.toml").write_text(
        '[default]\nadmin_token = "from-default"\narchetype_memo_ttl = 7200\ntts_max_text_chars = 1000\n'
        '[production]\nadmin_token = "from-production"\n'
    )
    assert load_settings().admin_token == "from-default"
    monkeypatch.setenv("SPIRALOGIC_ENV", "production")
    monkeypatch.setenv("TTS_MAX_TEXT_CHARS", "1200")
    settings = load_settings()
    assert settings.admin_token == "from-production"
    assert settings.archetype_memo_ttl == 7200  # secrets beat settings.toml
    assert settings.tts_max_text_chars == 1200  # env beats secrets


def test_secrets_example_has_the_documented_shape(config_dir, monkeypatch):
    example = settings_module.PROJECT_DIR / "config" / ".secrets.toml.example"
    parsed = tomllib.loads(example.read_text())
    assert set(parsed) <= {"default", *ENVIRONMENTS}, "secrets must sit under [default] or an environment table"
    shutil.copy(example, config_dir / ".secrets.toml")
    monkeypatch.setenv("SPIRALOGIC_ENV", "production")
    load_settings()  # the example itself is a valid secrets file


def test_overrides_win_over_every_layer(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR", "spiralogic")
    monkeypatch.setenv("SPIRALOGIC_ROLLOUT__PERCENT", "25")
    settings = load_settings({"orchestrator": "baseline", "rollout.percent": 5, "server": {"port": 9100}})
    assert settings.orchestrator == "baseline"
    assert settings.rollout.percent == 5
    assert settings.server.port == 9100
    assert settings.server.host == DEFAULTS["server.host"]


def test_override_can_correct_an_invalid_environment_value(monkeypatch):
    # Validation runs once, after the overrides: not on Dynaconf's first access.
    monkeypatch.setenv("ORCHESTRATOR", "foo")
    assert load_settings({"orchestrator": "spiralogic"}).orchestrator == "spiralogic"


# -- Validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, overrides, key",
    [
        ({"ORCHESTRATOR": "foo"}, {}, "orchestrator"),
        ({"SPIRALOGIC_ORCHESTRATOR": "foo"}, {}, "orchestrator"),
        ({"SPIRALOGIC_SOFT_BUDGET_MS": "700"}, {}, "soft_budget_ms"),
        ({"SPIRALOGIC_SOFT_BUDGET_MS": "800", "SPIRALOGIC_HARD_BUDGET_MS": "600"}, {}, "soft_budget_ms"),
        ({"SPIRALOGIC_SOFT_BUDGET_MS": "0"}, {}, "soft_budget_ms"),
        ({"ARCHETYPE_MEMO_TTL": "-1"}, {}, "archetype_memo_ttl"),
        ({"SHADOW_CHALLENGE_INTENSITY": "extreme"}, {}, "shadow_challenge_intensity"),
        ({"TTS_MAX_TEXT_CHARS": "0"}, {}, "tts_max_text_chars"),
        ({"SPIRALOGIC_ROLLOUT__PERCENT": "101"}, {}, "rollout.percent"),
        ({}, {"rollout.percent": 101}, "rollout.percent"),
        ({"SPIRALOGIC_ROLLOUT__PERCENT": "-5"}, {}, "rollout.percent"),
        # wrong types
        ({"SPIRALOGIC_SOFT_BUDGET_MS": "fast"}, {}, "soft_budget_ms"),
        ({"SPIRALOGIC_SOFT_BUDGET_MS": "true"}, {}, "soft_budget_ms"),  # bool is an int subclass
        ({"TTS_MAX_TEXT_CHARS": "many"}, {}, "tts_max_text_chars"),
        ({"ARCHETYPE_MEMO_TTL": "1.5"}, {}, "archetype_memo_ttl"),
        ({"SPIRALOGIC_SERVER__PORT": "http"}, {}, "server.port"),
        ({"SPIRALOGIC_SERVER__PORT": "70000"}, {}, "server.port"),
        ({"SPIRALOGIC_STORE_RAW_TEXT": "yes"}, {}, "store_raw_text"),
        ({"SPIRALOGIC_LOG_LEVEL": "LOUD"}, {}, "log_level"),
        ({"SPIRALOGIC_MAX_REQUEST_BYTES": "10"}, {}, "max_request_bytes"),
        ({"SPIRALOGIC_PLUGINS__DISABLED": "spiralogic"}, {}, "plugins.disabled"),
        ({"SPIRALOGIC_GENERATION__PROVIDER": '""'}, {}, "generation.provider"),
        ({"SPIRALOGIC_TELEMETRY__BATCH_SIZE": "0"}, {}, "telemetry.batch_size"),
        ({}, {"database_url": 5}, "database_url"),
        # a value with a newline must not break the one-line message
        ({"ORCHESTRATOR": "foo\nbar"}, {}, "orchestrator"),
    ],
)
def test_invalid_setting_is_refused_in_one_line(monkeypatch, env, overrides, key):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    message = config_error(**overrides)
    assert "\n" not in message and "\r" not in message
    assert message.startswith("invalid configuration: ")
    assert key in message.lower()


def test_soft_budget_message_names_both_budgets(monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_SOFT_BUDGET_MS", "750")
    message = config_error().lower()
    assert "soft_budget_ms" in message and "hard_budget_ms" in message and "750" in message


# -- Meta: TOML, validators and docs stay in sync ----------------------------------

#: ``[default.plugins.<id>]`` tables belong to the component with that id, which
#: validates them when it loads; the core validators cannot know their keys.
PLUGIN_TABLE = re.compile(r"^plugins\.(?!disabled$|allowed$)[^.]+\.")


def validated_names() -> set[str]:
    return {name.lower() for validator in VALIDATORS for name in validator.names}


@pytest.mark.parametrize("key", sorted(k for k in DEFAULTS if not PLUGIN_TABLE.match(k)))
def test_every_core_key_has_a_validator(key):
    assert key in validated_names(), f"{key} in config/settings.toml has no validator in spiralogic.settings"


def test_every_validator_names_a_default_key():
    assert validated_names() <= set(DEFAULTS), "validator for a key that settings.toml does not define"


def test_environment_tables_only_override_known_keys():
    assert set(TOML) == {"default", *ENVIRONMENTS}
    for env in ENVIRONMENTS:
        unknown = set(flatten(TOML[env])) - set(DEFAULTS)
        assert not unknown, f"[{env}] sets keys missing from [default] (a typo?): {unknown}"


def test_plugin_tables_belong_to_registered_components_or_plugins():
    """A component reads the table of its id; a hook-only plugin (a guardrail) the table of its name."""
    from spiralogic.components import build_registries
    from spiralogic.plugins import build_plugin_manager

    pm = build_plugin_manager([], [])
    registries = build_registries(pm, lambda component_id: None)
    owners = {cid for registry in registries.values() for cid in registry.ids()} | {name for name, _ in pm.list_name_plugin()}
    plugin_tables = {key.split(".")[1] for key in DEFAULTS if PLUGIN_TABLE.match(key)}
    assert plugin_tables <= owners, f"[default.plugins.<id>] with no such component or plugin: {plugin_tables - owners}"


def docs_rows() -> dict[str, list[str]]:
    """The settings table of docs/configuration.md: key -> its cells."""
    rows = {}
    for line in DOCS_PATH.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`[a-z0-9_.]+`", cells[0]) and cells[0] != "`key`":
            rows[cells[0].strip("`")] = cells
    return rows


def toml_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, list)):
        return json.dumps(value)
    return str(value)


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_every_key_is_documented_with_its_default_and_env_vars(key):
    rows = docs_rows()
    assert key in rows, f"{key} is missing from the settings table of docs/configuration.md"
    _, env_vars, default, allowed, what = rows[key]
    assert default == f"`{toml_literal(DEFAULTS[key])}`", f"docs default of {key} differs from settings.toml"
    assert f"`{prefixed_var(key)}`" in env_vars
    bare = [name for name, setting in PLAYBOOK_NAMES.items() if setting == key]
    for name in bare:
        assert f"`{name}`" in env_vars
    assert allowed and what


def test_docs_table_has_no_stale_rows():
    rows = docs_rows()
    optional = {key for key, cells in rows.items() if cells[2] == "(unset)"}
    assert set(rows) - optional == set(DEFAULTS)
    for key in optional:
        # an optional key is documented in settings.toml as a commented-out line
        assert re.search(rf"^#\s*{re.escape(key.rsplit('.', 1)[-1])}\s*=", TOML_PATH.read_text(), re.M), key



def test_docs_environment_table_matches_toml():
    documented = set()
    for line in DOCS_PATH.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].strip("`") in ENVIRONMENTS and cells[1] != "(none)":
            documented.add((cells[0].strip("`"), cells[1].strip("`"), cells[2].strip("`")))
    expected = {(env, key, toml_literal(value)) for env in ENVIRONMENTS for key, value in flatten(TOML[env]).items()}
    assert documented == expected

# -- Meta: .env.production.example -----------------------------------------------

ENV_EXAMPLE = settings_module.PROJECT_DIR / ".env.production.example"
SECRET_VARS = {"SPIRALOGIC_ADMIN_TOKEN", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ELEVENLABS_API_KEY"}
#: the launch playbook's "Environment Tuning" block, names and values verbatim
PLAYBOOK_TUNING = {
    "ORCHESTRATOR": "baseline",
    "SPIRALOGIC_SOFT_BUDGET_MS": "450",
    "SPIRALOGIC_HARD_BUDGET_MS": "700",
    "ARCHETYPE_MEMO_TTL": "86400",
    "SHADOW_CHALLENGE_INTENSITY": "med",
    "TTS_MAX_TEXT_CHARS": "1500",
}


def env_example() -> dict[str, tuple[str, bool]]:
    """Variable -> (value, active); commented-out ``# NAME=value`` lines count as inactive."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"(#\s*)?([A-Z][A-Z0-9_]*)=(.*)", line.strip())
        if match:
            found[match[2]] = (match[3], match[1] is None)
    return found


def test_env_example_has_the_playbook_tuning_block_verbatim():
    variables = env_example()
    for name, value in PLAYBOOK_TUNING.items():
        assert variables.get(name) == (value, True), name
    assert variables["SPIRALOGIC_ENV"] == ("production", True)


def test_env_example_secrets_are_placeholders_only():
    variables = env_example()
    for name in SECRET_VARS:
        value, active = variables[name]
        assert not active and value == "<set-in-secret-store>", name
    assert "<set-in-secret-store>" in variables["DATABASE_URL"][0]


def test_env_example_covers_every_core_setting():
    variables = set(env_example())
    for key in DEFAULTS:
        if PLUGIN_TABLE.match(key) and not key.startswith("plugins.template."):
            continue  # other plugin tables (the load-test double) are not production settings
        names = {prefixed_var(key)} | {bare for bare, setting in PLAYBOOK_NAMES.items() if setting == key}
        assert names & variables, f"{key} has no variable in .env.production.example"


def test_env_example_names_real_settings_and_validates(monkeypatch):
    known = {prefixed_var(key) for key in DEFAULTS} | set(PLAYBOOK_NAMES) | SECRET_VARS | {"SPIRALOGIC_ENV"}
    for name, (value, _active) in env_example().items():
        assert name in known, f"{name} in .env.production.example is not a setting"
        if name not in SECRET_VARS:
            monkeypatch.setenv(name, value)
    settings = load_settings()  # every line uncommented at once is a valid production configuration
    assert settings.current_env.lower() == "production"


@pytest.mark.parametrize("key", ["generation.provider", "generation.fallback_provider"])
def test_an_unknown_generation_provider_fails_at_start_up(make_app, key):
    with pytest.raises(ConfigError, match=f"{key}: no llm_providers component 'nope'"):
        make_app(**{key: "nope"})
