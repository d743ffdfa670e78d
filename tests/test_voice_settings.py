"""The [voice] settings are checked at start-up, and the ElevenLabs key comes only from secrets."""

from __future__ import annotations

import pytest
from fake_voice_apis import API_KEY, FakeSpeechServer

from spiralogic.cli import cli
from spiralogic.migrate import upgrade
from spiralogic.settings import ConfigError, load_settings
from spiralogic.state import app_state


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"voice.allowed_presets": ["natural", "loud"]}, "voice.allowed_presets"),
        ({"voice.allowed_presets": "natural"}, "voice.allowed_presets"),
        ({"voice.broker_url": "http://queue:6379"}, "voice.broker_url"),
        ({"voice.daily_char_quota": 0}, "voice.daily_char_quota"),
        ({"voice.quota_warn_ratio": 1.5}, "voice.quota_warn_ratio"),
        ({"voice.memo_window_s": -1}, "voice.memo_window_s"),
        ({"voice.lease_s": True}, "voice.lease_s"),
        ({"voice.backend": ""}, "voice.backend"),
    ],
)
def test_a_bad_voice_setting_is_refused_naming_its_key(overrides, key):
    with pytest.raises(ConfigError) as refused:
        load_settings(overrides)
    assert key in str(refused.value).lower()


def test_the_elevenlabs_key_comes_from_its_bare_environment_variable(make_app, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", API_KEY)
    with FakeSpeechServer() as server:
        app = make_app(**{"voice.backend": "elevenlabs", "plugins.elevenlabs.base_url": server.url})
        app_state(app).registries["voice_backends"].get("elevenlabs").synthesize("Hello.", "natural")
        assert server.requests[0].headers["xi-api-key"] == API_KEY


def test_a_numeric_looking_key_stays_a_string(monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "12345")
    assert load_settings().plugins.elevenlabs.api_key == "12345"


def test_the_worker_refuses_to_start_without_its_backend(runner, tmp_path, monkeypatch):
    database = f"sqlite:///{tmp_path / 'worker.db'}"
    upgrade(database)
    for name, value in {"DATABASE_URL": database, "DATA_DIR": str(tmp_path), "VOICE__BACKEND": "elevenlabs"}.items():
        monkeypatch.setenv(f"SPIRALOGIC_{name}", value)
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    result = runner.invoke(cli, ["voice-worker", "--drain"])
    assert isinstance(result.exception, ConfigError)
    assert "voice.backend" in str(result.exception) and "ELEVENLABS_API_KEY" in str(result.exception)
