"""Citation verification: every sentence that cites source [n] must be supported by it.

A sentence is supported by its cited sources when
- every number in it (amounts, times, dates, phone numbers, counts, also written as words) occurs
  in those sources,
- it does not flip a negation of the source sentence it matches best, and
- its content words are found in those sources (stemmed, compounds split), or, when the words do
  not settle it (a paraphrase, or an English answer over Swedish sources), its embedding is close
  enough to a sentence of those sources.
A sentence without a citation counts as unsupported unless it only says that the answer is not
known or where to turn; an answer with no citation at all is ungrounded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sentencex

from bot.llm.base import Source
from bot.overlap import stem_set, weighted_coverage
from bot.retrieval.lexical import Decompounder, stem, swedish_lexicon, words
from gbg.i18n.detect import detect
from ingest.embedders import Embedder

_MARK = re.compile(r"\[(\d{1,2})\]")
_NUMBER_WORDS = {
    "en": "zero one two three four five six seven eight nine ten eleven twelve".split(),
    "sv": "noll en två tre fyra fem sex sju åtta nio tio elva tolv".split(),
}
_NUMBER_WORDS_EXTRA = {"ett": 1, "första": 1, "andra": 2, "tredje": 3, "first": 1, "second": 2,
                       "third": 3, "twice": 2, "tvåhundra": 200, "hundra": 100, "hundred": 100}
_NEGATIONS = frozenset(
    "inte ej icke aldrig ingen inget inga utan saknas saknar not no never without cannot can't "
    "don't doesn't isn't aren't won't none".split()
)
# A claim in another answer language over Swedish or English sources is read with its own
# language's negations too (only its own: Finnish "en" is the Swedish article).
_NEGATIONS_BY_LANG: dict[str, frozenset[str]] = {
    lang: frozenset(ws.split()) for lang, ws in {
        "de": "nicht kein keine keinen keiner keinem nie niemals ohne",
        "nb": "ikke ingen intet aldri uten", "nn": "ikkje ingen aldri utan",
        "da": "ikke ingen intet aldrig uden",
        "fi": "ei eivät en et emme ette älä ilman koskaan",
        "fr": "ne pas jamais aucun aucune sans non",
        "es": "no nunca ningún ninguna ninguno sin jamás",
        "pl": "nie nigdy bez żaden żadna żadne",
        "tr": "değil yok asla hiç", "bs": "ne nije nisu nema nikad nikada bez",
        "hr": "ne nije nisu nema nikad nikada bez", "sr": "ne nije nisu nema nikad nikada bez",
        "so": "ma maaha majiro", "ar": "لا ليس ليست لم لن بدون غير",
        "fa": "نه نمی نیست نباید بدون هرگز",
    }.items()
}
_META = re.compile(
    r"(vet inte|känner inte till|hittar inget|hittar ingen|inte information|framgår inte|"
    r"kontaktcenter|031-365 ?00 ?00|goteborg\.se|do not know|don't know|could not find|"
    r"cannot find|no information|contact centre|contact center|the sources are in swedish)",
    flags=re.I,
)


@dataclass(frozen=True)
class SentenceCheck:
    sentence: str
    cited: tuple[int, ...]
    supported: bool
    reason: str  # "ok", "no_citation", "unknown_source", "number", "negation", "content", "meta"
    lexical: float = 0.0
    similarity: float | None = None


@dataclass
class Verification:
    checks: list[SentenceCheck] = field(default_factory=list)

    @property
    def cited_any(self) -> bool:
        return any(c.cited for c in self.checks)

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [c for c in self.checks if not c.supported]

    @property
    def grounded(self) -> bool:
        """At least one supported cited sentence and no unsupported one."""
        return self.cited_any and not self.unsupported and any(
            c.supported and c.cited for c in self.checks
        )


def split_cited_sentences(answer: str) -> list[tuple[str, tuple[int, ...]]]:
    """Sentences with the [n] markers that belong to them (a marker right after a full stop
    belongs to the sentence before it)."""
    pieces = [p.strip() for p in sentencex.segment("sv", answer.strip()) if p.strip()]
    merged: list[str] = []
    for p in pieces:
        m = re.match(r"^((?:\[\d{1,2}\]\s*)+)(.*)$", p, flags=re.S)
        if m and merged:
            merged[-1] = f"{merged[-1]} {m.group(1).strip()}"
            p = m.group(2).strip()
            if not p:
                continue
        merged.append(p)
    out = []
    for s in merged:
        cited = tuple(dict.fromkeys(int(n) for n in _MARK.findall(s)))
        out.append((s, cited))
    return out


def _normalise_numbers(text: str) -> set[str]:
    """Numbers as digit strings: '1 250 kr' -> 1250, '031-365 00 00' -> 0313650000, '14.30' ->
    1430, 'fyra' -> 4."""
    t = text.lower()
    found: set[str] = set()
    # phone-like and grouped digits: digits separated by single spaces/hyphens inside a run
    for m in re.finditer(r"(?<![\w])\+?\d[\d \-]*\d|\d", t):
        run = m.group(0)
        digits = re.sub(r"\D", "", run)
        found.add(digits.lstrip("0") or "0")
        for part in re.split(r"[ \-]", run):
            d = re.sub(r"\D", "", part)
            if d:
                found.add(d.lstrip("0") or "0")
    for m in re.finditer(r"\d+[.:,]\d+", t):
        found.add(re.sub(r"\D", "", m.group(0)).lstrip("0") or "0")
    for lang_words in _NUMBER_WORDS.values():
        for i, w in enumerate(lang_words):
            if re.search(rf"\b{w}\b", t):
                found.add(str(i))
    for w, v in _NUMBER_WORDS_EXTRA.items():
        if re.search(rf"\b{w}\b", t):
            found.add(str(v))
    return found


def claim_numbers(text: str) -> set[str]:
    """Numbers a claim asserts (digits, and number words other than the article 'en'/'ett')."""
    t = _MARK.sub(" ", text).lower()
    nums: set[str] = set()
    for m in re.finditer(r"(?<![\w])\+?\d[\d \-.:,]*\d|\d", t):
        run = m.group(0)
        if re.fullmatch(r"\d+[.:,]\d+", run):
            nums.add(re.sub(r"\D", "", run).lstrip("0") or "0")
            continue
        # A run like "3 år" stops at letters; "031-365 00 00" keeps its groups together.
        nums.add(re.sub(r"\D", "", run).lstrip("0") or "0")
    for lang, lang_words in _NUMBER_WORDS.items():
        for i, w in enumerate(lang_words):
            if lang == "sv" and w in ("en", "noll"):
                continue
            if lang == "en" and w in ("one", "zero"):
                continue
            if re.search(rf"\b{w}\b", t):
                nums.add(str(i))
    return nums


def _content_stems(text: str) -> list[str]:
    return [stem(w, "sv") for w in words(_MARK.sub(" ", text)) if len(w) > 2 and not w.isdigit()]


class _SourceView:
    """The cited sources' sentences, split once and embedded at most once per verification."""

    def __init__(self, sources: Sequence[Source]) -> None:
        self.sentences = [
            s for src in sources for s in sentencex.segment(src.lang or "sv", src.text)
            if len(s.strip()) > 10
        ]
        self._vectors: np.ndarray | None = None
        self._windows: np.ndarray | None = None
        self._claims: dict[str, np.ndarray] = {}

    def sentence_vectors(self, embedder: Embedder) -> np.ndarray:
        if self._vectors is None:
            self._vectors = embedder.embed_passages(self.sentences)
        return self._vectors

    def window_vectors(self, embedder: Embedder) -> np.ndarray | None:
        pairs = [" ".join(self.sentences[i : i + 2]) for i in range(len(self.sentences) - 1)]
        if not pairs:
            return None
        if self._windows is None:
            self._windows = embedder.embed_passages(pairs)
        return self._windows

    def claim_vector(self, embedder: Embedder, claim: str) -> np.ndarray:
        if claim not in self._claims:
            self._claims[claim] = embedder.embed_passages([_MARK.sub("", claim)])[0]
        return self._claims[claim]


