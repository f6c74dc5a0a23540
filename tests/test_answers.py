"""Answers people can act on (issue 15): the questions quoted in the issue, asked through the
API as a tourist or a home-care worker would, and the pure parts of the reader and the one
"do the sources answer this?" decision as tables."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot import policy
from bot.answerability import (
    SEM_CANDIDATES,
    AnswerabilityModel,
    Evidence,
    ScoredSpan,
    SourceText,
    Span,
    _decompounder,
    asked_type,
    asked_unit,
    clean,
    counts_in,
    coverage,
    derive,
    load_model,
    missing_content,
    question_type,
    read,
    spans_of,
    strict_type,
)
from bot.auth import KeyStore
from bot.http.app import create_app
from bot.llm.base import GenerationRequest, Source
from bot.llm.extractive import (
    _CITED,
    SECOND_PASSAGE,
    _join,
    _new_lines,
    _plain,
    _restates,
    _source_model,
    choose_source,
    extractive_answer,
    source_features,
    source_probabilities,
    source_texts,
)
from bot.overlap import stem_set
from gbg.labels import Role
from gbg.settings import Settings
from ingest.embedders import Embedder
from tests.helpers import ask, make_bot

RAW_MARKDOWN = re.compile(r"(?m)\*\*|__|\[[^\]]+\]\([^)]*\)|^#{1,6} |`")
CONTACT = "031-365 00 00"


@dataclass(frozen=True)
class Api:
    client: TestClient
    staff_key: str


@pytest.fixture(scope="module")
def api(bundled_store: Settings, e5: Embedder, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Api]:
    bot = make_bot(bundled_store, tmp_path_factory.mktemp("answers"), e5=e5)
    staff = KeyStore(bot.settings.keys_path).create(Role.staff, "anna")
    with TestClient(create_app(bot.settings, bot.service)) as client:
        yield Api(client, staff)


def _ask(api: Api, question: str, staff: bool = False) -> dict[str, Any]:
    headers = {"X-API-Key": api.staff_key} if staff else {}
    r = ask(api.client, question, headers=headers)
    assert r.status_code == 200, r.text
    d: dict[str, Any] = r.json()
    assert not RAW_MARKDOWN.search(d["answer"]), d["answer"]
    docs = [(c["corpus"], c["source"]) for c in d["citations"]]
    assert len(docs) == len(set(docs)), docs  # one source card per document
    return d


@pytest.mark.parametrize("question", [
    "Kan jag ta med hunden på spårvagnen?",
    "Who is the mayor of Gothenburg?",
])
def test_questions_the_sources_do_not_answer_are_refused_with_the_contact_centre(
        api: Api, question: str) -> None:
    d = _ask(api, question)
    assert d["refused"] and d["refusal_reason"] == "no_relevant_sources", d["answer"]
    assert CONTACT in d["answer"] and d["citations"] == []


def test_city_card_price_says_where_to_check_or_refuses(api: Api) -> None:
    d = _ask(api, "What does the Göteborg City Card cost?")
    if not d["refused"]:
        # The texts give no amount: the answer is what they say about the price, from the one
        # City Card document, on one source card.
        assert "price" in d["answer"], d["answer"]
        assert [c["source"] for c in d["citations"]] == ["docs/city-card-en.md"]
    else:
        assert CONTACT in d["answer"]


def test_oslo_gets_the_oslo_travel_time_not_stockholm(api: Api) -> None:
    d = _ask(api, "hur lång tid tar tåget till Oslo")
    assert not d["refused"], d["answer"]
    assert "fyra timmar" in d["answer"] and "tre timmar" not in d["answer"], d["answer"]


def test_hand_sanitiser_with_winter_vomiting_bug_quotes_soap_and_water_first(api: Api) -> None:
    d = _ask(api, "räcker det med handsprit om brukaren har vinterkräksjuka?", staff=True)
    assert not d["refused"], d["answer"]
    assert "tvål och vatten" in d["answer"], d["answer"]


def test_missed_dose_quotes_the_routine_never_double(api: Api) -> None:
    d = _ask(api, "Jag glömde ge en dos i morse, kan jag ge dubbelt nu?", staff=True)
    assert not d["refused"], d["answer"]
    assert "Ge aldrig en dubbel dos" in d["answer"] and "sjuksköterskan" in d["answer"]
    # The procedure whole and in order.
    steps = [d["answer"].find(s) for s in ("Kontakta sjuksköterskan direkt",
                                           "Ge aldrig en dubbel dos", "avvikelserapport")]
    assert -1 not in steps and steps == sorted(steps), d["answer"]


def test_safety_chain_keeps_the_next_sentence_call_112(api: Api) -> None:
    d = _ask(api, "Säkerhetskedjan sitter på insidan", staff=True)
    assert not d["refused"], d["answer"]
    assert "brukaren är hemma" in d["answer"] and "Ring då 112" in d["answer"], d["answer"]


# -- the reader ----------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "plain"), [
    ("The **Göteborg City Card** is *digital*.", "The Göteborg City Card is digital."),
    ("See [goteborg.com](https://goteborg.com) now", "See goteborg.com (https://goteborg.com) now"),
    ("__Obs__: `112`", "Obs: 112"),
    ("## Rubrik", "Rubrik"),
])
def test_clean_renders_markdown_as_text(raw: str, plain: str) -> None:
    assert clean(raw) == plain


@pytest.mark.parametrize(("question", "kind"), [
    ("Vad kostar ett månadskort?", "cost"),
    ("What does the City Card cost?", "cost"),
    ("hur lång tid tar tåget till Oslo", "duration"),
    ("När öppnar turistbyrån?", "when"),
    ("Vilket telefonnummer har kontaktcenter?", "contact"),
    ("Var ligger Feskekôrka?", "where"),
    ("Hur ansöker jag om bygglov?", "howto"),
    ("Får jag ge dubbel dos?", "yesno"),
])
def test_question_types(question: str, kind: str) -> None:
    assert question_type(question) == kind


@pytest.mark.parametrize(("question", "kind"), [
    # The asking phrase decides, not a content word further on ("ringa", "telefon", "betala").
    ("Vid hur många graders feber ska jag ringa sjuksköterskan?", "number"),
    ("Hur många gånger i veckan ska jag ringa dottern?", "number"),
    ("Hur lång uppsägningstid har en plats i fritidshemmet?", "duration"),
    ("Hur långt i förväg ska jag beställa en resa?", "duration"),
    ("How long before departure should I be at the ferry terminal?", "duration"),
    ("Hur ofta byts batteriet i larmknappen?", "often"),
    ("How often does the boat to the islands leave?", "often"),
    ("What are the dates of the harbour festival?", "when"),
    ("Vilken temperatur ska kylskåpet ha?", "number"),
    ("Vad är avgiften för en parkeringstillstånd?", "cost"),
    ("Ungefär hur länge är kön till simskolan?", "duration"),
    # A question that asks how to do something, though "när" or "om" come later.
    ("Vad gör jag när brukaren inte öppnar dörren?", "howto"),
    ("What should I do if the client refuses her medicine?", "howto"),
    # A yes/no question is one, though it names a price or a phone.
    ("Får jag betala med kort på bussen?", "yesno"),
    ("Kan jag ringa efter klockan tio?", "yesno"),
    # ... unless it asks a wh-question inside.
    ("Kan du säga vad ett årskort kostar?", "cost"),
])
def test_question_types_by_asking_phrase(question: str, kind: str) -> None:
    assert question_type(question) == kind


@pytest.mark.parametrize(("question", "asked", "hint"), [
    # a wh-word inside a yes/no question is a conjunction: it asks yes or no
    ("Får jag ha kvar vigselringen när jag hjälper en brukare att duscha?", "yesno", "yesno"),
    ("glömde insulinet vid lunchen, ska jag ge det nu när jag är tillbaka?", "yesno", "yesno"),
    ("Do I get a plastic card when I buy the City Card?", "yesno", "yesno"),
    # the asking phrase names the kind, wherever a content word hints at another
    ("Vilket nummer ringer jag till polisen när det inte är akut?", "contact", "contact"),
    # "does it cost anything?" asks yes or no: "it is free", "it is in the ticket" answer it
    ("Kostar det något att lämna farligt avfall?", "yesno", "yesno"),
    ("Har jag rätt till tolk och vad kostar det?", "cost", "cost"),
    ("Which bus goes to the airport?", "number", "number"),
    ("What are the opening hours of the library on Sundays?", "when", "when"),
    # a wh-clause whose kind only its content words hint at is not checked
    ("Vilka konstnärer kan man se i galleriet?", None, "who"),
    ("Hur räknas avgiften ut för gifta par?", None, "cost"),
    ("Kan du säga vad ett årskort kostar?", None, "cost"),
    ("Vad är växelvård?", None, "other"),
])
def test_asked_type_is_what_the_asking_phrase_names(question: str, asked: str | None,
                                                    hint: str) -> None:
    assert asked_type(question) == asked
    assert question_type(question) == hint


def test_a_yes_no_question_is_checked_on_its_main_clause() -> None:
    q = "Får jag ha kvar vigselringen när jag hjälper en brukare att duscha?"
    # the condition ("när jag hjälper en brukare att duscha") need not be named
    assert strict_type("yesno", _spans("Vigselringar får inte bäras vid vårdnära arbete."),
                       q) == 1.0
    assert strict_type("yesno", _spans("Hjälp brukaren att duscha varje vecka."), q) == 0.0


@pytest.mark.parametrize(("question", "unit", "text", "counted"), [
    ("Hur många dagar har jag på mig att svara?", "dag", "Du svarar inom tio dagar.", True),
    ("Hur många dagar har jag på mig att svara?", "dag", "Ring 031-365 00 00 om du har frågor.",
     False),
    ("Vid hur många graders feber ska jag ringa?", "grad", "Vid feber över 38 °C ringer du.",
     True),
    ("How many minutes does the ride take?", "minu", "The ride takes about 25 minutes.", True),
    ("How many minutes does the ride take?", "minu", "Trams leave every 10 minutes, line 5.",
     True),
    ("Hur många poäng ger risk?", "poän", "Testet mäter risken för undernäring.", False),
    ("Hur många av brukarna har larm?", "", "", False),
])
def test_counts_in_the_unit_asked_for(question: str, unit: str, text: str,
                                      counted: bool) -> None:
    assert asked_unit(question) == unit
    if unit:
        assert counts_in(unit, text) is counted


def _spans(*texts: str) -> list[ScoredSpan]:
    return [ScoredSpan(Span(0, 1, t, "sentence", 0, i), 0.9, 0.5, 1.0, 0.5)
            for i, t in enumerate(texts)]


def test_missing_content_counts_everyday_words_too() -> None:
    q = "Får jag ta med katten på bussen?"
    # "katt" is an everyday word (not rare), but a text about buses without it does not answer.
    assert missing_content(q, "Bussar och spårvagnar körs av Västtrafik.", "sv") == 0.5
    assert missing_content(q, "Katter får följa med på bussen i en bur.", "sv") == 0.0
    assert missing_content("Who runs the ferries?", "Västtrafik runs the ferries.", "en") == 0.0
    # the other languages: the names and numbers the text lacks
    assert missing_content("Wann öffnet Liseberg?", "Universeum öppnar klockan tio.",
                           "de") == 1.0


def test_typed_answer_must_say_what_the_question_does_not() -> None:
    q = "Vilka tider har fiskhallen öppet på lördagar?"
    # "lördagar" only echoes the question: no opening hours are given.
    assert strict_type("when", _spans("Fiskhallen har öppet på lördagar."), q) == 0.0
    assert strict_type("when", _spans("På lördagar är det öppet 10.00-15.00."), q) == 1.0
    q = "Hur många timmar är utbildningen?"
    assert strict_type("number", _spans("Utbildningen ges 2 gånger per år."), q) == 0.0
    assert strict_type("number", _spans("Den omfattar åtta timmar."), q) == 1.0
    assert strict_type("often", _spans("Bussen går var tionde minut."), "Hur ofta går bussen?") \
        == 1.0
    assert strict_type("howto", _spans("Tvätta händerna."), "Hur gör jag?") == 0.5
    # yes/no: a sentence that names everything asked about, not one half in each
    q = "Får jag ta med katten på bussen?"
    assert strict_type("yesno", _spans("Samma biljett gäller på bussen.",
                                       "I parken ska katten vara i koppel."), q) == 0.0
    assert strict_type("yesno", _spans("Katter får följa med på bussen i en bur."), q) == 1.0
    # the clause that asks, not the story before it
    assert strict_type("yesno", _spans("Ge aldrig en dubbel dos."),
                       "Jag glömde ge en dos i morse, kan jag ge dubbelt nu?") == 1.0


STEPS = """## Om en dos har missats

