"""Follow-up questions rewritten into standalone queries before retrieval (heuristically; the
rules are deterministic so the same conversation always retrieves the same sources)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_LANG_SWITCH = {
    "en": re.compile(r"^\s*(och\s+)?(på\s+engelska|in\s+english)\s*\??\s*$", re.I),
    "sv": re.compile(r"^\s*(and\s+)?(in\s+swedish|på\s+svenska)\s*\??\s*$", re.I),
}
_FOLLOW_UP = re.compile(
    r"^\s*(och|men|samt|också|även|hur\s+är\s+det\s+med|vad\s+gäller|and|but|also|what\s+about|"
    r"how\s+about|and\s+what\s+about|what\s+if|vad\s+händer\s+om|om\s+)\b",
    re.I,
)
_PRONOUNS = re.compile(r"\b(den|det|dem|där|dit|then|there|it|they|them|that|those)\b", re.I)


@dataclass(frozen=True)
class Rewritten:
    query: str  # what retrieval searches for
    lang: str | None  # a language the user asked for explicitly, if any
    rewritten: bool


def rewrite(question: str, previous_questions: list[str]) -> Rewritten:
    """Standalone query for ``question`` given the earlier user questions (oldest first)."""
    q = question.strip()
    prev = next((p.strip() for p in reversed(previous_questions) if p.strip()), "")
    if not prev:
        return Rewritten(q, None, False)
    for lang, pattern in _LANG_SWITCH.items():
        if pattern.match(q):
            return Rewritten(prev, lang, True)
    n_words = len(q.split())
    if _FOLLOW_UP.match(q) or n_words <= 3 or (n_words <= 7 and _PRONOUNS.search(q)):
        return Rewritten(f"{prev} {q}", None, True)
    return Rewritten(q, None, False)
