"""Which language is a question written in? Short questions, many languages.

Lingua (``lingua-language-detector``, n-gram models of 1–5 characters, made for short text)
decides among the platform's languages and a few common ones it does not answer in (so that an
Italian question is recognised as such and answered in English, not as Spanish).

Normalise first, then detect: a question to the city is full of Swedish names and terms
("Västtrafik", "färdtjänst", "Brännö brygga") that say nothing about the asker's language, so
capitalised words after the first, words with å/ä/ö and words in parentheses are left out when
enough words remain. The platform's two main languages get a prior: a close call between
Swedish or English and another language goes to the main one.
"""

from __future__ import annotations

import re
import threading
import time
from functools import cache
from typing import Any, Final

from gbg.i18n import DEFAULT, FALLBACK, canonical, languages

# Languages recognised in order to say "not supported"; the visitors the city does not (yet)
# write for. Each costs memory (about 25 MB of models), so the list is short.
OTHERS: Final = ("it", "pt", "nl", "ru", "uk", "th")
MAIN_PRIOR: Final = 1.6  # sv and en: a question to a Swedish city, in its two main languages
OTHER_PRIOR: Final = 0.8  # a language we do not answer in must win clearly
MIN_WORDS: Final = 3

_WORD = re.compile(r"\w+")
_PAREN = re.compile(r"\([^)]*\)")
_SWEDISH_LETTERS = re.compile(r"[åäöÅÄÖ]")
_lock = threading.Lock()


def _languages() -> list[Any]:
    from lingua import IsoCode639_1, Language

    codes = {c for lang in languages().values() for c in lang.detect} | set(OTHERS)
    known = []
    for code in sorted(codes):
        iso = getattr(IsoCode639_1, code.upper(), None)
        if iso is not None:
            known.append(Language.from_iso_code_639_1(iso))
    return known


@cache
def _detector() -> Any:
    from lingua import LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(*_languages()) \
        .with_preloaded_language_models().build()


def warm() -> None:
    """Load the models now (a few seconds), not on the first question: one language at a time
    (lingua keeps loaded models for the whole process), so that the loading never holds the
    interpreter for more than a fraction of a second (a server's supervisor pings its workers
    meanwhile and restarts one that does not answer)."""
    from lingua import Language, LanguageDetectorBuilder

    for lang in _languages():
        other = Language.ENGLISH if lang != Language.ENGLISH else Language.SWEDISH
        LanguageDetectorBuilder.from_languages(lang, other).with_preloaded_language_models() \
            .build()
        time.sleep(0.01)
    with _lock:
        _detector()


def _content(text: str) -> str:
    """The words that tell the asker's language: without Swedish names and terms when enough
    other words remain."""
    tokens = _PAREN.sub(" ", text).split()
    plain = [w for i, w in enumerate(tokens) if i == 0 or not w[:1].isupper()]
    strict = [w for w in plain if not _SWEDISH_LETTERS.search(w)]
    for keep in (strict, plain):
        if len(_WORD.findall(" ".join(keep))) >= MIN_WORDS:
            return " ".join(keep)
    return text


def detect(text: str) -> tuple[str | None, str]:
    """(the platform's language code or None when it does not answer in it, the detected
    ISO 639-1 code). Text with too few letters to tell gives the default (Swedish)."""
    sample = text[:1000]
    if sum(ch.isalpha() for ch in sample) < 3:
        return DEFAULT, DEFAULT
    with _lock:
        values = _detector().compute_language_confidence_values(_content(sample))
    best: tuple[float, str] | None = None
    for v in values:
        iso = v.language.iso_code_639_1.name.lower()
        code = canonical(iso)
        prior = MAIN_PRIOR if code in (DEFAULT, FALLBACK) else 1.0 if code else OTHER_PRIOR
        score = float(v.value) * prior
        if best is None or score > best[0]:
            best = (score, iso)
    if best is None or best[0] == 0.0:
        return DEFAULT, DEFAULT
    return canonical(best[1]), best[1]


def answer_language(text: str) -> tuple[str, bool]:
    """The language to answer in, and whether the question's own language is unsupported
    (then the answer is in English with a line saying so)."""
    code, _ = detect(text)
    return (code, False) if code else (FALLBACK, True)
