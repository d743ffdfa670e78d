"""A Dynaconf loader for the playbook's bare environment variable names.

The launch playbook tells operators to set ``ORCHESTRATOR=baseline`` or
``ARCHETYPE_MEMO_TTL=3600`` without a prefix; everything else uses the
``SPIRALOGIC_`` prefix that Dynaconf handles itself. This loader runs after
the prefixed one, so a playbook name wins over its prefixed twin.
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


def load(obj, env=None, silent=True, key=None, filename=None, validate=False):
    for name, setting in PLAYBOOK_NAMES.items():
        if name not in os.environ or (key and key.lower() != setting):
            continue
        obj.set(setting, parse_conf_data(os.environ[name], tomlfy=True, box_settings=obj))
