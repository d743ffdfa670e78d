"""The text a voice backend gets: the length guard cuts at sentence ends; tags stay only when asked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spiralogic.voice.text import fit, memo_key, strip_tags

REPLY = "Let's slow down. What matters most to you here? Name one small step! Then take it."


@pytest.mark.parametrize(
    "limit, expected",
    [
        (len(REPLY), REPLY),
        (40, "Let's slow down."),
        (47, "Let's slow down. What matters most to you here?"),
        (70, "Let's slow down. What matters most to you here? Name one small step!"),
    ],
)
def test_a_long_reply_is_cut_after_the_last_whole_sentence(limit, expected):
    assert fit(REPLY, limit) == expected


def test_closing_quotes_stay_with_their_sentence():
    assert fit('She said "be gentle." Then she left the room quietly.', 30) == 'She said "be gentle."'


def test_without_a_sentence_end_the_cut_falls_between_words():
    assert fit("one two three four five six", 14) == "one two three"
    assert fit("x" * 50, 10) == "x" * 10


def test_decimal_points_and_abbreviations_inside_words_are_not_sentence_ends():
    assert fit("Breathe for 4.5 seconds and rest. Then again.", 40) == "Breathe for 4.5 seconds and rest."


@given(st.text(min_size=1, max_size=300), st.integers(min_value=1, max_value=200))
def test_the_cut_never_exceeds_the_limit_and_is_a_prefix(text, limit):
    cut = fit(text, limit)
    assert len(cut) <= limit
    assert text.strip().startswith(cut)


def test_strip_tags_removes_expressive_tags_only():
    assert strip_tags("[whispers] Breathe in. [sighs] And out [2].") == "Breathe in. And out [2]."


def test_memo_key_depends_on_backend_preset_and_text():
    variants = [("local", "natural", "Hi."), ("local", "calm", "Hi."), ("elevenlabs", "natural", "Hi."), ("local", "natural", "Hi!")]
    keys = {memo_key(*variant) for variant in variants}
    assert len(keys) == 4
    assert memo_key("local", "natural", "Hi.") == memo_key("local", "natural", "Hi.")


def test_any_whitespace_is_a_word_boundary():
    assert fit("first line\nsecond line", 15) == "first line"