1. Kontakta sjuksköterskan direkt.
2. Ge aldrig en dubbel dos på eget initiativ.
3. Skriv en avvikelserapport."""


def test_a_numbered_list_is_one_span_with_its_heading_and_items_in_order() -> None:
    spans, lists = spans_of(SourceText(1, STEPS, "sv", "Läkemedel > Om en dos har missats"), 0)
    assert [s.kind for s in spans] == ["item", "item", "item"]
    (steps,) = lists.values()
    assert steps.kind == "steps" and steps.heading == "Om en dos har missats"
    assert steps.items[0].startswith("Kontakta") and steps.items[-1].startswith("Skriv")


def test_extractive_answer_quotes_the_procedure_whole_and_cites_each_step() -> None:
    req = GenerationRequest("glömde en dos, kan jag ge dubbelt?", "sv", [
        Source(1, "Läkemedel", STEPS, "sv", "Läkemedel > Om en dos har missats"),
        Source(2, "Hygien", "Tvätta händerna med tvål och vatten.", "sv", "Hygien"),
    ])
    text = extractive_answer(req)
    assert text.startswith("Om en dos har missats [1]:")
    assert text.count("[1]") == 4 and "[2]" not in text
    assert text.index("Kontakta") < text.index("Ge aldrig") < text.index("avvikelserapport")


# A routine as a section: a condition, its consequence in the next paragraph, a list, and a
# paragraph under another heading that must not come along.
ROUTINE = """## Om brukaren inte öppnar

