"""Table tests for each kind of miss in issue 13 ("Why"): one row per input nobody wrote a rule
for, classified as a whole conversation by the real detector (built from the bundled corpora).

Rows were written before the fix. The personnummer here are synthetic (valid date and Luhn digit,
not the corpus clients'); client names and streets are the fictional ones of corpora/brukare.
A row is (turns, the level at least expected); the last turn is the question.
"""

from __future__ import annotations

import pytest

from bot.classify import classify
from bot.pii import Detector
from bot.wiring import build_detector
from gbg.labels import Sensitivity
from gbg.settings import Settings
from ingest.embedders import Embedder

S, I, P = Sensitivity.sensitive, Sensitivity.internal, Sensitivity.public  # noqa: E741


@pytest.fixture(scope="module")
def detector(bundled_store: Settings, e5: Embedder) -> Detector:
    from bot.retrieval.retriever import HybridRetriever
    from ingest.store import ChromaStore

    return build_detector(HybridRetriever(ChromaStore.from_settings(bundled_store), e5))


def _row(id_: str, turns: list[str] | str, level: Sensitivity) -> object:
    turns = [turns] if isinstance(turns, str) else turns
    return pytest.param(turns, level, id=id_)


KINDS = [
    # --- digits written as words; id words the lexicon lacked -----------------------------------
    _row("sv-words", "mitt personnummer är åtta fem noll två ett två ett två tre två", S),
    _row("sv-compound-words", "personnumret: åttiofem noll två tolv, tolv trettiotvå", S),
    _row("en-words", "my personal number is eight five oh two one two one two three two", S),
    _row("en-tens", "personal number eighty-five oh two twelve, twelve thirty-two please", S),
    _row("de-words", "Meine Nummer: neun null null eins eins fünf sieben sieben drei fünf", S),
    _row("pl-words", "mój numer osiem pięć zero dwa jeden dwa jeden dwa trzy dwa", S),
    _row("tr-words", "numaram dokuz sıfır sıfır bir bir beş yedi yedi üç beş", S),
    _row("id-word-personnumret", "personnumret 850212 1232 gäller ansökan", S),
    _row("id-word-personal-number", "personal number 900115 7735, is my form in?", S),
    # --- separators and encodings ---------------------------------------------------------------
    _row("slash", "mitt nummer 850212/1232, hur går det?", S),
    _row("underscore", "fil_850212_1232_ansokan.pdf kom den fram?", S),
    _row("colon", "id:850212:1232", S),
    _row("tab", "nummer\t850212\t1232", S),
    _row("spaced-dash", "personnummer 850212 - 1232", S),
    _row("double-dash", "850212--1232 är min sons nummer", S),
    _row("unicode-minus", "pnr 850212\u22121232", S),
    _row("nb-hyphen", "pnr 850212\u20111232", S),
    _row("zero-width", "pnr 8502\u200b12-12\u200d32", S),
    _row("fullwidth", "ｐｎｒ ８５０２１２－１２３２", S),
    _row("arabic-indic", "رقمي ٨٥٠٢١٢-١٢٣٢", S),
    _row("percent", "https://example.org/q?pnr=850212%2D1232", S),
    _row("url-path", "varför funkar https://minasidor.example.se/arende/198502121232/status", S),
    _row("csv", "namn;pnr;insats\nEva;19850212;1232;dusch", S),
    _row("json-fields", '{"fodd": "1985-02-12", "sista4": "1232", "insats": "tvätt"}', S),
    # --- personnummer in parts ------------------------------------------------------------------
    _row("parts-month-name", "jag är född 12 februari 1985 och de fyra sista är 1232", S),
    _row("parts-en", "Born on February 12, 1985. The last four digits are 1232.", S),
    _row("parts-across-turns", ["Jag är född 1985-02-12.", "Tack.", "Sista fyra: 1232. Och nu?"],
         S),
    _row("dob-with-name", "Eva Lund, född 3 mars 1941, vill ha matlåda", S),
    _row("dob-with-health", "min pappa född 1939-09-27 har demens", S),
    _row("dob-alone-is-doubt", "född 12 februari 1985, vad kostar busskort?", I),
    # --- client names misspelt, nicknamed, initials ---------------------------------------------
    _row("misspelt-client", "Gunnell Anderson vill byta duschdag", S),
    _row("misspelt-lower", "har gunel andersson fått sin matlåda?", S),
    _row("initials-diagnosis", "G.A. (diabetes typ 2) behöver hjälp med insulinet", S),
    _row("surname-initial", "Karlsson B. vill ha dusch på tisdag", S),
    _row("initial-surname", "B. Svenson vill ha dusch på tisdag", S),
    _row("first-name-street", "Kerstin på Lundagårdsbacken vill ha kaffe", S),
    _row("nickname", "Stickan Berg ska ha besök kl 10", S),
    # --- lower-case addresses; relation words ---------------------------------------------------
    _row("lower-address", "hemtjänsten kom inte till tranbärsgatan 18 idag", S),
    _row("sv-mannen", "mannen har parkinson och ramlar ofta", S),
    _row("pl-mama", "mama ma cukrzycę i potrzebuje pomocy", S),
    _row("bs-majka", "majka ima dijabetes i treba pomoć kod kuće", S),
    _row("so-hooyo", "hooyaday waxay qabtaa sonkorow", S),
    _row("fi-aiti", "äitini sairastaa dementiaa", S),
    _row("tr-annem", "annem şeker hastası ve yardıma ihtiyacı var", S),
    # --- other scripts ----------------------------------------------------------------------
    _row("ar-mother-diabetes", "أمي مريضة بالسكري وتحتاج مساعدة", S),
    _row("fa-father-heart", "پدرم بیماری قلبی دارد و کمک می‌خواهد", S),
    _row("ti-mother-diabetes", "ኣደይ ሕማም ሽኮር ኣለዋ", S),
    _row("ar-name-client", "السيدة بارفين رحيمي عندها ضغط", S),
    _row("cyrillic-is-doubt", "Моя мама больна, ей нужна помощь дома", I),
    # --- the conversation as a whole ------------------------------------------------------------
    _row("turn1-id", ["Mitt personnummer är 8502121232.", "Tack.", "och på söndagar då?"], S),
    _row("turn1-words", ["mitt nummer är åtta fem noll två ett två ett två tre två", "Ok.",
                         "hur lång är kön?"], S),
    # --- doubt means local ----------------------------------------------------------------------
    _row("six-digits-doubt", "ordernummer 5831 7702 gäller min beställning", I),
]