class CitationVerifier:
    def __init__(
        self,
        embedder: Embedder | None = None,
        lexical_ok: float = 0.66,
        lexical_floor: float = 0.34,
        similarity_ok: float = 0.855,
    ) -> None:
        self.embedder = embedder
        self.lexical_ok = lexical_ok
        self.lexical_floor = lexical_floor
        self.similarity_ok = similarity_ok
        self._decompounder: Decompounder | None = None

    def _parts(self) -> Decompounder:
        if self._decompounder is None:
            self._decompounder = Decompounder(swedish_lexicon())
        return self._decompounder

    def _lexical(self, claim: str, source_text: str, lang: str = "sv") -> float:
        """Share of the claim's content words found in the source (compound parts included),
        each weighted by how rare it is in the language."""
        have = stem_set(source_text, self._parts())
        return weighted_coverage(_MARK.sub(" ", claim), have, lang, skip_digits=True)

    def _related_sentences(self, claim: str, view: _SourceView, cross: bool) -> list[str]:
        """The source sentences the claim is about: by shared words, or across languages by
        embedding similarity."""
        if not view.sentences:
            return []
        if cross and self.embedder is not None:
            sims = view.sentence_vectors(self.embedder) @ view.claim_vector(self.embedder, claim)
            return [view.sentences[i] for i in np.argsort(-sims)[:3]]
        cs = set(_content_stems(claim))
        scored = sorted(((len(cs & set(_content_stems(t))), t) for t in view.sentences),
                        key=lambda x: -x[0])
        return [t for n, t in scored[:3] if n > 0]

    def _similarity(self, claim: str, view: _SourceView) -> float | None:
        """The claim's best cosine similarity to a sentence or a pair of adjacent sentences."""
        if self.embedder is None:
            return None
        if not view.sentences:
            return 0.0
        p = view.sentence_vectors(self.embedder)
        windows = view.window_vectors(self.embedder)
        if windows is not None:
            p = np.vstack([p, windows])
        return float(np.max(p @ view.claim_vector(self.embedder, claim)))

    def check_sentence(self, sentence: str, cited: tuple[int, ...],
                       sources: dict[int, Source],
                       views: dict[tuple[int, ...], _SourceView] | None = None) -> SentenceCheck:
        if not cited:
            if _META.search(sentence):
                return SentenceCheck(sentence, cited, True, "meta")
            return SentenceCheck(sentence, cited, False, "no_citation")
        if any(n not in sources for n in cited):
            return SentenceCheck(sentence, cited, False, "unknown_source")
        cited_sources = [sources[n] for n in cited]
        text = "\n".join(s.text for s in cited_sources)
        missing = claim_numbers(sentence) - _normalise_numbers(text)
        if missing:
            return SentenceCheck(sentence, cited, False, "number")
        claim_lang = detect(_MARK.sub("", sentence))[1]  # any language, not only sv and en
        cross = all(s.lang != claim_lang for s in cited_sources)
        view = views.setdefault(cited, _SourceView(cited_sources)) if views is not None \
            else _SourceView(cited_sources)
        related = self._related_sentences(sentence, view, cross)
        neg_claim = _negated(sentence, claim_lang)
        if related:
            # A negated claim needs a negated sentence among those it is about; an affirmative
            # claim must not rest on a sentence that says the opposite.
            if neg_claim and not any(_negated(t) for t in related):
                return SentenceCheck(sentence, cited, False, "negation")
            if not neg_claim and _negated(related[0]):
                top = set(_content_stems(related[0]))
                cs = set(_content_stems(sentence))
                if cross or (cs and len(cs & top) >= 0.5 * len(cs)):
                    return SentenceCheck(sentence, cited, False, "negation")
        units = _units(sentence) - _units(text)
        if units:
            return SentenceCheck(sentence, cited, False, "number")
        if not cross:
            lex = self._lexical(sentence, text, claim_lang)
            ok = lex >= self.lexical_ok
            return SentenceCheck(sentence, cited, ok, "ok" if ok else "content", lex)
        sim = self._similarity(sentence, view)
        ok = sim is not None and sim >= self.similarity_ok
        return SentenceCheck(sentence, cited, ok, "ok" if ok else "content", 0.0, sim)

    def verify(self, answer: str, sources: Sequence[Source]) -> Verification:
        by_n = {s.n: s for s in sources}
        views: dict[tuple[int, ...], _SourceView] = {}  # sentences split and embedded once
        return Verification(
            [self.check_sentence(s, c, by_n, views) for s, c in split_cited_sentences(answer)]
        )


