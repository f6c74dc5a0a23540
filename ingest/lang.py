"""Language identification between the platform's two languages, Swedish and English."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

SUPPORTED = ("sv", "en")


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(list(SUPPORTED))
    return ident


def detect_language(text: str, default: str = "sv") -> str:
    """'sv' or 'en'. Short or ambiguous text falls back to ``default`` (Swedish first)."""
    sample = text[:2000]
    if sum(ch.isalpha() for ch in sample) < 3:
        return default
    lang, prob = _identifier().classify(sample)
    return str(lang) if prob >= 0.6 else default
