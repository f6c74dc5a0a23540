"""Swedish- and English-aware BM25 (bm25s) with Snowball stemming (PyStemmer).

Tokens keep å, ä and ö. Swedish compounds are split against the index's own vocabulary, so
"parkeringstillstånd" is also indexed as "parkering" + "tillstånd", and adjacent query words are
joined ("parkering tillstånd" -> "parkeringstillstånd", with or without the linking -s-), so
either spelling finds the other.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN, STOPWORDS_SWEDISH

_WORD = re.compile(r"[^\W_]+", flags=re.UNICODE)
logging.getLogger("bm25s").setLevel(logging.WARNING)
_STOP = frozenset(STOPWORDS_SWEDISH) | frozenset(STOPWORDS_EN)
_LINKS = ("", "s")  # Swedish linking morphemes worth trying ("parkering|s|tillstånd")
_MIN_COMPOUND = 8
_MIN_PART = 3


@lru_cache(maxsize=1)
def swedish_lexicon() -> frozenset[str]:
    """The 100,000 most frequent Swedish words (wordfreq, bundled data): compound parts that a
    small corpus never uses on their own ("insatser" in "hemtjänstinsatser")."""
    from wordfreq import top_n_list

    return frozenset(w for w in top_n_list("sv", 100_000) if len(w) >= _MIN_PART and w.isalpha())


@lru_cache(maxsize=2)
def _stemmer(lang: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer("swedish" if lang == "sv" else "english")


def words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def stem(word: str, lang: str) -> str:
    return str(_stemmer(lang).stemWord(word))


class Decompounder:
    """Splits compounds into parts that occur in the vocabulary it was given."""

    def __init__(self, vocabulary: Iterable[str], corpus_words: Iterable[str] = ()) -> None:
        self.corpus_words = {w for w in corpus_words if len(w) >= _MIN_PART}
        self.vocab = {w for w in vocabulary if len(w) >= _MIN_PART} | self.corpus_words
        self.stems = set(_stemmer("sv").stemWords(sorted(self.vocab)))
        self._cache: dict[str, tuple[str, ...]] = {}

    def _zipf(self, w: str, part: bool = False) -> float:
        from wordfreq import zipf_frequency

        z = float(zipf_frequency(w, "sv"))
        # A part the lexicon lacks but the corpus uses on its own counts as an ordinary word.
        return max(z, 3.0) if part and w in self.corpus_words else z

    def _worth_splitting(self, word: str, parts: tuple[str, ...]) -> bool:
        """A word far rarer than its parts is a compound of them ("parkeringstillstånd"); a
        common word is a word of its own even if it looks like two ("tillstånd" = till+stånd)."""
        return self._zipf(word) + 1.0 <= min(self._zipf(p, part=True) for p in parts)

    def _is_part(self, w: str) -> bool:
        return w in self.vocab or stem(w, "sv") in self.stems

    def split(self, word: str, depth: int = 0) -> tuple[str, ...]:
        """The parts of ``word`` (empty when it is not a known compound)."""
        if len(word) < _MIN_COMPOUND or depth > 2:
            return ()
        if word in self._cache:
            return self._cache[word]
        best: tuple[str, ...] = ()
        best_score = 0
        for i in range(_MIN_PART, len(word) - _MIN_PART + 1):
            left, right = word[:i], word[i:]
            # Prefer reading a final -s- as the linking morpheme ("parkering|s|tillstånd").
            if left.endswith("s") and left[:-1] in self.vocab and len(left) > _MIN_PART + 1:
                lp = left[:-1]
            elif left in self.vocab:
                lp = left
            else:
                continue
            if self._is_part(right):
                parts: tuple[str, ...] = (lp, right)
            else:
                sub = self.split(right, depth + 1)
                if not sub:
                    continue
                parts = (lp, *sub)
            score = min(len(p) for p in parts)
            if score > best_score:
                best, best_score = parts, score
        if best and depth == 0 and not self._worth_splitting(word, best):
            best = ()
        self._cache[word] = best
        return best


def index_terms(text: str, lang: str, decompounder: Decompounder | None) -> list[str]:
    out: list[str] = []
    for w in words(text):
        out.append(stem(w, lang))
        if decompounder is not None:
            out.extend(stem(p, lang) for p in decompounder.split(w))
    return out


def query_terms(text: str, decompounder: Decompounder | None) -> list[str]:
    """Stems under both languages' stemmers, compound parts, and joined adjacent words."""
    ws = words(text)
    terms: list[str] = []
    for w in ws:
        terms.extend({stem(w, "sv"), stem(w, "en")})
        if decompounder is not None:
            terms.extend(stem(p, "sv") for p in decompounder.split(w))
    if decompounder is not None:
        for a, b in zip(ws, ws[1:], strict=False):
            for link in _LINKS:
                joined = f"{a}{link}{b}"
                if joined in decompounder.vocab:
                    terms.append(stem(joined, "sv"))
    seen: set[str] = set()
    return [t for t in terms if not (t in seen or seen.add(t))]  # type: ignore[func-returns-value]


class LexicalIndex:
    """BM25 over a fixed list of texts; position i is the i-th text given."""

    def __init__(
        self, texts: Sequence[str], langs: Sequence[str], k1: float = 1.2, b: float = 0.75
    ) -> None:
        vocab = {w for t in texts for w in words(t)}
        self.decompounder = Decompounder(swedish_lexicon(), corpus_words=vocab)
        corpus = [
            index_terms(t, lang, self.decompounder) or ["\x00"]
            for t, lang in zip(texts, langs, strict=True)
        ]
        self.size = len(corpus)
        self.bm25 = bm25s.BM25(k1=k1, b=b)
        if corpus:
            self.bm25.index(corpus, show_progress=False)

    def scores(self, query: str, mask: np.ndarray | None = None) -> np.ndarray:
        if self.size == 0:
            return np.zeros(0, dtype=np.float32)
        terms = query_terms(query, self.decompounder)
        if not terms:
            return np.zeros(self.size, dtype=np.float32)
        s = np.asarray(self.bm25.get_scores(terms), dtype=np.float32)
        if mask is not None:
            s = np.where(mask, s, 0.0).astype(np.float32)
        return s

    def top(self, query: str, n: int, mask: np.ndarray | None = None) -> list[tuple[int, float]]:
        s = self.scores(query, mask)
        if s.size == 0:
            return []
        n = min(n, s.size)
        idx = np.argpartition(-s, n - 1)[:n]
        idx = idx[np.argsort(-s[idx], kind="stable")]
        return [(int(i), float(s[i])) for i in idx if s[i] > 0]
