"""The operator's console: ``spiralogic`` in-process (CliRunner) and as the installed script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from spiralogic.cli import cli
from spiralogic.settings_env import PLAYBOOK_NAMES

PLAYBOOK_REVISION = "20250901_consciousness_turn_meta"
SCRIPT = Path(sys.executable).with_name("spiralogic")
COMMANDS = ("serve", "db", "plugins", "routes")


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


@pytest.fixture(autouse=True)
def cli_environment(monkeypatch, tmp_path, db_url):
    """Every command works on tmp_path; nothing touches the repo's instance/ folder."""
    for name in list(os.environ):
        if name.startswith("SPIRALOGIC_") or name in PLAYBOOK_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("SPIRALOGIC_ENV", "testing")
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "data"))


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The installed console script, with this test's environment plus ``env``."""
    if not SCRIPT.exists():
        pytest.skip(f"console script not installed at {SCRIPT}")
    return subprocess.run(
        [str(SCRIPT), *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


# -- Help ------------------------------------------------------------------------


def test_help_lists_every_command(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert f"  {command} " in result.output


@pytest.mark.parametrize(
    "args",
    [["serve"], ["db"], ["db", "upgrade"], ["db", "current"], ["plugins"], ["routes"]],
    ids=" ".join,
)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_on_each_subcommand(runner, args, flag):
    result = runner.invoke(cli, [*args, flag])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {' '.join(args)}")


def test_help_needs_no_valid_configuration(runner, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR", "foo")
    assert runner.invoke(cli, ["plugins", "--help"]).exit_code == 0


def test_installed_script_help():
    result = run_script("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: spiralogic ")
    for command in COMMANDS:
        assert f"  {command} " in result.stdout


# -- db ----------------------------------------------------------------------------


def head_revision(url: str) -> str:
    from alembic.script import ScriptDirectory

    from spiralogic.migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def test_db_upgrade_then_current(runner, db_url, tmp_path):
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "(empty database)"

    result = runner.invoke(cli, ["db", "upgrade", "--revision", PLAYBOOK_REVISION])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "cli.db") in result.output
    engine = sa.create_engine(db_url)
    try:
        assert "consciousness_turn_meta" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    result = runner.invoke(cli, ["db", "current"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == PLAYBOOK_REVISION

    # later revisions build on the playbook's table
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["db", "current"]).output.strip() == head_revision(db_url)


def test_db_upgrade_is_idempotent(runner, db_url):
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["db", "current"]).output.strip() == head_revision(db_url)


def test_db_upgrade_as_a_real_process(db_url):
    upgrade = run_script("db", "upgrade", "--revision", PLAYBOOK_REVISION)
    assert upgrade.returncode == 0, upgrade.stderr
    result = run_script("db", "current")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == PLAYBOOK_REVISION


# -- plugins and routes ------------------------------------------------------------


def plugin_blocks(output: str) -> dict[str, list[str]]:
    """``name  (module version)`` lines, each followed by indented detail lines."""
    blocks: dict[str, list[str]] = {}
    for line in output.splitlines():
        if line and not line.startswith(" "):
            blocks[line.split()[0]] = []
        elif line.strip():
            blocks[list(blocks)[-1]].append(line.strip())
    return blocks


@pytest.mark.parametrize(
    "name, hook, component",
    [
        ("baseline", "register_orchestrators", "orchestrators:baseline"),
        ("spiralogic", "register_orchestrators", "orchestrators:spiralogic"),
        ("template_voice", "register_llm_providers", "llm_providers:template"),
    ],
)
def test_plugins_lists_builtins_with_hooks(runner, name, hook, component):
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    details = plugin_blocks(result.output)[name]
    hooks = next(line for line in details if line.startswith("hooks:"))
    assert hook in hooks
    assert any(component in line for line in details if line.startswith("provides:"))


def test_plugins_json(runner):
    result = runner.invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"baseline", "spiralogic", "template_voice"} <= set(rows)
    assert all(row["hooks"] for row in rows.values())
    assert "register_orchestrators" in rows["baseline"]["hooks"]


def test_plugins_respects_disabled_setting(runner, monkeypatch):
    monkeypatch.setenv("SPIRALOGIC_PLUGINS__DISABLED", '["simulated_upstream"]')
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    names = set(plugin_blocks(result.output))
    assert "simulated_upstream" not in names
    assert {"baseline", "spiralogic", "template_voice"} <= names


def test_routes_lists_chat_endpoint(runner):
    result = runner.invoke(cli, ["routes"])
    assert result.exit_code == 0, result.output
    methods = {line.split()[1]: line.split()[0] for line in result.output.splitlines()}
    assert methods["/api/oracle/chat"] == "POST"


# -- Bad configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["routes"], ["plugins"], ["db", "upgrade"], ["db", "current"], ["serve"]], ids=" ".join
)
def test_bad_setting_exits_2_with_one_line(args):
    result = run_script(*args, ORCHESTRATOR="foo")
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "orchestrator" in lines[0] and "foo" in lines[0]
    assert result.stdout == ""


def test_unknown_environment_exits_2():
    result = run_script("routes", SPIRALOGIC_ENV="prodution")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "SPIRALOGIC_ENV" in result.stderr


def test_serving_imports_no_database_driver_before_gevent_patches_the_workers():
    """psycopg picks its wait function at import: imported in gunicorn's master (before the
    workers' monkey-patching) it would block every worker's event loop on each query."""
    probe = "import sys, spiralogic.cli, spiralogic.serve; print(sorted(m for m in ('psycopg', 'huey') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_database_that_is_away_is_one_line_not_a_traceback(tmp_path):
    env = {**os.environ, "SPIRALOGIC_ENV": "testing", "DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/test"}
    result = subprocess.run([str(Path(sys.executable).with_name("spiralogic")), "mode", "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 3
    assert result.stderr.startswith("database unavailable:") and len(result.stderr.strip().splitlines()) == 1
