"""Every visitor's and resident's language (issue 16): the message catalogue is complete in all
14 languages, short questions are told apart (also English full of Swedish names), answers
follow the question's language, and a language we do not answer in gets English with a line
saying so. Asked through the API on the bundled corpora."""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.answerability import anchors
from bot.http.app import create_app
from bot.llm.base import GenerationRequest, Source
from bot.llm.extractive import extractive_answer, framing_text
from bot.prompts import build_messages
from gbg.i18n import canonical, is_rtl, languages, supported, text, texts
from gbg.i18n.detect import answer_language, detect
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import ask, make_bot

LANGS = ("sv", "en", "de", "nb", "da", "fi", "fr", "es", "pl", "tr", "bs", "so", "ar", "fa")


def _messages(lang: str) -> dict[str, Any]:
    raw = files("gbg.i18n").joinpath(f"messages/{lang}.toml").read_bytes()
    return tomllib.loads(raw.decode("utf-8"))


def _placeholders(value: str | list[str]) -> set[str]:
    items = [value] if isinstance(value, str) else value
    return {f[1] for v in items for f in string.Formatter().parse(v) if f[1]}


def test_the_platform_answers_in_fourteen_languages_swedish_first() -> None:
    assert supported() == LANGS
    assert [c for c in LANGS if is_rtl(c)] == ["ar", "fa"]


@pytest.mark.parametrize("lang", LANGS)
def test_catalogue_has_every_text_in_every_language(lang: str) -> None:
    ref, got = _messages("sv"), _messages(lang)
    assert list(got) == list(ref), set(got) ^ set(ref)
    for key, value in ref.items():
        assert _placeholders(got[key]) == _placeholders(value), (lang, key)
        own_sources = key == f"sources_in_{lang}"
        assert bool(got[key]) != own_sources, (lang, key)  # only "sources in my language" empty
    assert len(got["example_questions"]) == 4
    # The contact-centre texts say the city offers interpretation: the line is there in all.
    for key in ("refusal", "no_provider", "eligibility"):
        assert got[key] != ref[key] or lang == "sv"
        assert got[key].count("{contact}") == 1


@pytest.mark.parametrize(("code", "lang"), [
    ("nb-NO", "nb"), ("nn", "nb"), ("no", "nb"), ("hr", "bs"), ("sr-Latn-RS", "bs"),
    ("ar-SA", "ar"), ("fa_IR", "fa"), ("sv-FI", "sv"), ("it", None), ("", None),
])
def test_browser_and_detector_codes_map_to_the_platform_languages(code: str,
                                                                   lang: str | None) -> None:
    assert canonical(code) == lang


def test_text_falls_back_to_english_for_a_language_without_a_catalogue() -> None:
    assert text("no_match", "it") == text("no_match", "en")
    assert texts("example_questions", "de")[0] != texts("example_questions", "sv")[0]


@pytest.mark.parametrize(("question", "lang"), [
    ("Hur tar jag mig till Liseberg?", "sv"),
    ("brytpunktssamtal hos brukaren, vad gäller", "sv"),
    ("How much does a färdtjänst trip cost?", "en"),
    ("Can I use my Västtrafik ticket on the Älvsnabben ferry?", "en"),
    ("Wie komme ich zum Hauptbahnhof?", "de"),
    ("Hvor kan jeg kjøpe billett til trikken?", "nb"),
    ("Hvor kan jeg købe en billet til sporvognen?", "da"),
    ("Missä on lähin kirjasto?", "fi"),
    ("Où puis-je acheter un billet de tram ?", "fr"),
    ("¿Dónde puedo comprar un billete de tranvía?", "es"),
    ("Gdzie mogę kupić bilet na tramwaj?", "pl"),
    ("Tramvay bileti nereden alabilirim?", "tr"),
    ("Gdje mogu kupiti kartu za tramvaj?", "bs"),
    ("Halkee ka iibsan karaa tigidhka taraamka?", "so"),
    ("أين يمكنني شراء تذكرة الترام؟", "ar"),
    ("کجا می‌توانم بلیت تراموا بخرم؟", "fa"),
])
def test_short_questions_are_told_apart(question: str, lang: str) -> None:
    assert detect(question)[0] == lang
    assert answer_language(question) == (lang, False)


@pytest.mark.parametrize("question", [
    "Dove posso comprare un biglietto del tram?",
    "Onde posso comprar um bilhete de elétrico?",
    "Где можно купить билет на трамвай?",
])
def test_a_language_we_do_not_answer_in_gets_english(question: str) -> None:
    assert answer_language(question) == ("en", True)


