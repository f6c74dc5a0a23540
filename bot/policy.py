"""The answering gates: pure functions that decide, before any provider is asked, whether the
retrieved sources can answer the question, and whether the question asks for a decision only a
person may make (STYLE 2). The service applies them; the evaluation suites call the same
functions, never copies."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from bot.answerability import (
    AnswerabilityModel,
    Embeds,
    Evidence,
    HitScores,
    Reading,
    SourceText,
    evidence,
    foreign,
    model_for,
    read,
)
from bot.overlap import stems_of_all, weighted_coverage
from bot.retrieval.types import Mode, RetrievedChunk

NO_RELEVANT_SOURCES = "no_relevant_sources"

@cache
def _eligibility() -> re.Pattern[str]:
    """Every language's "am I entitled to ...?" phrases (``bot/lexicon/eligibility.toml``) as
    one pattern."""
    raw = tomllib.loads(files("bot").joinpath("lexicon/eligibility.toml")
                        .read_text(encoding="utf-8"))
    phrases = sorted({p for ps in raw.values() for p in ps}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s+")
                                              for p in phrases) + r")(?!\w)")


def retrieval_mode(lang: str) -> Mode | None:
    """How to retrieve for a question in ``lang``: dense only for a language the sources are
    not written in (its words match nothing but noise in BM25; e5 is cross-lingual), else the
    configured default."""
    return "dense" if foreign(lang) else None


def top_dense(hits: Sequence[RetrievedChunk]) -> float | None:
    return max((h.dense for h in hits if h.dense is not None), default=None)


def relevance_floor(lang: str, same_language: float, other_languages: float) -> float:
    """The dense similarity under which nothing retrieved is about the question: lower for a
    question in a language the sources are not written in."""
    return other_languages if foreign(lang) else same_language


def relevance_refusal(hits: Sequence[RetrievedChunk], min_relevance: float) -> str | None:
    """A refusal reason when nothing relevant was retrieved: no hits, or the best dense
    similarity under the floor (a BM25-only retrieval has no dense score and passes)."""
    best = top_dense(hits)
    if not hits or (best is not None and best < min_relevance):
        return NO_RELEVANT_SOURCES
    return None


def question_coverage(question: str, hits: Sequence[RetrievedChunk], lang: str) -> float:
    """Rarity-weighted share of the question's words found in the chunks (and their sections)."""
    have = stems_of_all(f"{h.metadata.get('section', '')} {h.text}" for h in hits)
    return weighted_coverage(question, have, lang)


def source_texts(hits: Sequence[RetrievedChunk]) -> list[SourceText]:
    return [SourceText(i, h.text, str(h.metadata.get("lang", "sv")),
                       str(h.metadata.get("section", "")), str(h.metadata.get("title", "")))
            for i, h in enumerate(hits, start=1)]


def hit_scores(hits: Sequence[RetrievedChunk]) -> list[HitScores]:
    return [HitScores(f"{h.corpus}/{h.source}", h.dense, h.bm25, str(h.metadata.get("lang")))
            for h in hits]


def assess(question: str, lang: str, hits: Sequence[RetrievedChunk],
           embedder: Embeds | None) -> tuple[Reading, Evidence]:
    """Read the sources for the question and gather the evidence the decision weighs (the one
    side effect is the embedder call; the reading is memoised for the extractive answerer)."""
    reading = read(question, source_texts(hits), lang, embedder)
    coverage = question_coverage(question, hits[:3], lang) if hits else 0.0
    return reading, evidence(reading, hit_scores(hits), coverage, lang)


def answerability(ev: Evidence, model: AnswerabilityModel | None = None) -> float:
    """The calibrated probability that the sources answer the question."""
    return (model or model_for(ev)).probability(ev)


def answerability_refusal(ev: Evidence, threshold: float | None = None,
                          model: AnswerabilityModel | None = None,
                          threshold_other_languages: float | None = None) -> str | None:
    """THE decision, before any provider, LLM or not, is asked: a refusal reason when the
    calibrated probability that the sources answer the question is under the threshold (the
    operator's, else the one fitted with the model; questions in the other languages have
    their own model and threshold). Unsure means refuse (the caller gets the contact centre)."""
    m = model or model_for(ev)
    own = threshold_other_languages if ev.values.get("foreign") else threshold
    p = m.probability(ev)
    return None if p >= (m.threshold if own is None else own) else NO_RELEVANT_SOURCES


def is_eligibility_question(question: str) -> bool:
    """"Har jag rätt till hemtjänst?", "Habe ich Anspruch auf Hemtjänst?": only a needs
    assessor decides; the answer says so, in the question's language."""
    return bool(_eligibility().search(question.lower()))
