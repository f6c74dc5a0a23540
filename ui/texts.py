"""The UI's texts: every fixed text comes from the platform's one message catalogue (gbg.i18n,
14 languages, Swedish the reference); only the staff's example questions live here."""

from __future__ import annotations

import unicodedata
from typing import Any, Final

from gbg.i18n import DEFAULT, canonical, is_rtl, languages, supported, text, texts

# Staff are Swedish-speaking: their example questions are in Swedish and English only; every
# other language shows the Swedish ones.
STAFF_EXAMPLES: Final[dict[str, list[str]]] = {
    "sv": ["Vad gäller för basala hygienrutiner?", "Vad gör jag om brukaren inte öppnar?",
           "Hur rapporterar jag en avvikelse?", "Hur förebygger vi fall i hemmet?"],
    "en": ["What are the basic hygiene routines?", "What do I do if a client does not open?",
           "How do I report a deviation?", "How do we prevent falls at home?"],
}

_WHERE: Final = ("local", "cloud")
_LEVELS: Final = ("public", "internal", "sensitive")


def t(key: str, lang: str) -> str:
    """A fixed text in ``lang`` (Swedish for a key a translation lacks)."""
    return text(key, lang)


def language_codes() -> list[str]:
    """The languages the selector offers, Swedish first."""
    return list(supported())


def native_name(code: str) -> str:
    """How the selector shows a language: in that language ("العربية", "Suomi")."""
    entry = languages().get(code)
    return entry.native if entry else code


def initial_language(browser_locale: object) -> str:
    """The UI's language before the user chooses one: the browser's, else Swedish."""
    return (canonical(browser_locale) if isinstance(browser_locale, str) else None) or DEFAULT


def examples(role: str, lang: str) -> list[str]:
    """The example questions shown before the first question."""
    if role == "public":
        return texts("example_questions", lang)
    return STAFF_EXAMPLES.get(lang, STAFF_EXAMPLES[DEFAULT])


def direction(lang: str | None) -> str:
    """"rtl" or "ltr" for a language code."""
    return "rtl" if lang and is_rtl(lang) else "ltr"


def text_direction(value: str) -> str:
    """The direction of a text of unknown language, as the browser's ``dir="auto"`` decides it:
    the first letter with a strong direction (Arabic or Hebrew script: rtl; Latin: ltr)."""
    for ch in value:
        kind = unicodedata.bidirectional(ch)
        if kind == "L":
            return "ltr"
        if kind in ("R", "AL"):
            return "rtl"
    return "ltr"


def badge_text(lang: str, result: dict[str, Any]) -> str:
    """Who answered and how sensitive the question was, in the UI's language."""
    if result.get("refused"):
        where = "–"
    elif result.get("provider") == "extractive":
        where = t("where_extractive", lang)
    else:
        location = str(result.get("location"))
        where = t(f"where_{location}", lang) if location in _WHERE else "?"
    model = f" ({result['model']})" if result.get("model") else ""
    sensitivity = str(result.get("sensitivity"))
    level = t(f"level_{sensitivity}", lang) if sensitivity in _LEVELS else ""
    return f"🤖 {t('answer_from', lang)}: {where}{model} · {level}"