Om dörren är reglad eller har säkerhetskedja på insidan tyder det på att brukaren är hemma.

Ring då 112 och stanna kvar utanför dörren.

Kontakta sedan:
- din planerare,
- brukarens anhöriga.

## Nycklar

Nycklar hämtas på kontoret och kvitteras i pärmen."""


def test_the_answer_is_the_paragraph_with_what_stands_around_it_in_its_section() -> None:
    req = GenerationRequest("säkerhetskedjan sitter på insidan", "sv", [
        Source(1, "Rutin", ROUTINE, "sv", "Rutiner > Om brukaren inte öppnar")])
    text = extractive_answer(req)
    # The consequence in the next paragraph and the list after it are quoted, in order, with
    # the list's introduction ending in a colon; the other section is not.
    assert text.index("säkerhetskedja") < text.index("Ring då 112") < text.index("planerare")
    assert "Kontakta sedan [1]:" in text and "- brukarens anhöriga [1]." in text
    assert "Nycklar hämtas" not in text


def test_a_passage_longer_than_the_budget_is_cut_to_the_best_sentences() -> None:
    filler = " ".join(f"Mening nummer {i} handlar om något helt annat än frågan." for i in
                      range(20))
    body = f"{filler} Säkerhetskedjan betyder att brukaren är hemma. Ring då 112. {filler}"
    text = extractive_answer(GenerationRequest("säkerhetskedjan sitter på insidan", "sv", [
        Source(1, "Rutin", body, "sv", "Rutin")]))
    assert "Ring då 112" in text and "Mening nummer 0 " not in text
    assert len(text.split()) < 60


def test_a_list_run_into_one_line_by_text_extraction_is_read_as_items() -> None:
    text = "Exempel på uppgifter som kan delegeras:\n\n• att ge insulin med penna, • att " \
           "ge ögondroppar, och • att sätta på läkemedelsplåster"
    spans, lists = spans_of(SourceText(1, text, "sv", "Delegering"), 0)
    items = [s.text for s in spans if s.kind == "item"]
    assert items == ["att ge insulin med penna", "att ge ögondroppar, och",
                     "att sätta på läkemedelsplåster"]
    assert len(lists) == 1


def test_the_reading_is_memoised_for_the_answerer() -> None:
    srcs = [SourceText(1, "Ring 112 vid akut sjukdom.", "sv")]
    assert read("när ringer jag 112", srcs, "sv") is read("när ringer jag 112", srcs, "sv")


def test_the_source_quoted_is_the_one_the_fitted_choice_finds_likeliest() -> None:
    model = _source_model()
    assert model is not None and set(model.features) == set(source_features(
        read("x", [SourceText(1, "x")]), [Source(1, "t", "x")])[0])
    q = "Hur lång är nattfastan?"
    srcs = [Source(1, "Hygien", "Tvätta händerna med tvål och vatten före måltiden.", "sv", "",
                   0.80),
            Source(2, "Nutrition", "Nattfastan bör inte vara längre än elva timmar.", "sv", "",
                   0.88)]
    # the second source is closer in retrieval and has the better span: it is quoted
    assert choose_source(read(q, source_texts(srcs), "sv"), srcs, "sv") == 1
    assert "elva timmar [2]" in extractive_answer(GenerationRequest(q, "sv", srcs))


def test_the_source_choice_keeps_the_questions_language_when_nearly_as_likely() -> None:
    text = "Nattfastan bör inte vara längre än elva timmar."
    srcs = [Source(1, "Nutrition", "The night fast should not exceed eleven hours.", "en", "",
                   0.86),
            Source(2, "Nutrition", text, "sv", "", 0.85)]
    assert choose_source(read("Hur lång är nattfastan?", source_texts(srcs), "sv"), srcs,
                         "sv") == 1



INSULIN_Q = "Jag missade att ge insulinet, vad gör jag?"
INSULIN = ("Om du har glömt att ge insulinet eller gett fel dos, kontakta sjuksköterskan "
           "omedelbart. Ge aldrig en extra dos på eget initiativ.",
           "Skriv en avvikelserapport samma dag när något har blivit fel med insulinet.",
           "Förvara insulinpennor som inte används i kylskåp.")


def _insulin(*relevance: float) -> list[Source]:
    return [Source(i + 1, "Insulin", text, "sv", f"Insulin > {i}", rel)
            for i, (text, rel) in enumerate(zip(INSULIN, relevance, strict=True))]


def test_an_unsure_source_choice_quotes_the_next_likeliest_passage_too() -> None:
    srcs = _insulin(0.88, 0.875, 0.80)
    probs = source_probabilities(read(INSULIN_Q, source_texts(srcs), "sv"), srcs)
    assert probs is not None and probs[1] >= SECOND_PASSAGE * max(probs) > probs[2]
    text = extractive_answer(GenerationRequest(INSULIN_Q, "sv", srcs))
    first, second = text.split("\n\n")  # two passages, the likeliest first
    assert "sjuksköterskan omedelbart [1]" in first and "extra dos" in first
    assert second == "Skriv en avvikelserapport samma dag när något har blivit fel med " \
                     "insulinet [2]."
    assert "kylskåp" not in text


def test_a_sure_source_choice_quotes_one_passage() -> None:
    srcs = _insulin(0.90, 0.70, 0.69)
    probs = source_probabilities(read(INSULIN_Q, source_texts(srcs), "sv"), srcs)
    assert probs is not None and max(probs[1:]) < SECOND_PASSAGE * probs[0]
    text = extractive_answer(GenerationRequest(INSULIN_Q, "sv", srcs))
    assert "\n\n" not in text and "[2]" not in text and "sjuksköterskan omedelbart [1]" in text


def test_a_second_passage_repeats_nothing_the_first_one_quoted() -> None:
    # two overlapping chunks of one section: the second adds only what the first lacks
    both = f"{INSULIN[0]} {INSULIN[1]}"
    srcs = [Source(1, "Insulin", both, "sv", "Insulin > Om något blir fel", 0.88),
            Source(2, "Insulin", INSULIN[1], "sv", "Insulin > Om något blir fel", 0.875)]
    probs = source_probabilities(read(INSULIN_Q, source_texts(srcs), "sv"), srcs)
    assert probs is not None and probs[1] >= SECOND_PASSAGE * probs[0]  # unsure
    text = extractive_answer(GenerationRequest(INSULIN_Q, "sv", srcs))
    assert text.count("avvikelserapport") == 1 and "[2]" not in text


def test_a_second_passage_is_not_the_first_one_in_the_other_language() -> None:
    q = "Var och när hålls Way Out West?"
    sv = ("Musikfestivalen Way Out West hålls i augusti i Slottsskogen, med svenska och "
          "internationella artister under tre dagar. Festivalen har bara serverat vegetarisk mat "
          "sedan 2012.")
    en = ("Way Out West is a music festival held over three days in August in the city park "
          "Slottsskogen. The festival has served only meat-free food since 2012.")
    srcs = [Source(1, "Festivaler", sv, "sv", "Festivaler", 0.88),
            Source(2, "Festivals", en, "en", "Festivals", 0.875)]
    probs = source_probabilities(read(q, source_texts(srcs), "sv"), srcs)
    assert probs is not None and probs[1] >= SECOND_PASSAGE * probs[0]  # unsure
    text = extractive_answer(GenerationRequest(q, "sv", srcs))
    assert "Slottsskogen" in text and "[2]" not in text and "festival held" not in text
    # a passage in the other language with facts of its own is not a restatement
    assert _restates(sv, en)
    assert not _restates(sv, "Kulturkalaset is a free city festival in August with stages on "
                             "Götaplatsen and Kungstorget.")


def test_a_restatement_is_judged_by_its_numbers_however_written_and_its_names() -> None:
    assert _restates("Öppet 08.00–16.00 i Nordstan [1].", "Open 8:00–16:00 in Nordstan [2].")
    assert _restates("Resan tar fyra timmar [1].", "The trip takes four hours [2].")
    # shared place names, but opening hours of its own: a fact, not a translation
    assert not _restates("Liseberg ligger vid Korsvägen [1].",
                         "Liseberg is open 11.00–23.00; the Korsvägen stop is close [2].")
    # a capitalised word that opens a sentence is not a name
    assert not _restates("Parken ägs av staden [1].", "The Park is owned by Lisebergs AB [2].")


QUOTED_STEPS = ["Om fel [1]:", "1. Ring sjuksköterskan [1].", "2. Skriv en avvikelse [1]."]


def _said(lines: list[str]) -> set[str]:
    return {_plain(c) for ln in lines for c in _CITED.findall(ln)}


def test_a_second_passage_keeps_only_sentences_not_quoted_and_its_lists_apart() -> None:
    said = _said(["Ring sjuksköterskan [1]. Skriv en avvikelse [1]."])
    # an overlapping chunk: the sentence it shares is not quoted twice
    assert _new_lines(["Skriv en avvikelse [2]. Följ upp [2]."], said) == ["Följ upp [2]."]
    # steps numbered otherwise are the same steps; the heading stays over the new ones, so
    # the two lists do not run into one
    said = _said(QUOTED_STEPS)
    assert _new_lines(["Om fel [2]:", "1. Ring sjuksköterskan [2].", "2. Dokumentera [2].",
                       "3. Följ upp [2]."], said) == [
        "Om fel [2]:", "2. Dokumentera [2].", "3. Följ upp [2]."]
    # everything quoted already, the heading too: nothing
    assert _new_lines(["Om fel [2]:", "1. Ring sjuksköterskan [2].",
                       "3. Skriv en avvikelse [2]."], said) == []
    # a heading left without its items goes
    assert _new_lines(["Förberedelser [2]:", "- Ta fram listan [2].", "Sedan [2]:",
                       "- Ring sjuksköterskan [2]."], said) == [
        "Förberedelser [2]:", "- Ta fram listan [2]."]
    # steps left without step 1 are still a list, one per line
    assert _join(["2. Dokumentera [2].", "3. Följ upp [2]."]) == \
        "2. Dokumentera [2].\n3. Följ upp [2]."

# -- the decision --------------------------------------------------------------------------


def _evidence(**kw: float) -> Evidence:
    base = {"span_sem": 0.85, "span_lex": 0.5, "span_type": 0.0, "span_score": 0.4,
            "top3_span_score": 0.35, "coverage": 0.5, "dense_top": 0.85, "dense_gap": 0.02,
            "bm25_top": 1.5, "agreement": 0.67, "same_lang": 1.0, "typed_q": 0.0,
            "strict_type": 0.5, "missing_rare": 0.5, "missing_content": 0.5}
    return Evidence(derive({**base, **kw}))


def test_decision_rises_with_what_the_best_span_means_and_falls_with_what_is_missing() -> None:
    model = load_model()

    def p(**kw: float) -> float:
        return policy.answerability(_evidence(**kw), model)

    # each on its own, the rest held (lexical overlap alone is no such evidence: near-misses
    # reuse the texts' own words, "Feskekôrka", "öppet", "lördagar", and ask what they lack)
    assert p(span_sem=0.80) < p(span_sem=0.90)
    assert p(missing_rare=0.9) < p(missing_rare=0.0)
    assert p(typed_q=1.0, strict_type=0.0) < p(typed_q=1.0, strict_type=1.0)
    assert p(agreement=0.33) < p(agreement=1.0)
    weak = p(span_sem=0.80, missing_rare=0.9, typed_q=1.0, strict_type=0.0, agreement=0.33)
    strong = p(span_sem=0.90, missing_rare=0.0, typed_q=1.0, strict_type=1.0, agreement=1.0)
    assert 0.0 <= weak < model.threshold < strong <= 1.0


def test_decision_refuses_below_the_threshold_and_answers_above() -> None:
    model = AnswerabilityModel(("span_score",), (0.0,), (1.0,), (10.0,), -5.0)
    assert policy.answerability_refusal(_evidence(span_score=0.2), 0.5, model) \
        == policy.NO_RELEVANT_SOURCES
    assert policy.answerability_refusal(_evidence(span_score=0.8), 0.5, model) is None
    # An operator moves the threshold: precision against answering more.
    assert policy.answerability_refusal(_evidence(span_score=0.8), 0.999, model) is not None


def test_fitted_coefficients_are_committed_with_their_threshold() -> None:
    model = load_model()
    assert len(model.features) == len(model.coef) == len(model.mean) == len(model.scale)
    assert 0.0 < model.threshold < 1.0


def test_an_english_question_over_a_swedish_routine_is_read_by_meaning(e5: Embedder) -> None:
    # An English question shares no words with a Swedish routine but "insulin": every span of
    # the first sources is read by meaning, not only the few that share the most words.
    text = ("## Före injektionen\n\nDesinfektera händerna. Kontrollera ordinationen: rätt "
            "brukare, rätt insulin, rätt dos och rätt tid.\n\n## Ge insulinet\n\nSätt på en "
            "ny nål. Ställ in ordinerad dos. Ge injektionen i underhudsfettet, oftast på magen "
            "eller låret. Håll kvar nålen i huden i tio sekunder. Lägg nålen i "
            "riskavfallsbehållaren. Desinfektera händerna igen. Signera direkt.")
    src = [SourceText(1, text, "sv", "Insulin med penna")]
    english = read("Where on the body do I inject the insulin with the pen?", src, "en", e5)
    assert len(english.spans) > SEM_CANDIDATES
    assert all(s.sem > 0 for s in english.spans)
    site = next(s for s in english.spans if "magen eller låret" in s.span.text)
    assert site.score > 0.4  # by meaning, though it shares no word with the question
    # a Swedish question over the same text: the lexically best few are read by meaning
    swedish = read("Var på kroppen ger jag insulinet med pennan?", src, "sv", e5)
    assert sum(s.sem > 0 for s in swedish.spans) == SEM_CANDIDATES
    # without an embedder there is no meaning to read: the shared words are all there is
    assert all(s.sem == 0 for s in read("Where do I inject the insulin?", src, "en").spans)


@pytest.mark.parametrize(("question", "text", "full"), [
    # two forms of one verb the stemmer leaves apart
    ("glömde insulinet", "Om du har glömt att ge insulinet, ring sjuksköterskan.", True),
    # words that only begin alike are different words
    ("kontakt", "Kontrollera pennan.", False),
    ("grannen", "Granska listan.", False),
])
def test_word_forms_the_stemmer_leaves_apart_still_match(question: str, text: str,
                                                         full: bool) -> None:
    have = stem_set(text, _decompounder())
    assert (coverage(question, have, "sv") == 1.0) is full
