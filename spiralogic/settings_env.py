"""A Dynaconf loader for the playbook's bare environment variable names.

The launch playbook tells operators to set ``ORCHESTRATOR=baseline`` or
``ARCHETYPE_MEMO_TTL=3600`` without a prefix; everything else uses the
``SPIRALOGIC_`` prefix that Dynaconf handles itself. This loader runs after
the prefixed one, so a playbook name wins over its prefixed twin. It also reads
the LLM vendors' own key variables (``OPENAI_API_KEY``...) into their
provider's table.
"""

from __future__ import annotations

import os

from dynaconf.utils.parse_conf import parse_conf_data

#: bare environment variable -> setting it overrides
PLAYBOOK_NAMES = {
    "ORCHESTRATOR": "orchestrator",
    "ARCHETYPE_MEMO_TTL": "archetype_memo_ttl",
    "SHADOW_CHALLENGE_INTENSITY": "shadow_challenge_intensity",
    "TTS_MAX_TEXT_CHARS": "tts_max_text_chars",
    "DATABASE_URL": "database_url",
    "CACHE_REDIS_URL": "cache_redis_url",
}
#: provider credentials, under the names the vendors' own tools read. Kept apart from
#: PLAYBOOK_NAMES because they have no default in settings.toml (secrets never go there),
#: and taken verbatim: a key must stay a string even if it happens to parse as TOML.
SECRET_NAMES = {
    "OPENAI_API_KEY": "plugins.openai.api_key",
    "ANTHROPIC_API_KEY": "plugins.anthropic.api_key",
    "ELEVENLABS_API_KEY": "plugins.elevenlabs.api_key",
}


def load(obj, env=None, silent=True, key=None, filename=None, validate=False):
    for name, setting in {**PLAYBOOK_NAMES, **SECRET_NAMES}.items():
        if name not in os.environ or (key and key.lower() != setting):
            continue
        raw = os.environ[name]
        obj.set(setting, raw if name in SECRET_NAMES else parse_conf_data(raw, tomlfy=True, box_settings=obj))