NEGATIVES = [
    _row("public-org-phone", "Ska jag ringa 031-365 00 00 för hemtjänst?", P),
    _row("health-general", "Vad är diabetes typ 2?", P),
    _row("relative-no-health", "hur söker man hemtjänst åt sin mamma?", P),
    _row("date-event", "Vad händer på Liseberg den 13 december 2026?", P),
    _row("price", "Kostar ett 24-timmarsbiljett 165 kronor?", P),
    _row("tram-line", "Går linje 11 till Saltholmen kl 10.30?", P),
    # a street and number with no person: doubt (kept local), not personal data
    _row("public-place-address", "Hur tar jag mig till Södra Vägen 54?", I),
    _row("famous", "Var står statyn av Gustav II Adolf?", P),
    _row("en-words-not-id", "Can two or three people share one ticket?", P),
    _row("ar-ordinary", "متى تفتح المكتبة يوم الأحد؟", P),
    _row("ti-ordinary", "ቤተ-መጻሕፍቲ ሰንበት ክፉት ድዩ?", P),
]

# Rows that failed before the fix were committed as strict xfails (commit 445a5f1); none now.
XFAIL_BEFORE: set[str] = set()


def _mark(rows: list) -> list:
    return [
        pytest.param(*r.values, id=r.id, marks=pytest.mark.xfail(strict=True))
        if r.id in XFAIL_BEFORE else r
        for r in rows
    ]


@pytest.mark.parametrize(("turns", "level"), _mark(KINDS))
def test_kind_stays_off_the_cloud(detector: Detector, turns: list[str], level: Sensitivity
                                  ) -> None:
    c = classify(turns[-1], turns[:-1], [], "public", detector)
    assert c.level.rank >= level.rank, c
    assert c.reasons  # always with the reason


@pytest.mark.parametrize(("turns", "level"), _mark(NEGATIVES))
def test_ordinary_question_stays_public(detector: Detector, turns: list[str], level: Sensitivity
                                        ) -> None:
    c = classify(turns[-1], turns[:-1], [], "public", detector)
    assert c.level == level, c


def test_redaction_covers_the_normalised_view(detector: Detector) -> None:
    """Values found only in the canonical view are redacted too (the whole text if need be)."""
    for text in ("pnr 850212\u22121232", "mitt nummer 8502\u200b12-1232",
                 "åtta fem noll två ett två ett två tre två"):
        out = detector.redact(text)
        assert not detector.kinds(out), out
        assert "1232" not in out and "två tre två" not in out
