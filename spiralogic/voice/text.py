"""What text is sent to a voice backend: cut to the length guard, tags kept or dropped.

``TTS_MAX_TEXT_CHARS`` bounds cost and latency; a reply longer than that is
cut at the last sentence end that fits, so the listener never hears half a
sentence. Expressive tags (``[whispers]``, ``[laughs]``: the "SFX" of the
playbook) survive only for the expressive preset while the queue is healthy.
"""

from __future__ import annotations

import hashlib
import re

#: a sentence ends at . ! ? or … (closing quotes and brackets may follow) before a space or the end
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")
SPACE = re.compile(r"\s")
#: an expressive tag: one to four lower-case words in square brackets
TAG = re.compile(r"\[[a-z]+(?: [a-z]+){0,3}\]\s?")


def fit(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its longest prefix of whole sentences.

    With no sentence end in reach, the cut falls at the last word boundary,
    and only a single word longer than the limit is cut mid-word.
    """
    text = text.strip()
    if len(text) <= limit:
        return text
    head = text[: limit + 1]
    ends = [match.end() for match in SENTENCE_END.finditer(head) if match.end() <= limit]
    if ends:
        return text[: ends[-1]]
    space = max((match.start() for match in SPACE.finditer(head)), default=-1)
    return (text[:space] if space > 0 else text[:limit]).rstrip()


def strip_tags(text: str) -> str:
    """The text without expressive tags, for presets and backends that would read them aloud."""
    return " ".join(TAG.sub("", text).split())


def memo_key(backend: str, preset: str, text: str) -> str:
    """Identical (backend, preset, text) share one key, so they share one synthesis."""
    return hashlib.sha256("\x1f".join((backend, preset, text)).encode()).hexdigest()
