"""ElevenLabs text to speech (backend id ``elevenlabs``), over its HTTP API with httpx.

One request per job: ``POST {base_url}/v1/text-to-speech/{voice_id}`` with the
``xi-api-key`` header, answered with the audio (MP3 by default). The key
comes from ``ELEVENLABS_API_KEY`` (or the secrets file), never from
settings.toml, and is never logged. The expressive preset uses
``expressive_model_id`` (eleven_v3), which renders tags such as
``[whispers]``; the other presets use ``model_id``.

A 4xx answer other than 429 cannot succeed on retry (bad key, unknown voice,
text refused) and ends the job at once; 429, 5xx and network faults are
retried by the worker with backoff.
"""

from __future__ import annotations

from typing import Any, Mapping

import httpx

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.hookspecs import Register
from spiralogic.voice import EXPRESSIVE, SynthesisRejected

DEFAULTS: dict[str, Any] = {
    "base_url": "https://api.elevenlabs.io",
    "voice_id": "JBFqnCBsd6RMkjVDRZzb",
    "model_id": "eleven_multilingual_v2",
    "expressive_model_id": "eleven_v3",
    "output_format": "mp3_44100_128",
    "timeout_s": 30,
}
#: preset -> voice_settings; eleven_v3 accepts only stability 0.0 (creative), 0.5 or 1.0
VOICE_SETTINGS: dict[str, dict[str, Any]] = {
    "natural": {"stability": 0.5, "similarity_boost": 0.75, "style": 0.0, "use_speaker_boost": True},
    "calm": {"stability": 0.8, "similarity_boost": 0.75, "style": 0.0, "use_speaker_boost": True, "speed": 0.9},
    "expressive": {"stability": 0.0, "similarity_boost": 0.75, "style": 0.6, "use_speaker_boost": True},
}
DETAIL_CHARS = 200


@hookimpl
def register_voice_backends(register: Register) -> None:
    register("elevenlabs", ElevenLabsVoice.from_context)


class ElevenLabsVoice:
    def __init__(self, client: httpx.Client, settings: Mapping[str, Any]):
        self.client = client
        self.settings = settings

    @classmethod
    def from_context(cls, context: PluginContext) -> ElevenLabsVoice:
        settings = {**DEFAULTS, **context.config}
        if not settings.get("api_key"):
            raise ValueError("ElevenLabs needs an API key: set ELEVENLABS_API_KEY")
        client = httpx.Client(
            base_url=settings["base_url"],
            headers={"xi-api-key": settings["api_key"]},
            timeout=httpx.Timeout(float(settings["timeout_s"])),
        )
        return cls(client, settings)

    def synthesize(self, text: str, preset: str) -> tuple[bytes, str]:
        if preset not in VOICE_SETTINGS:
            raise SynthesisRejected(f"unknown voice preset {preset!r}")
        model = self.settings["expressive_model_id" if preset == EXPRESSIVE else "model_id"]
        response = self.client.post(
            f"/v1/text-to-speech/{self.settings['voice_id']}",
            params={"output_format": self.settings["output_format"]},
            json={"text": text, "model_id": model, "voice_settings": VOICE_SETTINGS[preset]},
        )
        if 400 <= response.status_code < 500 and response.status_code != 429:
            raise SynthesisRejected(f"ElevenLabs refused the request ({response.status_code}): {_detail(response)}")
        response.raise_for_status()
        return response.content, response.headers.get("content-type", "audio/mpeg").split(";")[0].strip()

    def status(self) -> dict[str, Any]:
        return {"voice_id": self.settings["voice_id"], "model_id": self.settings["model_id"]}


def _detail(response: httpx.Response) -> str:
    """The error's message: ElevenLabs answers {"detail": {"message": ...}} or {"detail": "..."}."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:DETAIL_CHARS]
    detail = body.get("detail", "") if isinstance(body, dict) else body
    message = detail.get("message", "") if isinstance(detail, dict) else detail
    return str(message)[:DETAIL_CHARS]