def test_anchors_are_the_names_and_numbers_that_read_the_same_in_every_language() -> None:
    assert anchors("Wie komme ich vom Flughafen Landvetter in die Innenstadt?", "de") == \
        ["Landvetter"]
    assert anchors("Landvetter Havalimanı'ndan şehir merkezine nasıl giderim?", "tr") == \
        ["Landvetter"]
    assert "11" in anchors("Welche Linie fährt nach Saltholmen, die 11?", "de")


SOURCES = [Source(1, "Landvetter", "Flygbussarna går från Landvetter till Nils Ericsonterminalen. "
                  "Resan tar ungefär 30 minuter.", "sv")]


def test_extractive_framing_says_in_the_question_language_which_language_the_sources_are_in(
) -> None:
    assert framing_text("de", {"sv"}) == "Die Quellen sind auf Schwedisch; die relevanten " \
        "Abschnitte:"
    assert framing_text("sv", {"sv"}) == ""
    assert framing_text("ar", {"sv", "en"}) == text("sources_in_mixed", "ar")
    answer = extractive_answer(GenerationRequest("Wie komme ich von Landvetter in die Stadt?",
                                                 "de", SOURCES))
    assert answer.startswith(text("sources_in_sv", "de")) and "Flygbussarna" in answer


@pytest.mark.parametrize(("lang", "name"), [("de", "German"), ("ar", "Arabic"),
                                            ("so", "Somali")])
def test_generative_models_are_told_to_answer_in_the_question_language(lang: str,
                                                                       name: str) -> None:
    system, user = build_messages(GenerationRequest("?", lang, SOURCES), "031-365 00 00")
    assert f"answer in {name}" in system["content"]
    assert languages()[lang].name == name
    sv_system, _ = build_messages(GenerationRequest("?", "sv", SOURCES), "031-365 00 00")
    assert "Svara på svenska" in sv_system["content"]
    assert user["content"].startswith("Sources:")


# --- through the API -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("languages"), e5=e5)
    with TestClient(create_app(bot.settings, bot.service)) as c:
        yield c


def _ask(client: TestClient, question: str, **body: Any) -> dict[str, Any]:
    r = ask(client, question, **body)
    assert r.status_code == 200, r.text
    d: dict[str, Any] = r.json()
    return d


def test_german_question_gets_the_landvetter_answer_with_citation_and_german_framing(
        client: TestClient) -> None:
    d = _ask(client, "Wie komme ich vom Flughafen Landvetter in die Innenstadt?")
    assert not d["refused"], d["answer"]
    assert d["lang"] == "de"
    assert d["answer"].startswith(text("sources_in_sv", "de")) or \
        d["answer"].startswith(text("sources_in_en", "de")), d["answer"]
    assert "flygbuss" in d["answer"].lower(), d["answer"]  # the airport coach
    assert d["citations"] and re.search(r"\[\d\]", d["answer"])
    assert any("landvetter" in c["source"] or "airport" in c["source"] for c in d["citations"])


def test_a_refusal_is_in_the_question_language_and_offers_an_interpreter(
        client: TestClient) -> None:
    d = _ask(client, "Wie viel kostet ein Flug zum Mond ab Göteborg?")
    assert d["refused"] and d["lang"] == "de"
    assert d["answer"].startswith(text("refusal", "de", contact="")[:30]), d["answer"]
    assert "Dolmetscher" in d["answer"]


def test_a_language_we_do_not_answer_in_is_answered_in_english_with_a_line_saying_so(
        client: TestClient) -> None:
    d = _ask(client, "Come posso arrivare dall'aeroporto Landvetter al centro della città?")
    assert d["lang"] == "en"
    assert d["answer"].startswith(text("unsupported_language", "en")), d["answer"]


def test_the_caller_can_ask_for_a_language_and_an_unknown_one_is_a_422(
        client: TestClient) -> None:
    d = _ask(client, "Hur tar jag mig från Landvetter till centrum?", lang="nb-NO")
    assert d["lang"] == "nb"
    r = ask(client, "Hur tar jag mig till Liseberg?", lang="klingon")
    assert r.status_code == 422 and "unsupported language" in r.text


# --- the citation verifier across languages ----------------------------------------------------

LANDVETTER = [Source(1, "Landvetter", "Flygbussarna går från Landvetter flygplats till Nils "
                     "Ericson-terminalen i centrum. Resan tar ungefär 30 minuter.", "sv")]