def words_with_stop(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:'t)?", text.lower())


_UNIT_STEMS = {
    # unit words of the claim that must also be in the source (frequency, duration, amount)
    "månad": "månad", "vecka": "veck", "veckan": "veck", "dygn": "dygn", "timme": "timm",
    "timmar": "timm", "minut": "minut", "minuter": "minut", "sekund": "sekund",
    "sekunder": "sekund", "dagligen": "dagl", "årligen": "årl", "kronor": "kr", "kr": "kr",
    "procent": "procent", "month": "månad", "months": "månad", "week": "veck", "weeks": "veck",
    "hour": "timm", "hours": "timm", "minute": "minut", "minutes": "minut", "second": "sekund",
    "seconds": "sekund", "daily": "dagl", "yearly": "årl", "percent": "procent", "sek": "kr",
}


def _units(text: str) -> set[str]:
    out = set()
    for w in words_with_stop(text):
        for prefix, unit in _UNIT_STEMS.items():
            if w.startswith(prefix) and len(w) <= len(prefix) + 3:
                out.add(unit)
    return out


def _negated(text: str, lang: str | None = None) -> bool:
    return bool(set(words_with_stop(text)) & (_NEGATIONS | _NEGATIONS_BY_LANG.get(lang or "",
                                                                               frozenset())))
