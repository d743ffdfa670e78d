"""Meta-tests of the hook contract, and a test for every hook the core calls.

The contract (spiralogic/hookspecs.py), the plugin guide (docs/plugins.md)
and the tests must not drift apart: every hook has a docstring, is documented
under its family with its exact signature, is called by the core, and is
implemented by a built-in plugin or exercised by a test. Hooks without a
test elsewhere are tested below, through throwaway plugins registered with
``make_app(plugins=[...])`` and a real chat turn.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import pluggy
import pytest
import sqlalchemy as sa

from spiralogic import hookimpl, hookspecs
from spiralogic.components import DuplicateComponentError
from spiralogic.plugins import ENTRY_POINT_GROUP, build_plugin_manager
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta
from spiralogic.turn import Archetype, Assessment

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
HOOKSPECS_SOURCE = Path(inspect.getfile(hookspecs))
THIS_FILE = Path(__file__).resolve()
CHAT_BODY = {"userId": "hook-tester", "text": "Help me find clarity", "element": "air"}

def _hookspecs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and getattr(fn, "spiralogic_spec", None) is not None
    }


HOOKS = _hookspecs()
HOOK_NAMES = sorted(HOOKS)


def signature_line(name: str) -> str:
    return f"{name}({', '.join(inspect.signature(HOOKS[name]).parameters)})"


def hook_families() -> dict[str, str]:
    """hook -> the banner comment it sits under in hookspecs.py (``# -- Family ---``)."""
    families, family = {}, None
    for line in HOOKSPECS_SOURCE.read_text(encoding="utf-8").splitlines():
        banner = re.match(r"# -- (.+?) -+$", line)
        if banner:
            family = banner.group(1)
        definition = re.match(r"def (\w+)\(", line)
        if definition and definition.group(1) in HOOKS:
            families[definition.group(1)] = family
    return families


def documented_signatures() -> dict[str, str]:
    """Code lines of the guide's hook reference -> the ``###`` heading they appear under."""
    text = DOCS.read_text(encoding="utf-8")
    reference = text.split("## Hook reference", 1)[1].split("\n## ", 1)[0]
    found, heading, in_code = {}, None, False
    for line in reference.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif in_code and re.fullmatch(r"\w+\([\w, ]*\)", line.strip()):
            found[line.strip()] = heading
        elif line.startswith("### "):
            heading = line[4:].strip()
    return found


def builtin_hook_implementations() -> set[str]:
    """Hooks implemented by the plugins this project ships (its own entry points)."""
    implemented = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is None or ep.dist.name != "spiralogic":
            continue
        module = ep.load()
        implemented |= {name for name, value in vars(module).items() if getattr(value, "spiralogic_impl", None) is not None}
    return implemented


def is_tested_elsewhere(name: str) -> bool:
    pattern = re.compile(rf"\b{name}\b")
    return any(pattern.search(path.read_text(encoding="utf-8")) for path in (ROOT / "tests").rglob("*.py") if path.resolve() != THIS_FILE)


def has_test_here(name: str) -> bool:
    return any(test.startswith(f"test_{name}_") for test in globals())


# -- The contract, the docs and the tests agree ------------------------------


def test_the_contract_declares_hooks():
    assert {"startup", "register_orchestrators", "assess_input", "shape_response", "score_response", "turn_completed"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hookspec_has_a_docstring(name):
    doc = inspect.getdoc(HOOKS[name])
    assert doc and len(doc.split()) >= 5, f"hookspec {name} needs a docstring stating its contract"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented_with_its_exact_signature(name):
    documented = documented_signatures()
    line = signature_line(name)
    assert line in documented, f"docs/plugins.md must show `{line}` in a code block of its Hook reference"
    family = hook_families()[name]
    assert documented[line] == family, f"`{line}` belongs under the heading '### {family}', not '{documented[line]}'"


def test_the_docs_document_no_hook_that_does_not_exist():
    stale = set(documented_signatures()) - {signature_line(name) for name in HOOKS}
    assert not stale, f"docs/plugins.md documents hooks not in spiralogic/hookspecs.py: {sorted(stale)}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_called_by_the_core(name):
    core = [p for p in (ROOT / "spiralogic").glob("*.py") if p.resolve() != HOOKSPECS_SOURCE.resolve()]
    pattern = re.compile(rf"hook\.{name}\(|[\"']{name}[\"']")
    assert any(pattern.search(p.read_text(encoding="utf-8")) for p in core), f"no module in spiralogic/ ever calls {name}"


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_implemented_or_tested(name):
    assert name in builtin_hook_implementations() or is_tested_elsewhere(name) or has_test_here(name), (
        f"{name}: no built-in plugin implements it and no test exercises it; add a test_{name}_... here"
    )


# -- Helpers for the hook tests ---------------------------------------------


def chat(app, headers=None, **body):
    response = app.test_client().post("/api/oracle/chat", json={**CHAT_BODY, **body}, headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def stored_metadata(app, turn_id):
    """The ``metadata`` column of a turn's telemetry row, once the writer has flushed."""
    state = app_state(app)
    state.telemetry.flush()
    table = ConsciousnessTurnMeta.__table__
    with state.engine.connect() as conn:
        value = conn.execute(sa.select(table.c.metadata).where(table.c.id == uuid.UUID(turn_id))).scalar_one()
    return value if isinstance(value, dict) else json.loads(value)


class Named:
    """A throwaway plugin with a stable name (pluggy names nameless objects by id)."""

    def __init__(self, name):
        self.__name__ = name


class ChallengeSetter(Named):
    """Offers a shadow challenge, first of all shapers, so later guardrails can take it away."""

    @hookimpl(tryfirst=True)
    def shape_response(self, draft):
        draft.challenge = {"prompt": "What are you avoiding?", "intensity": "med"}


# -- Start-up ----------------------------------------------------------------


def test_startup_is_called_once_with_the_built_app(make_app):
    class Probe:
        def __init__(self):
            self.apps = []

        @hookimpl
        def startup(self, app):
            assert app_state(app).registries["orchestrators"].ids()  # built before start-up
            self.apps.append(app)

    probe = Probe()
    app = make_app(plugins=[probe])
    assert probe.apps == [app]


def test_startup_that_raises_stops_the_app(make_app):
    class Broken:
        @hookimpl
        def startup(self):
            raise RuntimeError("backend unreachable")

    with pytest.raises(RuntimeError, match="backend unreachable"):
        make_app(plugins=[Broken()])


# -- Provider families -------------------------------------------------------


def test_register_archetype_providers_feeds_fusion_with_its_config(make_app):
    class Lighthouse:
        def __init__(self, weight):
            self.weight = weight

        def archetypes(self, turn):
            return [Archetype("Lighthouse", self.weight, "probe")]

    class Provider:
        @hookimpl
        def register_archetype_providers(self, register):
            register("lighthouse", lambda context: Lighthouse(context.config["weight"]))

    app = make_app(plugins=[Provider()], **{"plugins.lighthouse": {"weight": 0.9}})
    data = chat(app, headers={"x-experiment-spiralogic": "on"})
    assert data["mode"] == "full"
    assert data["archetypes"][0]["name"] == "Lighthouse"
    assert "lighthouse" in app_state(app).registries["archetype_providers"].ids()


def test_register_voice_backends_builds_a_backend(make_app):
    class Silence:
        def synthesize(self, text, preset):
            return b"\x00" * len(text), "audio/wav"

    class Provider(Named):
        @hookimpl
        def register_voice_backends(self, register):
            register("silence", lambda context: Silence())

    registry = app_state(make_app(plugins=[Provider("silence_plugin")])).registries["voice_backends"]
    assert "silence" in registry.ids()
    assert registry.owner("silence") == "silence_plugin"
    assert registry.get("silence").synthesize("hi", "calm") == (b"\x00\x00", "audio/wav")


def test_register_alert_channels_builds_a_channel(make_app):
    class Memory:
        def __init__(self):
            self.alerts = []

        def notify(self, alert):
            self.alerts.append(alert)

    class Provider:
        @hookimpl
        def register_alert_channels(self, register):
            register("memory", lambda context: Memory())

    registry = app_state(make_app(plugins=[Provider()])).registries["alert_channels"]
    channel = registry.get("memory")
    channel.notify({"name": "p95", "state": "firing"})
    assert channel.alerts == [{"name": "p95", "state": "firing"}]


@pytest.mark.parametrize("taken_id", ["twin", "baseline"])
def test_duplicate_component_id_fails_at_start_up(make_app, taken_id):
    class Twin(Named):
        @hookimpl
        def register_orchestrators(self, register):
            register(taken_id, lambda context: object())

    plugins = [Twin("twin_a"), Twin("twin_b")] if taken_id == "twin" else [Twin("twin_a")]
    with pytest.raises(DuplicateComponentError, match=taken_id):
        make_app(plugins=plugins)


# -- Guardrails --------------------------------------------------------------


def test_assess_input_verdicts_reach_the_turn_and_its_row(make_app):
    class Assessor:
        seen = []

        @hookimpl
        def assess_input(self, turn):
            self.seen.append(turn.text)
            return Assessment(worldview="pragmatic", instructions=["offer grounding"], tags={"probe": "assessed"})

    class Reader:
        assessments = []

        @hookimpl
        def shape_response(self, turn):
            self.assessments.append(turn.assessment)

    app = make_app(plugins=[Assessor(), Reader()])
    data = chat(app)
    assert Assessor.seen == [CHAT_BODY["text"]]
    assert Reader.assessments[0].worldview == "pragmatic"  # the merged verdict is on the turn
    assert data["safety"]["grounding"] is True
    metadata = stored_metadata(app, data["turnId"])
    assert metadata["guardrails"]["probe"] == "assessed"
    assert metadata["worldview"] == "pragmatic"


def test_assess_input_that_raises_fails_safe(make_app):
    class Broken(Named):
        @hookimpl
        def assess_input(self, turn):
            raise RuntimeError("classifier down")

    control = chat(make_app(plugins=[ChallengeSetter("challenger")]))
    assert control["challenge"] is not None  # without the failure the challenge would stand

    app = make_app(plugins=[ChallengeSetter("challenger"), Broken("broken_assessor")])
    data = chat(app)
    assert data["challenge"] is None
    assert data["safety"]["grounding"] is True
    assert data["message"].strip()
    assert stored_metadata(app, data["turnId"])["guardrails"]["guardrail_error"] is True


def test_shape_response_changes_the_reply(make_app):
    class Shaper:
        drafts = []

        @hookimpl
        def shape_response(self, turn, draft):
            self.drafts.append(draft.text)
            draft.text += " [shaped]"

    data = chat(make_app(plugins=[Shaper()]))
    assert Shaper.drafts and Shaper.drafts[0].strip()  # it saw the orchestrator's draft
    assert data["message"] == Shaper.drafts[0] + " [shaped]"


def test_shape_response_that_raises_still_answers_without_challenge(make_app):
    class Broken(Named):
        @hookimpl
        def shape_response(self, draft):
            raise RuntimeError("shaper bug")

    app = make_app(plugins=[ChallengeSetter("challenger"), Broken("broken_shaper")])
    client = app.test_client()
    response = client.post("/api/oracle/chat", json=CHAT_BODY)
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["message"].strip()
    assert data["challenge"] is None
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        resonance = conn.execute(sa.text("SELECT resonance FROM consciousness_turn_meta")).scalar_one()
    resonance = resonance if isinstance(resonance, dict) else json.loads(resonance)
    assert "guardrail:broken_shaper" in resonance["error"]


# -- Evaluation --------------------------------------------------------------


def test_score_response_is_stored_as_quality_score(make_app):
    class Abstains:
        @hookimpl
        def score_response(self, turn, draft):
            return None

    class Scores:
        @hookimpl
        def score_response(self, turn, draft):
            assert draft.text.strip()
            return 0.73

    # Registered both ways round: an abstaining scorer never hides the one that answers.
    for plugins in ([Abstains(), Scores()], [Scores(), Abstains()]):
        app = make_app(plugins=plugins)
        data = chat(app)
        assert stored_metadata(app, data["turnId"])["qualityScore"] == 0.73


def test_score_response_that_raises_does_not_break_the_turn(make_app):
    class Broken:
        @hookimpl
        def score_response(self):
            raise RuntimeError("judge down")

    response = make_app(plugins=[Broken()]).test_client().post("/api/oracle/chat", json=CHAT_BODY)
    assert response.status_code == 200


# -- Operations --------------------------------------------------------------


def test_turn_completed_sees_the_turn_and_its_row(make_app):
    class Observer:
        seen = []

        @hookimpl
        def turn_completed(self, turn, record):
            self.seen.append((turn.turn_id, record))

    app = make_app(plugins=[Observer()])
    data = chat(app)
    app_state(app).telemetry.flush()
    assert len(Observer.seen) == 1
    turn_id, record = Observer.seen[0]
    assert turn_id == record.id == data["turnId"]
    assert record.orchestrator == data["orchestrator"]
    assert "latencyMs" in record.metadata


def test_turn_completed_that_raises_loses_no_row(make_app):
    class Broken:
        @hookimpl
        def turn_completed(self):
            raise RuntimeError("statsd down")

    app = make_app(plugins=[Broken()])
    data = chat(app)
    assert "latencyMs" in stored_metadata(app, data["turnId"])


# -- Misspelled hooks --------------------------------------------------------


class Misspelled:
    @hookimpl
    def assess_inputs(self, turn):  # not a hook: should be assess_input
        return None


def test_misspelled_hook_in_an_entry_point_plugin_fails_at_boot(monkeypatch):
    def load_setuptools_entrypoints(self, group, name=None):
        self.register(Misspelled(), name="typo")
        return 1

    monkeypatch.setattr(pluggy.PluginManager, "load_setuptools_entrypoints", load_setuptools_entrypoints)
    with pytest.raises(pluggy.PluginValidationError, match="assess_inputs"):
        build_plugin_manager([], [])


def test_misspelled_hook_in_a_registered_plugin_fails_at_boot(make_app):
    with pytest.raises(pluggy.PluginValidationError, match="assess_inputs"):
        make_app(plugins=[Misspelled()])
