"""A real third-party plugin, installed with pip, found through its entry point.

``tests/example_plugin`` is the worked example of docs/plugins.md. It is
installed once per module into a temporary ``--target`` directory; every
check then runs in a subprocess with that directory on ``PYTHONPATH``, so
the plugin is discovered exactly as an operator's ``pip install`` would make
it discoverable (``importlib.metadata`` reads entry points from sys.path),
without touching the project's venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
EXAMPLE_SOURCE = TESTS_DIR / "example_plugin"
VENV_BIN = Path(sys.executable).parent
PLUGIN = "example_guardrail"
MARKER = "(Checked by the example guardrail.)"
# Bare names the settings loader honours; a stray one in the caller's shell would win over ours.
PLAYBOOK_NAMES = ("ORCHESTRATOR", "ARCHETYPE_MEMO_TTL", "SHADOW_CHALLENGE_INTENSITY", "TTS_MAX_TEXT_CHARS", "DATABASE_URL", "CACHE_REDIS_URL")


def _pip_install(source: Path, target: Path) -> None:
    """Install ``source`` into ``target``; without ``wheel`` in the venv, let pip build in isolation."""
    base = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "--target", str(target)]
    offline = subprocess.run([*base, "--no-build-isolation", str(source)], capture_output=True, text=True)
    if offline.returncode == 0:
        return
    isolated = subprocess.run([*base, str(source)], capture_output=True, text=True)
    assert isolated.returncode == 0, f"pip install failed:\n{offline.stderr}\n{isolated.stdout}\n{isolated.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The directory the example plugin was pip-installed into."""
    root = tmp_path_factory.mktemp("third_party")
    # Build from a copy: setuptools writes build/ and *.egg-info beside the sources.
    source = root / "src"
    shutil.copytree(EXAMPLE_SOURCE, source)
    target = root / "site"
    _pip_install(source, target)
    assert (target / "spiralogic_example_guardrail.py").is_file()
    return target


@pytest.fixture
def run(installed, tmp_path):
    """Run a command with the plugin importable and settings pointed at this test's files."""

    def run_command(args, **extra_env):
        env = {key: value for key, value in os.environ.items() if not key.startswith("SPIRALOGIC_") and key not in PLAYBOOK_NAMES}
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(installed), os.environ.get("PYTHONPATH")])),
            SPIRALOGIC_ENV="testing",
            SPIRALOGIC_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
            SPIRALOGIC_DATA_DIR=str(tmp_path / "cli-data"),
            **extra_env,
        )
        result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    return run_command


CHAT_SNIPPET = textwrap.dedent(
    """
    import json, sys
    from spiralogic import create_app
    from spiralogic.migrate import upgrade
    from spiralogic.state import app_state

    url = f"sqlite:///{sys.argv[1]}/x.db"
    upgrade(url)
    app = create_app({"database_url": url, "data_dir": f"{sys.argv[1]}/data"})
    response = app.test_client().post(
        "/api/oracle/chat",
        json={"userId": "third-party", "text": "A storm is raging in me", "element": "water"},
    )
    state = app_state(app)
    state.telemetry.close()
    with state.engine.connect() as conn:
        metadata = conn.exec_driver_sql("SELECT metadata FROM consciousness_turn_meta").scalar_one()
    metadata = metadata if isinstance(metadata, dict) else json.loads(metadata)
    print(json.dumps({"status": response.status_code, "body": response.get_json(), "metadata": metadata}))
    """
)


def listed_plugins(run, **env):
    rows = json.loads(run([str(VENV_BIN / "spiralogic"), "plugins", "--json"], **env))
    return {row["name"]: row for row in rows}


def chat_turn(run, tmp_path, **env):
    out = run([sys.executable, "-c", CHAT_SNIPPET, str(tmp_path)], **env)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == 200, result
    return result["body"]["data"], result["metadata"]


def test_cli_lists_the_installed_plugin_and_its_hooks(run):
    plugins = listed_plugins(run)
    assert PLUGIN in plugins, sorted(plugins)
    row = plugins[PLUGIN]
    assert set(row["hooks"]) == {"assess_input", "shape_response"}
    assert row["module"] == "spiralogic_example_guardrail"
    assert row["version"] == "0.1.0"
    assert "baseline" in plugins  # the built-ins still load beside it


def test_installed_plugin_shapes_a_chat_reply(run, tmp_path):
    data, metadata = chat_turn(run, tmp_path)
    assert data["message"].endswith(MARKER)  # shape_response ran
    # assess_input ran: its tag reached the telemetry row, and "storm" asked for grounding
    assert metadata["guardrails"][PLUGIN] == "seen"
    assert data["safety"]["grounding"] is True


def test_disabled_by_environment_variable(run, tmp_path):
    disabled = {"SPIRALOGIC_PLUGINS__DISABLED": json.dumps([PLUGIN])}
    assert PLUGIN not in listed_plugins(run, **disabled)
    data, metadata = chat_turn(run, tmp_path, **disabled)
    assert MARKER not in data["message"]
    assert PLUGIN not in metadata.get("guardrails", {})
