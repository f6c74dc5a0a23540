"""Sensitivity classification and the routing policy: pure functions, no I/O (STYLE 2).

``classify`` looks at the question, the conversation so far, the corpora of the retrieved chunks
and the caller's role, and returns a level (public < internal < sensitive) with the reasons: the
names of the rules that fired, never the matched values. ``route`` picks the preferred provider
that is cleared for that level and available, or none.

Personal data detected locally:
- personnummer and samordningsnummer: 10 or 12 digits, with '-', '+' or nothing (also spaced out
  or dotted), valid date and Luhn check (the ``personnummer`` package);
- Swedish phone numbers (``phonenumbers``), e-mail addresses, street addresses with postcodes;
- names of clients that occur in sensitive corpora;
- a person (a name, a relation such as "min mamma", a client) together with a health or care term.
Any personal data makes a request ``sensitive``: it stays on the city's machines.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers
from personnummer import personnummer as pnr

from ingest.manifest import Sensitivity

# --- personal data detection -------------------------------------------------------------------

_DIGIT_RUN = re.compile(r"(?<!\d)(?:\d[\s.\-+–]?){9,13}\d(?!\d)")
_EMAIL = re.compile(
    r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
    r"|\b[\w.+-]+\s*(?:\(at\)|\[at\]|\sat\s|\ssnabel-a\s)\s*[\w-]+\s*(?:\.|\sdot\s|\spunkt\s)\s*[a-z]{2,}\b",
    flags=re.I,
)
_STREET_SUFFIX = (
    r"(?:gatan|vägen|gränd|gången|backen|torget|platsen|allén|leden|stigen|liden|höjden|"
    r"plan|väg|gata|street|road|avenue)"
)
_ADDRESS = re.compile(
    rf"\b[A-ZÅÄÖ][\wåäöé]*{_STREET_SUFFIX}\s+\d{{1,4}}\s?[A-Za-z]?\b"
    rf"(?:[^\n\d]{{0,20}}\d{{3}}\s?\d{{2}})?"
    # any "Name 9, 436 50 Place": a street number followed by a postcode and a town
    r"|\b[A-ZÅÄÖ][\wåäöé]+(?:\s[A-ZÅÄÖ]?[\wåäöé]+)?\s\d{1,4}\s?[A-Za-z]?,?\s+\d{3}\s?\d{2}\s+[A-ZÅÄÖ]"
)
_BASE64 = re.compile(r"\b[A-Za-z0-9+/]{16,}={0,2}")

HEALTH_TERMS = frozenset(
    """
    diabetes insulin demens alzheimer alzheimers parkinson stroke cancer kol astma epilepsi
    depression ångest schizofreni bipolär hjärtsvikt förmaksflimmer högt blodtryck blodtryck
    diagnos diagnoser sjukdom sjuk sjukdomar medicin mediciner läkemedel tablett tabletter dos
    doser waran metformin lantus novorapid alvedon furix donepezil morfin oxycodone
    sertralin levaxin trombyl omeprazol kateter stomi sår trycksår inkontinens blöja
    undernäring dysfagi fall fallrisk frakturer fraktur höftfraktur amputation dialys syrgas
    psykos missbruk alkoholism beroende hiv hepatit covid smitta vinterkräksjuka
    adhd autism ms als allergi gravid graviditet infarkt hjärtinfarkt inlagd sjukhus höften
    brutit plåster stomipåsen norspan demensdiagnos cancerbesked druckit alkoholberoende
    rullstol hörapparat syn blind döv kemoterapi cellgifter strålning operation opererad
    wheelchair pregnant allergy surgery hospital hospitalised diagnosed hiv aids
    artros reumatism osteoporos benskörhet hjärtsjukdom njursvikt lungsjukdom diabetiker
    epilepsy arthritis osteoporosis asthma copd heart kidney seizure seizures disability
    ms-sjuk
    genomförandeplan vårdplan journal palliativ
    cognitive dementia medication medicine insulin diagnosis disease illness tablets dose
    catheter wound pressure incontinence malnutrition fracture dialysis oxygen addiction
    """.split()
)
_RELATIONS = frozenset(
    """
    mamma pappa mor far mormor morfar farmor farfar make maka fru sambo dotter son barn
    bror syster granne grannen brukare brukaren brukarens patient patienten patientens
    vårdtagare vårdtagaren kund kunden klient klienten hon han hennes hans
    mother father mom dad wife husband partner daughter son neighbour neighbor client patient
    she he her his grandmother grandfather
    """.split()
)
# Eponymous diseases are not persons ("Parkinsons sjukdom").
_EPONYMS = frozenset("parkinsons parkinson alzheimers alzheimer crohns aspergers downs".split())
_HEALTH_PARTS = tuple(sorted((t for t in HEALTH_TERMS if len(t) >= 5), key=len, reverse=True))
_NAME = re.compile(r"\b[A-ZÅÄÖČĆŠŽ][^\W\d_A-Z]+(?:[- ][A-ZÅÄÖČĆŠŽ][^\W\d_A-Z]+)+\b")
_WORD = re.compile(r"[^\W_]+", flags=re.UNICODE)


@dataclass(frozen=True)
class Finding:
    kind: str  # personnummer, samordningsnummer, phone, email, address, client_name, person_health
    start: int
    end: int


def _valid_id(digits: str) -> str | None:
    """'personnummer' or 'samordningsnummer' when the digits form a valid one."""
    if len(digits) not in (10, 12):
        return None
    try:
        if not pnr.valid(digits):
            return None
    except Exception:  # the library raises on malformed input
        return None
    day = int(digits[-6:-4])
    return "samordningsnummer" if day > 60 else "personnummer"


_ID_WORDS = re.compile(r"person\s*(?:nummer|nr)|pnr|samordningsnummer|personal\s+identity|"
                       r"social\s+security|id[- ]?nummer", re.I)


def find_ids(text: str) -> list[Finding]:
    out = []
    if _ID_WORDS.search(text):
        # "first part 193805, then 14, last 2449": when the text is about an id, the digits
        # of the whole text are joined and searched too.
        digits = "".join(re.findall(r"\d", text))
        for size in (12, 10):
            for i in range(0, max(0, len(digits) - size) + 1):
                kind = _valid_id(digits[i : i + size])
                if kind:
                    out.append(Finding(kind, 0, len(text)))
                    break
            if out:
                break
    for m in _DIGIT_RUN.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        kind = _valid_id(digits)
        if kind is None and len(digits) in (11, 13):
            # "19380514 2449" glued to a neighbouring digit: try both 10/12-digit windows
            for cand in (digits[:-1], digits[1:]):
                kind = kind or _valid_id(cand)
        if kind:
            out.append(Finding(kind, m.start(), m.end()))
    return out


def find_phones(text: str) -> list[Finding]:
    out = []
    for m in phonenumbers.PhoneNumberMatcher(text, "SE", leniency=phonenumbers.Leniency.VALID):
        digits = re.sub(r"\D", "", m.raw_string)
        if _valid_id(digits):  # a personnummer is reported as such, not as a phone
            continue
        out.append(Finding("phone", m.start, m.end))
    return out


def _health_word(w: str) -> bool:
    return (
        w in HEALTH_TERMS
        or _health_stem(w)
        or (len(w) > 5 and any(p in w for p in _HEALTH_PARTS))
    )


@lru_cache(maxsize=1)
def _health_stems() -> frozenset[str]:
    import Stemmer

    st = Stemmer.Stemmer("swedish")
    return frozenset(st.stemWord(t) for t in HEALTH_TERMS if len(t) >= 3)


def _health_stem(w: str) -> bool:
    import Stemmer

    return bool(Stemmer.Stemmer("swedish").stemWord(w) in _health_stems())


@lru_cache(maxsize=50_000)
def _common_word(w: str) -> bool:
    """A word frequent in Swedish or English text (so not a first name)."""
    from wordfreq import zipf_frequency

    return max(zipf_frequency(w, "sv"), zipf_frequency(w, "en")) >= 4.2


def _fold(text: str) -> str:
    import unicodedata

    return "".join(
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)
    )


def _tokens(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


@dataclass
class Detector:
    """Personal-data detector; ``client_names`` are the people of the sensitive corpora and
    ``public_terms`` the capitalised words of public corpora (places, sights), never persons."""

    client_names: frozenset[str] = frozenset()
    public_terms: frozenset[str] = frozenset()
    _client_re: re.Pattern[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        names = sorted((n for n in self.client_names if len(n) > 3), key=len, reverse=True)
        alts: list[str] = []
        for n in names:
            parts = [re.escape(_fold(p)) for p in re.split(r"[- ]+", n) if p]
            if len(parts) < 2:
                continue
            first, last = parts[:-1], parts[-1]
            alts.append(r"[- ]?".join(first) + r"[- ]+" + last + r"s?")  # Lars-Erik Johanssons
            alts.append(last + r",\s*" + r"[- ]?".join(first))  # Kowalska, Jadwiga
            alts.append(first[0][0] + r"\.\s*" + last)  # D. Petrović
        if alts:
            self._client_re = re.compile(r"\b(?:" + "|".join(alts) + r")\b", flags=re.I)

    def _decoded_variants(self, text: str) -> list[str]:
        """Base64 chunks decoded, so an encoded personnummer is seen too."""
        out = []
        for m in _BASE64.finditer(text):
            tok = m.group(0)
            try:
                dec = base64.b64decode(tok + "=" * (-len(tok) % 4), validate=True)
                s = dec.decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if s.isprintable():
                out.append(s)
        return out

    def _not_a_person(self, word: str) -> bool:
        w = word.lower()
        return (w in self.public_terms or w in _EPONYMS or w in HEALTH_TERMS
                or _health_word(w) or _common_word(w))

    def _persons(self, text: str) -> bool:
        toks = _tokens(text)
        if _RELATIONS & set(toks):
            return True
        # The writer about their own health: "jag har diabetes", "I take insulin".
        if re.search(r"\bI(?:'m|'ve| am| have| take| need| use| suffer)\b", text) or re.search(
            r"\b(?:jag|vi)\s+(?:har|tar|lider|fick|behöver|äter|använder)\b", text, flags=re.I
        ):
            return True
        for m in _NAME.finditer(text):
            parts = [p.lower() for p in re.split(r"[- ]", m.group(0))]
            # Two capitalised words: a name unless they are a place, a sight or a medicine.
            if not any(p in self.public_terms or p in _EPONYMS or _health_word(p) for p in parts):
                return True
        # a single capitalised word that is not a common word, a place or a medicine
        for m in re.finditer(r"\b([A-ZÅÄÖ][a-zåäöé]{2,})\b", text):
            if not self._not_a_person(m.group(1)):
                return True
        return False

    def find(self, text: str) -> list[Finding]:
        findings: list[Finding] = []
        for variant in [text, *self._decoded_variants(text)]:
            findings += find_ids(variant)
            if variant is text:
                findings += find_phones(text)
                findings += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(text)]
                findings += [
                    Finding("address", m.start(), m.end()) for m in _ADDRESS.finditer(text)
                ]
                if self._client_re is not None:
                    # folding keeps offsets: NFKD only drops combining marks after letters
                    folded = _fold(text)
                    if len(folded) == len(text):
                        findings += [Finding("client_name", m.start(), m.end())
                                     for m in self._client_re.finditer(folded)]
                    elif self._client_re.search(folded):
                        findings.append(Finding("client_name", 0, len(text)))
        toks = set(_tokens(text))
        if any(_health_word(t) for t in toks) and self._persons(text):
            findings.append(Finding("person_health", 0, 0))
        return findings

    def kinds(self, text: str) -> set[str]:
        return {f.kind for f in self.find(text)}

    def redact(self, text: str) -> str:
        """Replace detected values with placeholders (for the audit log and the cloud)."""
        spans = sorted(
            (f for f in self.find(text) if f.end > f.start), key=lambda f: (f.start, -f.end)
        )
        out, pos = [], 0
        for f in spans:
            if f.start < pos:
                continue
            out.append(text[pos : f.start])
            out.append(f"[{f.kind.upper()}]")
            pos = f.end
        out.append(text[pos:])
        return "".join(out)


# --- classification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Classification:
    level: Sensitivity
    reasons: tuple[str, ...]


def classify(
    question: str,
    history: Sequence[str],
    chunk_sensitivities: Iterable[tuple[str, str]],
    role: str,
    detector: Detector,
    floor: Sensitivity = Sensitivity.public,
) -> Classification:
    """The request's level and why. ``chunk_sensitivities`` are (corpus, sensitivity) pairs of
    the retrieved chunks; ``history`` holds the earlier turns (which can only raise the level);
    ``floor`` is a level already reached in this conversation."""
    level = floor
    reasons: list[str] = [] if floor is Sensitivity.public else [f"conversation:{floor.value}"]

    def raise_to(lvl: Sensitivity, reason: str) -> None:
        nonlocal level
        if lvl.rank > level.rank:
            level = lvl
        if reason not in reasons:
            reasons.append(reason)

    for kind in sorted(detector.kinds(question)):
        raise_to(Sensitivity.sensitive, f"pii:{kind}")
    for turn in history:
        for kind in sorted(detector.kinds(turn)):
            raise_to(Sensitivity.sensitive, f"history:{kind}")
    for corpus, sens in sorted(set(chunk_sensitivities)):
        try:
            lvl = Sensitivity(sens)
        except ValueError:
            lvl = Sensitivity.sensitive  # an unknown label is treated as the most sensitive
        if lvl is not Sensitivity.public:
            raise_to(lvl, f"corpus:{corpus}")
    if role == "care" and level is Sensitivity.public and detector.kinds(question):
        raise_to(Sensitivity.sensitive, "role:care")
    return Classification(level, tuple(reasons))


# --- routing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderOption:
    name: str
    clearance: Sensitivity
    available: bool


@dataclass(frozen=True)
class RouteDecision:
    provider: str | None
    reason: str  # "cleared", or "no_cleared_provider"
    considered: tuple[str, ...] = ()


def route(
    level: Sensitivity, options: Sequence[ProviderOption], preference: Sequence[str]
) -> RouteDecision:
    """The first provider in preference order that is cleared for ``level`` and available.
    Never falls back to a less-cleared one; none cleared and up means a refusal."""
    order = {n: i for i, n in enumerate(preference)}
    ranked = sorted(options, key=lambda o: (order.get(o.name, len(order)), o.name))
    considered = []
    for opt in ranked:
        if opt.clearance.rank < level.rank:
            continue
        considered.append(opt.name)
        if opt.available:
            return RouteDecision(opt.name, "cleared", tuple(considered))
    return RouteDecision(None, "no_cleared_provider", tuple(considered))


@lru_cache(maxsize=1)
def empty_detector() -> Detector:
    return Detector()
