"""Word-overlap measures shared by the relevance gate, the citation verifier and the extractive
answerer: stems under both languages' stemmers (optionally with compound parts) and the share of
a text's content words found in a set of stems, each word weighted by how rare it is in the
language (a missing "massera" matters, a missing "måste" hardly)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache

from wordfreq import zipf_frequency

from bot.retrieval.lexical import Decompounder, stem, words

# wordfreq says which list it falls back to for a language it lacks; once is enough.
logging.getLogger("wordfreq").setLevel(logging.ERROR)


@lru_cache(maxsize=100_000)
def zipf(word: str, lang: str) -> float:
    """How common ``word`` is in ``lang`` (wordfreq's Zipf scale, 0 for unknown); 0 for every
    word of a language wordfreq has no list for ("und": not identified)."""
    try:
        return float(zipf_frequency(word, lang))
    except LookupError:
        return 0.0


def stem_set(text: str, decompounder: Decompounder | None = None) -> set[str]:
    """Swedish and English stems of the words of ``text`` (and of their compound parts)."""
    out: set[str] = set()
    for w in words(text):
        out.add(stem(w, "sv"))
        out.add(stem(w, "en"))
        if decompounder is not None:
            out.update(stem(p, "sv") for p in decompounder.split(w))
    return out


def weighted_coverage(
    text: str, have: set[str], lang: str, skip_digits: bool = False
) -> float:
    """Rarity-weighted share of the content words of ``text`` whose stem is in ``have`` (a
    stem of five letters or more also counts when it is part of one there); 1.0 for a text
    without content words."""
    total = hit = 0.0
    for w in words(text):
        if len(w) <= 2 or (skip_digits and w.isdigit()):
            continue
        weight = max(0.5, 7.0 - zipf(w, lang))
        total += weight
        s_sv = stem(w, "sv")
        if s_sv in have or stem(w, "en") in have or any(len(s_sv) >= 5 and s_sv in x for x in have):
            hit += weight
    return hit / total if total else 1.0


def stems_of_all(texts: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for t in texts:
        out |= stem_set(t)
    return out
