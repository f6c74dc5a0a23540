"""What kind of answer a question in one of the other languages asks for ("wie viel kostet" →
cost, "goorma" → when), from a word list per language (``bot/lexicon/question_types.toml``,
written for the project). Swedish and English keep the reader's own patterns in
``bot.answerability``.

Normalise, then look up: lowercase, Arabic diacritics and tatweel removed, Persian and Arabic
yeh/kaf unified, Arabic clitics (و, ف, ب, ل, ال) tried off; an entry ending in ``*`` matches any
word starting with it; a phrase matches consecutive words. The first type that matches wins, in
the file's order of types.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from importlib.resources import files

TYPES = ("cost", "duration", "when", "contact", "where", "who", "number")
_WORD = re.compile(r"\w+")
_DIACRITICS = re.compile(r"[\u064b-\u065f\u0670\u0640]")
_UNIFY = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", "ة": "ه", "أ": "ا", "إ": "ا", "آ": "ا"})
_AR_PREFIXES = ("وال", "بال", "فال", "لل", "ال", "و", "ف", "ب", "ل")


def _norm(text: str) -> str:
    # Turkish dotted capital İ lowercases to i + a combining dot, which splits the word.
    return _DIACRITICS.sub("", text.replace("İ", "i").lower()).translate(_UNIFY)


@cache
def _lexicon() -> dict[str, list[tuple[str, list[list[str]]]]]:
    raw = tomllib.loads(files("bot").joinpath("lexicon/question_types.toml")
                        .read_text(encoding="utf-8"))
    out: dict[str, list[tuple[str, list[list[str]]]]] = {}
    for lang, types in raw.items():
        out[lang] = [(t, [_WORD.findall(_norm(e)) + (["*"] if e.endswith("*") else [])
                          for e in types.get(t, [])]) for t in TYPES]
    return out


def _variants(word: str, lang: str) -> set[str]:
    out = {word}
    if lang in ("ar", "fa"):
        out.update(word[len(p):] for p in _AR_PREFIXES if word.startswith(p)
                   and len(word) - len(p) >= 2)
    return out


def _match(entry: list[str], words: list[set[str]]) -> bool:
    prefix = entry[-1:] == ["*"]
    parts = entry[:-1] if prefix else entry
    if not parts:
        return False
    for i in range(len(words) - len(parts) + 1):
        ok = True
        for j, part in enumerate(parts):
            last = j == len(parts) - 1
            forms = words[i + j]
            if not (part in forms or (prefix and last and any(f.startswith(part) for f in forms))):
                ok = False
                break
        if ok:
            return True
    return False


def question_type(question: str, lang: str) -> str | None:
    """The type of answer asked for, "other" when no entry matches, None when the lexicon has
    no list for ``lang``."""
    lex = _lexicon().get(lang)
    if lex is None:
        return None
    words = [_variants(w, lang) for w in _WORD.findall(_norm(question))]
    for name, entries in lex:
        if any(_match(e, words) for e in entries):
            return name
    return "other"
