"""Every fixed text the bot shows its users, in one catalogue: refusals, notices, the
eligibility referral. ``text(key, lang, **values)`` picks the question's language (Swedish when
the catalogue lacks it) and fills in the placeholders."""

from __future__ import annotations

from typing import Final

CATALOGUE: Final[dict[str, dict[str, str]]] = {
    "refusal": {
        "sv": "Jag vet tyvärr inte svaret på det utifrån mina källor. Kontakta {contact}, så "
        "hjälper de dig vidare.",
        "en": "I'm sorry, I don't know the answer to that from my sources. Please contact "
        "{contact} and they will help you.",
    },
    "no_provider": {
        "sv": "Frågan innehåller känsliga uppgifter och kan bara besvaras av stadens egen "
        "AI-modell, som inte är tillgänglig just nu. Försök igen senare eller kontakta {contact}.",
        "en": "Your question contains sensitive information and can only be answered by the "
        "city's own AI model, which is not available right now. Please try again later or "
        "contact {contact}.",
    },
    "notice_replaced": {
        "sv": "Det genererade svaret kunde inte beläggas med källorna och har ersatts av utdrag "
        "ur källorna.",
        "en": "The generated answer could not be verified against the sources and was replaced "
        "by passages from the sources.",
    },
    "notice_dropped": {
        "sv": "Meningar som inte stöddes av källorna har tagits bort.",
        "en": "Sentences that the sources did not support were removed.",
    },
    "eligibility": {
        "sv": "Assistenten kan inte avgöra om du har rätt till en insats. Det beslutar en "
        "biståndshandläggare efter en utredning; kontakta {contact} för att ansöka.",
        "en": "The assistant cannot decide whether you are entitled to a service. A needs "
        "assessor (biståndshandläggare) decides after an assessment; contact {contact} to "
        "apply.",
    },
    "no_match": {
        "sv": "Jag hittar inget svar på den frågan i mina källor.",
        "en": "I could not find an answer to that question in my sources.",
    },
    "sources_in_swedish": {
        "sv": "",
        "en": "The sources are in Swedish; the relevant passages:",
    },
}


def text(key: str, lang: str, **values: str) -> str:
    entry = CATALOGUE[key]
    return entry.get(lang, entry["sv"]).format(**values)