@pytest.mark.parametrize(("supported_claim", "unsupported_claim"), [
    ("Die Flughafenbusse fahren von Landvetter zum Nils Ericson-Terminal im Zentrum [1].",
     "Vom Flughafen fährt jede Stunde ein Zug nach Oslo [1]."),
    ("Les bus de l'aéroport vont de Landvetter au terminal Nils Ericson au centre-ville [1].",
     "Un train part de l'aéroport vers Oslo toutes les heures [1]."),
    ("Lotniskowe autobusy jeżdżą z Landvetter do terminalu Nils Ericson w centrum [1].",
     "Z lotniska co godzinę odjeżdża pociąg do Oslo [1]."),
])
def test_the_citation_verifier_reads_an_answer_in_another_language_by_meaning(
        e5: Embedder, supported_claim: str, unsupported_claim: str) -> None:
    from bot.citations import CitationVerifier

    verifier = CitationVerifier(e5)
    ok = verifier.verify(supported_claim, LANDVETTER)
    bad = verifier.verify(unsupported_claim, LANDVETTER)
    assert ok.grounded, ok.checks
    assert not bad.grounded, bad.checks


def test_a_negated_claim_in_another_language_needs_a_negated_source(e5: Embedder) -> None:
    from bot.citations import CitationVerifier

    source = [Source(1, "Flygbuss", "Västtrafiks biljetter gäller inte på flygbussen.", "sv")]
    verifier = CitationVerifier(e5)
    assert verifier.verify("Västtrafik-Tickets gelten nicht im Flughafenbus [1].",
                           source).grounded
    assert not verifier.verify("Västtrafik-Tickets gelten im Flughafenbus [1].",
                               source).grounded


def test_a_language_the_personal_data_vocabularies_do_not_cover_stays_local() -> None:
    from bot.classify import classify
    from bot.pii import Detector
    from gbg.labels import Sensitivity

    det = Detector()
    c = classify("Ma mère a la maladie d'Alzheimer, qui peut l'aider ?", [], [], "public", det,
                 language="fr")
    assert c.level.rank >= Sensitivity.internal.rank and "doubt:language:fr" in c.reasons
    c = classify("Wo ist der Hauptbahnhof?", [], [], "public", det, language="de")
    assert c.level is Sensitivity.public  # German is covered: no doubt from the language


def test_asking_for_a_language_changes_the_answer_language_not_how_the_question_is_judged(
        client: TestClient) -> None:
    q = "Hur tar jag mig från Landvetter till centrum?"
    plain, other = _ask(client, q), _ask(client, q, lang="de")
    assert other["lang"] == "de" and plain["lang"] == "sv"
    assert plain["refused"] == other["refused"]
    assert [c["source"] for c in plain["citations"]] == [c["source"] for c in other["citations"]]


@pytest.mark.parametrize("question", [
    "Har jag rätt till hemtjänst?", "Am I entitled to home care?",
    "Habe ich Anspruch auf Hemtjänst für meine Mutter?", "Har jeg rett til hjemmetjeneste?",
    "Har jeg ret til hjemmehjælp?", "Onko minulla oikeus kotipalveluun?",
    "Ai-je droit à l'aide à domicile ?", "¿Tengo derecho a ayuda a domicilio?",
    "Czy przysługuje mi pomoc domowa?", "Evde bakım hakkım var mı?",
    "Imam li pravo na pomoć u kući?", "Xaq ma u leeyahay daryeel guri?",
    "هل يحق لي الحصول على رعاية منزلية؟", "آیا حق دارم کمک در خانه بگیرم؟",
])
def test_an_eligibility_question_is_recognised_in_every_language(question: str) -> None:
    from bot.policy import is_eligibility_question

    assert is_eligibility_question(question)


@pytest.mark.parametrize("question", [
    "Hur ansöker jag om hemtjänst?", "Wie beantrage ich Hemtjänst?", "Où est Liseberg ?",
])
def test_asking_how_to_apply_is_not_an_eligibility_question(question: str) -> None:
    from bot.policy import is_eligibility_question

    assert not is_eligibility_question(question)


def test_a_german_eligibility_question_gets_the_referral_in_german(client: TestClient) -> None:
    d = _ask(client, "Habe ich Anspruch auf Hemtjänst, wenn ich in Göteborg wohne?")
    assert not d["refused"] and d["lang"] == "de", d["answer"]
    referral = text("eligibility", "de", contact="X").split("X")[0]
    assert referral in d["answer"], d["answer"]
