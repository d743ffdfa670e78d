"""OpenAI text to speech (backend id ``openai_tts``), through the official ``openai`` client.

``client.audio.speech.create`` with the configured model and voice. The key is
the client's own ``OPENAI_API_KEY`` (or ``[plugins.openai_tts] api_key`` from
the secrets file). Presets become spoken ``instructions`` on models that take
them (gpt-4o-mini-tts; not tts-1) and a slower ``speed`` for calm. The client
comes with the providers extra: ``pip install 'spiralogic[providers]'``.

Requests the API refuses (bad request, bad key, no access, unknown model) end
the job at once; rate limits, server errors and timeouts are retried by the
worker with backoff.
"""

from __future__ import annotations

from typing import Any, Mapping

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.hookspecs import Register
from spiralogic.voice import SynthesisRejected
from spiralogic.voice.text import strip_tags

DEFAULTS: dict[str, Any] = {"base_url": "", "model": "gpt-4o-mini-tts", "voice": "alloy", "response_format": "mp3", "timeout_s": 30}
INSTRUCTIONS = {
    "natural": "Speak naturally, warmly and clearly.",
    "calm": "Speak slowly and calmly, in a gentle, grounding tone.",
    "expressive": "Speak expressively, with warmth and lively intonation.",
}
SPEED = {"calm": 0.9}
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/L16",
}


@hookimpl
def register_voice_backends(register: Register) -> None:
    register("openai_tts", OpenAISpeech.from_context)


class OpenAISpeech:
    def __init__(self, client: Any, settings: Mapping[str, Any]):
        self.client = client
        self.settings = settings

    @classmethod
    def from_context(cls, context: PluginContext) -> OpenAISpeech:
        try:
            import openai
        except ImportError:
            raise ImportError("OpenAI speech needs the openai client: pip install 'spiralogic[providers]'") from None
        settings = {**DEFAULTS, **context.config}
        if settings["response_format"] not in CONTENT_TYPES:
            raise ValueError(f"plugins.openai_tts.response_format must be one of {', '.join(CONTENT_TYPES)}")
        # max_retries=0: the voice worker retries, with backoff, and records every attempt.
        client = openai.OpenAI(
            api_key=settings.get("api_key") or None,
            base_url=settings["base_url"] or None,
            timeout=float(settings["timeout_s"]),
            max_retries=0,
        )
        return cls(client, settings)

    def synthesize(self, text: str, preset: str) -> tuple[bytes, str]:
        import openai

        if preset not in INSTRUCTIONS:
            raise SynthesisRejected(f"unknown voice preset {preset!r}")
        options: dict[str, Any] = {"speed": SPEED[preset]} if preset in SPEED else {}
        if not self.settings["model"].startswith("tts-1"):
            options["instructions"] = INSTRUCTIONS[preset]
        try:
            speech = self.client.audio.speech.create(
                model=self.settings["model"],
                voice=self.settings["voice"],
                input=strip_tags(text),
                response_format=self.settings["response_format"],
                **options,
            )
        except openai.AuthenticationError:
            # Its message quotes part of the key: keep it out of the job row and the logs.
            raise SynthesisRejected("OpenAI refused the API key (401)") from None
        except (openai.BadRequestError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
            raise SynthesisRejected(f"OpenAI refused the request ({exc.status_code}): {exc.message}") from None
        return speech.content, CONTENT_TYPES[self.settings["response_format"]]
