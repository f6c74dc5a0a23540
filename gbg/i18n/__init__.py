"""The platform's languages and its one message catalogue.

Every fixed text a user sees (the bot's refusals and notices, the extractive answerer's framing,
the chat UI, the AI notice, the badges) lives in ``messages/<code>.toml``: Swedish is the
reference, every other file has the same keys and placeholders (a test checks this).
``languages.toml`` lists the languages, their names, writing direction and the codes a detector
may return for each.

``text(key, lang, **values)`` picks the language (English for a language the catalogue does not
have, Swedish for a key a file lacks) and fills in the placeholders.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Final

DEFAULT: Final = "sv"
FALLBACK: Final = "en"  # the answer language for a question in a language we do not support


@dataclass(frozen=True)
class Language:
    code: str
    name: str  # in English: what a generative model is told to answer in
    native: str  # what the language selector shows
    rtl: bool
    detect: tuple[str, ...]  # ISO 639-1 codes a language detector may return for it


def _resource(name: str) -> bytes:
    return files("gbg.i18n").joinpath(name).read_bytes()


@cache
def languages() -> dict[str, Language]:
    raw = tomllib.loads(_resource("languages.toml").decode("utf-8"))
    return {code: Language(code, v["name"], v["native"], v["dir"] == "rtl", tuple(v["detect"]))
            for code, v in raw.items()}


def supported() -> tuple[str, ...]:
    """Every answer language, Swedish first."""
    return tuple(languages())


def canonical(code: str | None) -> str | None:
    """The platform's code for a detector's or a browser's code ("nn", "no-NO", "hr" → "nb",
    "nb", "bs"), or None when the platform does not answer in that language."""
    if not code:
        return None
    base = code.strip().lower().replace("_", "-").split("-")[0]
    for lang in languages().values():
        if base == lang.code or base in lang.detect:
            return lang.code
    return None


def is_rtl(lang: str) -> bool:
    entry = languages().get(lang)
    return bool(entry and entry.rtl)


@cache
def catalogue(lang: str) -> dict[str, str | list[str]]:
    try:
        raw = _resource(f"messages/{lang}.toml")
    except FileNotFoundError:  # a language listed without its file (a test catches this)
        return {}
    data: dict[str, str | list[str]] = tomllib.loads(raw.decode("utf-8"))
    return data


def _lookup(key: str, lang: str) -> str | list[str]:
    code = lang if lang in languages() else FALLBACK
    for candidate in (code, DEFAULT):
        value = catalogue(candidate).get(key)
        if value is not None:
            return value
    raise KeyError(f"no text {key!r} in the message catalogue")


def text(key: str, lang: str, **values: str) -> str:
    value = _lookup(key, lang)
    if not isinstance(value, str):
        raise TypeError(f"catalogue entry {key!r} is a list; use texts()")
    return value.format(**values) if values else value


def texts(key: str, lang: str) -> list[str]:
    value = _lookup(key, lang)
    return [value] if isinstance(value, str) else list(value)
