"""The extractive provider: no LLM. It picks the sentences of the top sources that share the most
(idf-weighted, stemmed) words with the question and cites each. Deterministic and instant; the
embedded default and the fallback when a generated answer fails verification.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import sentencex

from bot.llm.base import ChatProvider, GenerationRequest, Source
from bot.retrieval.lexical import stem, words
from ingest.manifest import Sensitivity

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
NO_MATCH = {
    "sv": "Jag hittar inget svar på den frågan i mina källor.",
    "en": "I could not find an answer to that question in my sources.",
}
SWEDISH_SOURCES_NOTE = "The sources are in Swedish; the relevant passages:"


def _stems(text: str) -> set[str]:
    out: set[str] = set()
    for w in words(text):
        out.add(stem(w, "sv"))
        out.add(stem(w, "en"))
    return out


def sentences_of(source: Source) -> list[str]:
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", source.text):
        block = " ".join(_BULLET.sub("", ln).strip() for ln in block.splitlines() if ln.strip())
        if not block:
            continue
        for s in sentencex.segment(source.lang or "sv", block):
            s = s.strip()
            if len(s) >= 12 and re.search(r"\w{3}", s):
                out.append(s)
    return out


def select_sentences(
    request: GenerationRequest, max_sentences: int = 3, per_source: int = 2
) -> list[tuple[int, str, float]]:
    """(source number, sentence, score), best first; empty when nothing matches."""
    q = _stems(request.question)
    if not q:
        return []
    cands: list[tuple[int, int, str, set[str]]] = []
    for rank, src in enumerate(request.sources):
        for pos, sent in enumerate(sentences_of(src)):
            cands.append((rank, pos, sent, _stems(sent)))
    if not cands:
        return []
    df: dict[str, int] = {}
    for *_, st in cands:
        for t in st & q:
            df[t] = df.get(t, 0) + 1
    n = len(cands)
    scored = []
    for rank, pos, sent, st in cands:
        overlap = st & q
        if not overlap:
            continue
        score = sum(math.log(1 + n / df[t]) for t in overlap)
        score *= 1.0 / (1 + 0.15 * rank)  # trust retrieval's order a little
        score *= 1.0 / (1 + 0.02 * pos)
        score /= math.sqrt(max(len(st), 4)) ** 0.5
        scored.append((score, rank, pos, sent))
    scored.sort(key=lambda x: (-x[0], x[1], x[2]))
    # Answers follow the question's language: when sources in that language match nearly as
    # well as the best, quote only them (a Swedish question over a bilingual corpus should not
    # get English sentences).
    same = [x for x in scored if request.sources[x[1]].lang == request.lang]
    if same and scored and same[0][0] >= 0.5 * scored[0][0]:
        scored = same
    out: list[tuple[int, str, float]] = []
    used: dict[int, int] = {}
    best = scored[0][0] if scored else 0.0
    for score, rank, _pos, sent in scored:
        if len(out) >= max_sentences or score < 0.35 * best:
            break
        if used.get(rank, 0) >= per_source:
            continue
        used[rank] = used.get(rank, 0) + 1
        out.append((request.sources[rank].n, sent, score))
    return out


def extractive_answer(request: GenerationRequest) -> str:
    picked = select_sentences(request)
    if not picked:
        return NO_MATCH[request.lang]
    parts = []
    for n, sent, _ in picked:
        m = re.match(r"^(.*?)([.!?:;]*)$", sent.rstrip(), flags=re.S)
        body, punct = (m.group(1), m.group(2)) if m else (sent, "")
        parts.append(f"{body} [{n}]{punct if punct in ('?', '!') else '.'}")
    text = " ".join(parts)
    if request.lang == "en" and all(
        src.lang == "sv" for src in request.sources if src.n in {n for n, _, _ in picked}
    ):
        text = f"{SWEDISH_SOURCES_NOTE} {text}"
    return text


class ExtractiveProvider(ChatProvider):
    kind = "extractive"
    location = "local"

    def __init__(self, name: str = "extractive") -> None:
        self.name = name
        self.model = "extractive-v1"
        self.clearance = Sensitivity.sensitive

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        text = extractive_answer(request)
        # Stream word by word so clients see the same event shape as from an LLM.
        for piece in re.split(r"(?<= )", text):
            if piece:
                yield piece
