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

_DIGIT_RUN = re.compile(r"(?<![\w])(?:\d[\s.\-+]?){9,13}\d(?![\w])")
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_STREET_SUFFIX = (
    r"(?:gatan|vägen|gränd|gången|backen|torget|platsen|allén|leden|stigen|liden|höjden|"
    r"plan|väg|gata|street|road|avenue)"
)
_ADDRESS = re.compile(
    rf"\b[A-ZÅÄÖ][\wåäöé]*{_STREET_SUFFIX}\s+\d{{1,4}}\s?[A-Za-z]?\b"
    rf"(?:[^\n\d]{{0,20}}\d{{3}}\s?\d{{2}})?"
    r"|\b\d{3}\s?\d{2}\s+(?:Göteborg|Västra Frölunda|Angered|Askim|Hisings [A-ZÅÄÖ]\w+|"
    r"Torslanda|Mölndal|Partille|Kungälv|Stockholm|Malmö)\b"
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
    hemtjänst genomförandeplan biståndsbeslut vårdplan journal omvårdnad palliativ
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
_NAME = re.compile(r"\b[A-ZÅÄÖ][a-zåäöéü]+(?:[- ][A-ZÅÄÖ][a-zåäöéü]+)+\b")
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


def find_ids(text: str) -> list[Finding]:
    out = []
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
        if names:
            self._client_re = re.compile(
                r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b", flags=re.I
            )

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

    def _persons(self, text: str) -> bool:
        toks = _tokens(text)
        if _RELATIONS & set(toks):
            return True
        for m in _NAME.finditer(text):
            parts = m.group(0).lower().split()
            if not any(p in self.public_terms for p in parts):
                return True
        # a single capitalised word not at a sentence start and not a public term
        for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b([A-ZÅÄÖ][a-zåäöé]{2,})\b", text):
            if m.group(1).lower() not in self.public_terms and m.start() > 0:
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
                    findings += [
                        Finding("client_name", m.start(), m.end())
                        for m in self._client_re.finditer(text)
                    ]
        toks = set(_tokens(text))
        if toks & HEALTH_TERMS and self._persons(text):
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
