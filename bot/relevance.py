"""Is the answer in the retrieved text at all? A local, model-free estimate used to refuse
instead of guessing: the share of the question's content words (weighted by rarity, so
"pizza" counts more than "kostar") that occur in the top chunks."""

from __future__ import annotations

from collections.abc import Sequence

from wordfreq import zipf_frequency

from bot.retrieval.lexical import stem, words
from bot.retrieval.retriever import RetrievedChunk


def question_coverage(question: str, chunks: Sequence[RetrievedChunk], lang: str) -> float:
    have: set[str] = set()
    for h in chunks:
        for w in words(f"{h.metadata.get('section', '')} {h.text}"):
            have.add(stem(w, "sv"))
            have.add(stem(w, "en"))
    total = hit = 0.0
    for w in words(question):
        if len(w) <= 2:
            continue
        weight = max(0.5, 7.0 - zipf_frequency(w, lang))
        total += weight
        s_sv, s_en = stem(w, "sv"), stem(w, "en")
        if s_sv in have or s_en in have or any(len(s_sv) >= 5 and s_sv in x for x in have):
            hit += weight
    return hit / total if total else 1.0


def same_language(chunks: Sequence[RetrievedChunk], lang: str, top: int = 3) -> bool:
    return any(str(h.metadata.get("lang")) == lang for h in chunks[:top])
