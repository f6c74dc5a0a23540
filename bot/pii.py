"""Personal-data detection and redaction: pure functions, no I/O at request time (STYLE 2).

Every detector reads one canonical view of the text (``normalise``): Unicode NFKC, every digit
script as ASCII digits, dash, space and zero-width variants unified, percent-encoding decoded,
JSON/CSV/URL punctuation flattened to spaces and runs of number words ("åtta fem noll", "forty-eight
oh two") turned into digits. The original text is kept only for redaction offsets.

Personal data (the request is ``sensitive``):
- personnummer and samordningsnummer: digit groups that together form 10 or 12 digits with a valid
  date and Luhn digit (the ``personnummer`` package), also from parts (a date of birth in any common
  written form plus four digits elsewhere in the conversation);
- phone numbers (``phonenumbers``), e-mail addresses, street addresses (any case);
- clients of the sensitive corpora, also misspelt, nicknamed, as initials + surname, surname +
  initial, or a first name with a client's street (``rapidfuzz``);
- a person (a name, a relative, a pronoun, the writer) together with a health or care term, and a
  date of birth with a name or a health term; the vocabularies, in the city's languages, are data
  in ``bot/lexicon/``.

Doubt means local (the request is at least ``internal``, which no cloud provider is cleared for):
text in a script the vocabularies do not cover, any run of six or more digits, a client's street,
a date of birth, an introduced name, a person said to have something rare that the city's public
texts never mention ("vår dotter har <a diagnosis the health list lacks>").
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import phonenumbers
from personnummer import personnummer as pnr
from rapidfuzz import fuzz, process

LEXICON = Path(__file__).with_name("lexicon")

# A word this rare (Zipf frequency in the language of the verb before it) after "has" reads as
# a possible diagnosis; common things people have (a car, a question, a dog) are far above it.
RARE_ZIPF = 3.0
_WORDFREQ = {"bs": "sh"}  # wordfreq's name for Bosnian/Croatian/Serbian
# "jag har", "we have", "vi lider av": the writer, right before the verb
_FIRST_PERSON = re.compile(r"(?<!\w)(?:jag|vi|i|we|ich|wir|yo|ja|my)\s*$")
_LETTERS = re.compile(r"[^\W\d_]+")
# Kinds that only raise a request to ``internal`` (doubt); every other kind is personal data.
DOUBT_KINDS = frozenset({"script", "digits", "client_street", "dob", "name", "place",
                         "condition"})


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int  # offsets in the canonical view; 0, 0 when the finding has no span
    end: int


# --- the canonical view ------------------------------------------------------------------------

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"))
_DASHES = dict.fromkeys(
    map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-"
)
_SPACES = dict.fromkeys(map(ord, "\t\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                                 "\u2007\u2008\u2009\u200a\u202f\u205f\u3000"), " ")
# JSON, CSV, URL and markup punctuation: a value inside them is read like a value in prose.
_FLATTEN = dict.fromkeys(map(ord, "{}[]\"'`;|/\\_:=&?#<>*~^"), " ")
_ARABIC_SEPARATORS = {ord("\u066b"): ".", ord("\u066c"): ","}


@lru_cache(maxsize=1)
def _translation() -> dict[int, str | None]:
    table: dict[int, str | None] = {}
    for cp in range(0x80, 0x20000):
        c = chr(cp)
        if unicodedata.category(c) == "Nd":
            table[cp] = str(unicodedata.digit(c))
    for part in (_ZERO_WIDTH, _DASHES, _SPACES, _ARABIC_SEPARATORS):
        table.update(part)
    return table


_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")


def _decode_percent(text: str) -> str:
    for _ in range(2):  # doubly encoded values too
        if not _PERCENT.search(text):
            break
        text = unquote(text)
    return text


# Three or more letters spaced out one by one with the same mark ("G u n n e l", "G.u.n.n.e.l",
# "g-u-n-n-e-l"): a word written so that detectors miss it. Two spaces end the word.
_SPACED = re.compile(r"(?<![^\W\d_])[^\W\d_](?P<sep>[ .\-_*·/|+~])[^\W\d_](?:(?P=sep)[^\W\d_])+"
                     r"(?![^\W\d_])(?!(?P=sep)[^\W\d_])")


def _unspace(text: str) -> str:
    return _SPACED.sub(lambda m: m.group(0).replace(m.group("sep"), ""), text)


def normalise(text: str) -> str:
    """The canonical view every detector reads (see the module docstring)."""
    t = unicodedata.normalize("NFKC", _decode_percent(text)).translate(_translation())
    t = _unspace(t)
    t = t.translate(_FLATTEN)
    t = _numbers().digits(t)
    return re.sub(r"[ ]{2,}", " ", t)


_FOLD_LETTERS = str.maketrans({"ı": "i", "ł": "l", "đ": "d", "ø": "o", "æ": "ae", "ـ": None,
                               "ي": "ی", "ى": "ی", "ك": "ک", "ۀ": "ه"})


def fold(text: str) -> str:
    """Lower case without accents (and one spelling of Arabic-script letters), for vocabularies."""
    t = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in t if not unicodedata.combining(c)).translate(_FOLD_LETTERS)


# --- vocabularies (bot/lexicon/*.toml) ---------------------------------------------------------


def _latin(word: str) -> bool:
    return all(not c.isalpha() or "LATIN" in unicodedata.name(c, "") for c in word)


def _entry_pattern(entry: str, compounds: bool = False) -> str:
    """A vocabulary entry as a regex over folded text: ``stem*`` is a prefix; an entry of three
    letters or more in another script also matches inside a word (clitics attach to words). With
    ``compounds``, a one-word Latin entry of six letters or more also matches as the last part of
    a compound ("panikångest", "nötallergi", "Brustkrebs"): Germanic and Finnic compounds put
    the head word last."""
    e = fold(entry.strip())
    prefix = e.endswith("*")
    e = e.rstrip("*")
    body = r"\s+".join(re.escape(w) for w in e.split())
    if not _latin(e) and len(e.replace(" ", "")) >= 4:
        return body
    start = r"(?<!\w)\w*" if compounds and " " not in e and len(e) >= 6 else r"(?<!\w)"
    return start + body + (r"\w*" if prefix else r"(?!\w)")


def _compile(entries: Iterable[str], compounds: bool = False) -> re.Pattern[str]:
    alts = sorted({_entry_pattern(e, compounds) for e in entries if e.strip()},
                  key=len, reverse=True)
    return re.compile("|".join(alts) or r"(?!x)x")


@dataclass(frozen=True)
class Lexicon:
    health: re.Pattern[str]
    relations: re.Pattern[str]
    self_ref: re.Pattern[str]
    name_intro: re.Pattern[str]
    id_words: re.Pattern[str]
    birth: re.Pattern[str]
    last_four: re.Pattern[str]
    months: re.Pattern[str]
    month_of: tuple[tuple[str, int], ...]  # (folded stem, month)
    # (language, strong, pattern): "has" (strong=False: the word after must be rare) or
    # "suffers from" (strong=True), followed by the next words
    condition: tuple[tuple[str, bool, re.Pattern[str]], ...] = ()


def _load(name: str) -> dict[str, dict[str, list[str]]]:
    with (LEXICON / f"{name}.toml").open("rb") as f:
        return tomllib.load(f)


@lru_cache(maxsize=1)
def covered_languages() -> frozenset[str]:
    """The languages the person and health vocabularies are written for: in any other, a name
    or a diagnosis can pass unseen."""
    return frozenset(_load("health")) & frozenset(_load("persons"))


def _all(data: dict[str, dict[str, list[str]]], key: str) -> list[str]:
    return [w for lang in data.values() for w in lang.get(key, [])]


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    health, persons, ids = _load("health"), _load("persons"), _load("ids")
    months: dict[str, list[str]] = _load("months")  # type: ignore[assignment]
    month_of = tuple(sorted(((fold(s), int(m)) for m, stems in months.items() for s in stems),
                            key=lambda x: -len(x[0])))
    month_alts = [re.escape(s) + (r"[^\W\d_]*" if _latin(s) else r"(?!\w)") for s, _ in month_of]
    return Lexicon(
        health=_compile(_all(health, "terms"), compounds=True),
        relations=_compile(_all(persons, "relations")),
        self_ref=_compile(_all(persons, "self")),
        name_intro=_compile(_all(persons, "name_intro")),
        id_words=_compile(_all(ids, "id")),
        birth=_compile(_all(ids, "birth")),
        last_four=_compile(_all(ids, "last_four")),
        months=re.compile(r"(?<!\w)(?:" + "|".join(month_alts) + ")"),
        month_of=month_of,
        condition=tuple(
            (lang, strong, re.compile(r"(?:" + _compile(words[key]).pattern
                                      + r")((?:\s+[^\W\d_]+){1,3})"))
            for lang, words in persons.items()
            for key, strong in (("condition", False), ("suffers", True)) if words.get(key)),
    )


def months_named(word: str) -> set[int]:
    w = fold(word)
    return {m for stem, m in lexicon().month_of if w.startswith(stem)}


# --- number words ------------------------------------------------------------------------------

_WORDISH = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


@dataclass(frozen=True)
class NumberWords:
    values: dict[str, int]  # folded word -> value
    tens: frozenset[str]
    units: frozenset[str]

    def value(self, word: str) -> int | None:
        w = fold(word)
        if w in self.values:
            return self.values[w]
        # "fyrtioåtta", "neljäkymmentäkahdeksan": a tens word glued to a unit
        for t in self.tens:
            if w.startswith(t) and w[len(t):] in self.units:
                return self.values[t] + self.values[w[len(t):]]
        if "und" in w:  # German "achtundvierzig"
            u, _, t = w.partition("und")
            if u in self.units and t in self.tens:
                return self.values[t] + self.values[u]
        return None

    def segment(self, word: str) -> list[int] | None:
        """A long word of glued number words ("femtvåettettnoll") as their values."""
        w = fold(word)
        if len(w) < 8:
            return None
        best: list[list[int] | None] = [[]] + [None] * len(w)
        for end in range(1, len(w) + 1):
            for start in range(max(0, end - 12), end):
                head, v = best[start], self.values.get(w[start:end])
                if head is not None and v is not None and best[end] is None:
                    best[end] = [*head, v]
        out = best[-1]
        return out if out is not None and len(out) >= 3 else None

    def _words(self, token: str) -> list[int] | None:
        """Values of a token ("thirty-eight" is one word in two parts), or None."""
        out = []
        for part in token.split("-"):
            v = self.value(part)
            if v is None:
                return self.segment(token)
            out.append(v)
        return out

    def digits(self, text: str) -> str:
        """Runs of two or more number words as digit groups ("åtta fem noll" -> "8 5 0")."""
        tokens = list(_WORDISH.finditer(text))
        if not tokens:
            return text
        values = [self._words(m.group(0)) for m in tokens]
        out, pos, i = [], 0, 0
        while i < len(tokens):
            j = i
            while (j + 1 < len(tokens) and values[j] is not None and values[j + 1] is not None
                   and re.fullmatch(r"[\s,.\-]*", text[tokens[j].end():tokens[j + 1].start()])):
                j += 1
            if values[i] is not None and (j > i or len(values[i] or []) > 1):
                flat = [v for k in range(i, j + 1) for v in (values[k] or [])]
                out += [text[pos:tokens[i].start()], " ".join(_merge_tens(flat))]
                pos = tokens[j].end()
            i = j + 1
        out.append(text[pos:])
        return "".join(out)


def _merge_tens(values: Sequence[int]) -> list[str]:
    """[40, 8, 0] -> ["48", "0"]: a tens word from twenty up followed by a unit is one number."""
    out: list[str] = []
    i = 0
    while i < len(values):
        v = values[i]
        if v >= 20 and v % 10 == 0 and i + 1 < len(values) and 1 <= values[i + 1] <= 9:
            v += values[i + 1]
            i += 1
        out.append(str(v))
        i += 1
    return out


@lru_cache(maxsize=4)
def number_words(langs: tuple[str, ...] = ("sv", "en")) -> frozenset[str]:
    """The number words of some languages ("elva", "twelve", "en"), folded."""
    data = _load("numbers")
    out: set[str] = set()
    for lang in langs:
        part: dict[str, Any] = data.get(lang, {})
        for key in ("units", "teens", "tens"):
            out.update(fold(w) for w in part.get(key, []) if " " not in w)
        out.update(fold(w) for w in part.get("more", {}))
    return frozenset(out)


@lru_cache(maxsize=1)
def _numbers() -> NumberWords:
    data = _load("numbers")
    values: dict[str, int] = {}
    tens: set[str] = set()
    units: set[str] = set()
    for lang in data.values():
        for i, w in enumerate(lang.get("units", [])):
            values.setdefault(fold(w), i)
            if i:
                units.add(fold(w))
        for i, w in enumerate(lang.get("teens", [])):
            if " " not in w:
                values.setdefault(fold(w), 10 + i)
        for i, w in enumerate(lang.get("tens", [])):
            values.setdefault(fold(w), 20 + 10 * i)
            tens.add(fold(w))
        more: dict[str, object] = lang.get("more", {})  # type: ignore[assignment]
        for w, v in more.items():
            values.setdefault(fold(w), int(str(v)))
    return NumberWords(values, frozenset(tens), frozenset(units))


# --- ids: personnummer from digit groups, dates of birth ---------------------------------------


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


_GROUP = re.compile(r"\d+")
_CHAIN_GAP = re.compile(r"[ .\-+]{1,3}")


def digit_chains(text: str) -> list[list[re.Match[str]]]:
    """Digit groups that follow each other with only spaces, dots, dashes or plus between."""
    chains: list[list[re.Match[str]]] = []
    for m in _GROUP.finditer(text):
        if chains and _CHAIN_GAP.fullmatch(text[chains[-1][-1].end():m.start()]):
            chains[-1].append(m)
        else:
            chains.append([m])
    return chains


def _id_in_groups(groups: Sequence[str]) -> str | None:
    """A valid id made of whole consecutive groups (or one group with a stray digit glued on)."""
    for i in range(len(groups)):
        joined = ""
        for g in groups[i:]:
            joined += g
            if len(joined) > 13:
                break
            kind = _valid_id(joined)
            if kind is None and len(joined) in (11, 13):
                kind = _valid_id(joined[:-1]) or _valid_id(joined[1:])
            if kind:
                return kind
    return None


def find_ids(text: str, about_ids: bool = False) -> list[Finding]:
    """Ids in the canonical view; ``about_ids``: the text is about an id, so all its digit groups
    are read as one chain ("first part 193805, then 14, last 2449")."""
    out = []
    for chain in digit_chains(text):
        kind = _id_in_groups([m.group(0) for m in chain])
        if kind:
            out.append(Finding(kind, chain[0].start(), chain[-1].end()))
    if about_ids and not out:
        kind = _id_in_groups(_GROUP.findall(text))
        if kind:
            out.append(Finding(kind, 0, len(text)))
    return out


_YEAR = r"(19\d\d|20[0-3]\d)"
_DAY = r"(0?[1-9]|[12]\d|3[01])"


@lru_cache(maxsize=1)
def _date_patterns() -> tuple[re.Pattern[str], ...]:
    month = lexicon().months.pattern
    return (
        re.compile(rf"(?<!\d){_YEAR}[-. ]?(0[1-9]|1[0-2])[-. ]?(0[1-9]|[12]\d|3[01])(?!\d)"),
        re.compile(rf"(?<!\d){_DAY}[-. ]{{1,3}}(0?[1-9]|1[0-2])[-. ]{{1,3}}{_YEAR}(?!\d)"),
        re.compile(rf"(?<!\d){_DAY}\s?(?:st|nd|rd|th|e|a)?\.?\s*(?:de |den |d |of |the )*({month})"
                   rf"\.?[^\d]{{0,24}}?{_YEAR}(?!\d)"),
        re.compile(rf"({month})\.?\s+(?:the )?{_DAY}(?:st|nd|rd|th)?[^\d]{{0,12}}?{_YEAR}(?!\d)"),
    )


def _ymd(kind: int, groups: tuple[str, ...]) -> list[tuple[int, int, int]]:
    if kind == 0:
        return [(int(groups[0]), int(groups[1]), int(groups[2]))]
    if kind == 1:
        d, m, y = int(groups[0]), int(groups[1]), int(groups[2])
        return [(y, m, d), (y, d, m)]  # day first; the US order too
    if kind == 2:
        return [(int(groups[2]), m, int(groups[0])) for m in months_named(groups[1])]
    return [(int(groups[2]), m, int(groups[1])) for m in months_named(groups[0])]


def find_dates(folded: str) -> list[tuple[str, int, int]]:
    """Past dates (YYYYMMDD, start, end) in any common written form, in folded canonical text."""
    out = []
    today = dt.date.today()
    for kind, pat in enumerate(_date_patterns()):
        for m in pat.finditer(folded):
            for y, mo, d in _ymd(kind, m.groups()):
                try:
                    day = dt.date(y, mo, d)
                except ValueError:
                    continue
                if day <= today:
                    out.append((day.strftime("%Y%m%d"), m.start(), m.end()))
    return out


def _id_from_parts(folded: str, dates: list[tuple[str, int, int]]) -> str | None:
    """A birth date and four digits elsewhere that together form a valid id."""
    spans = [(s, e) for _, s, e in dates]
    fours = [m.group(0) for m in re.finditer(r"(?<!\d)\d{4}(?!\d)", folded)
             if not any(s <= m.start() < e for s, e in spans)]
    for ymd, _, _ in dates:
        for four in fours:
            kind = _valid_id(ymd[2:] + four) or _valid_id(ymd + four)
            if kind:
                return kind
    return None


# --- phones, e-mail, addresses -----------------------------------------------------------------

_EMAIL = re.compile(
    r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"
    r"|\b[\w.+-]+\s*(?:\(at\)|\[at\]|\sat\s|\ssnabel-a\s)\s*[\w-]+\s*(?:\.|\sdot\s|\spunkt\s)\s*[a-z]{2,}\b",
    flags=re.I,
)
_STREET_SUFFIX = (
    r"(?:gatan|vägen|gränd|gången|backen|torget|platsen|allén|leden|stigen|liden|höjden|draget|"
    r"plan|väg|gata|street|road|avenue|straße|strasse)"
)
_STREET = re.compile(rf"\b[^\W\d_]*{_STREET_SUFFIX}\b", flags=re.I)
# The tokens of a view are folded ("rönnbärsgången" -> "ronnbarsgangen"): the suffixes too.
_FOLDED_STREET_END = re.compile(
    "(?:" + "|".join(unicodedata.normalize("NFKD", x).encode("ascii", "ignore").decode()
                     for x in _STREET_SUFFIX[3:-1].split("|")) + ")$"
)
_ADDRESS = re.compile(
    rf"\b[^\W\d_]*{_STREET_SUFFIX}\s+\d{{1,4}}\s?[A-Za-z]?\b(?:[^\n\d]{{0,20}}\d{{3}}\s?\d{{2}})?"
    # any "Name 9, 436 50 Place": a street number followed by a postcode and a town
    r"|\b[A-ZÅÄÖ][\wåäöé]+(?:\s[A-ZÅÄÖ]?[\wåäöé]+)?\s\d{1,4}\s?[A-Za-z]?,?\s+\d{3}\s?\d{2}\s+[A-ZÅÄÖ]",
    flags=re.I,
)
# Service numbers (020, 0771, 0900 ...) belong to organisations, never to a person.
_SERVICE_NUMBER = re.compile(r"^(?:20|77|90|939|944)")


def _national(raw: str) -> str | None:
    try:
        n = phonenumbers.parse(raw, "SE")
    except phonenumbers.NumberParseException:
        return None
    return str(n.national_number)


def find_phones(text: str, public: frozenset[str] = frozenset()) -> list[Finding]:
    out = []
    for m in phonenumbers.PhoneNumberMatcher(text, "SE", leniency=phonenumbers.Leniency.VALID):
        digits = re.sub(r"\D", "", m.raw_string)
        national = str(m.number.national_number)
        if _valid_id(digits) or national in public or (
            m.number.country_code == 46 and _SERVICE_NUMBER.match(national)
        ):
            continue
        out.append(Finding("phone", m.start, m.end))
    return out


def _place(f: Finding, canon: str) -> Finding:
    """A capitalised street and number with no person and no postcode: likely a public place
    (a museum on Södra Vägen 54); still kept off the cloud, as doubt."""
    text = canon[f.start:f.end]
    if text[:1].isupper() and not re.search(r"\d{3}\s?\d{2}", text):
        return Finding("place", f.start, f.end)
    return f


def _address_key(match: str) -> str:
    return " ".join(fold(match).split()[:2])


# --- persons ------------------------------------------------------------------------------------

_NAME = re.compile(r"\b[A-ZÅÄÖČĆŠŽ][^\W\d_A-Z]+(?:[- ][A-ZÅÄÖČĆŠŽ][^\W\d_A-Z]+)+\b")
_CAPITALISED = re.compile(r"\b([A-ZÅÄÖČĆŠŽ][a-zåäöéčćšž]{2,})\b")
_INITIALS = re.compile(r"(?<!\w)[A-ZÅÄÖ]\.\s?[A-ZÅÄÖ]\.(?!\w)")
_TOKEN = re.compile(r"[^\W\d_]+")
# Eponymous diseases are not persons ("Parkinsons sjukdom").
_EPONYMS = frozenset(
    ["parkinsons", "parkinson", "alzheimers", "alzheimer", "crohns", "aspergers", "downs"]
)
_COMMON_LANGS = ("sv", "en", "de", "es", "fi", "pl", "tr", "bs", "hr", "sr", "ar", "fa")
_COVERED_SCRIPTS = ("LATIN", "ARABIC", "ETHIOPIC")
# Arabic-script letters of languages without vocabularies here (Kurdish, Urdu, Pashto).
_UNCOVERED_LETTERS = frozenset("ڕڵێۆەڤٹڈڑںےھځڅښږ")


def health_word(w: str) -> bool:
    return bool(lexicon().health.fullmatch(fold(w)))


@lru_cache(maxsize=50_000)
def _common_word(w: str) -> bool:
    """A word frequent in one of the city's languages (so not a first name)."""
    from wordfreq import zipf_frequency

    return any(zipf_frequency(w, lang) >= 4.2 for lang in _COMMON_LANGS)


def uncovered_script(text: str) -> bool:
    """Letters in a script (or an Arabic-script language) the vocabularies do not cover."""
    for c in text:
        if c.isalpha() and ord(c) > 0x24F:
            if c in _UNCOVERED_LETTERS:
                return True
            name = unicodedata.name(c, "")
            if not name.startswith(_COVERED_SCRIPTS):
                return True
    return False


@dataclass(frozen=True)
class Client:
    firsts: tuple[str, ...]  # folded: ("lars", "erik")
    last: str

    @property
    def full(self) -> str:
        return " ".join([*self.firsts, self.last])

    def surname(self, token: str) -> bool:
        return token == self.last or (len(self.last) >= 5 and fuzz.ratio(token, self.last) >= 85)


def _parse_client(name: str) -> Client | None:
    parts = [fold(p) for p in re.split(r"[\s-]+", name.strip()) if p]
    if len(parts) < 2:
        return None
    return Client(tuple(parts[:-1]), parts[-1])


# --- the detector --------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One text as the detectors read it."""

    canon: str
    folded: str
    tokens: tuple[str, ...]  # folded words


def view(text: str) -> View:
    canon = normalise(text)
    folded = fold(canon)
    return View(canon, folded, tuple(_TOKEN.findall(folded)))


_BASE64 = re.compile(r"\b[A-Za-z0-9+/]{16,}={0,2}")


def _decoded_variants(text: str) -> list[str]:
    """Base64 chunks decoded, so an encoded personnummer is seen too."""
    out = []
    for m in _BASE64.finditer(text):
        tok = m.group(0)
        try:
            s = base64.b64decode(tok + "=" * (-len(tok) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if s.isprintable():
            out.append(s)
    return out


@dataclass
class Detector:
    """Personal-data detector. ``client_names`` and ``client_streets`` come from the sensitive
    corpora; ``public_terms`` are the capitalised words of public corpora (places, sights, never
    persons), ``public_numbers`` their phone numbers (national form) and digit runs, and
    ``public_addresses`` their street + number pairs (folded)."""

    client_names: frozenset[str] = frozenset()
    public_terms: frozenset[str] = frozenset()
    client_streets: frozenset[str] = frozenset()
    public_numbers: frozenset[str] = frozenset()
    public_addresses: frozenset[str] = frozenset()
    public_words: frozenset[str] = frozenset()  # every word of the public corpora (folded)
    _clients: tuple[Client, ...] = field(default=(), init=False, repr=False)
    _full: tuple[str, ...] = field(default=(), init=False, repr=False)
    _streets: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        clients = [c for c in map(_parse_client, sorted(self.client_names)) if c is not None]
        self._clients = tuple(clients)
        self._full = tuple(c.full for c in clients)
        self._streets = tuple(sorted({fold(s) for s in self.client_streets}))

    # -- persons --

    def _before_surname(self, c: Client, before: Sequence[str]) -> bool:
        """The words before a client's surname name that client: "B.", "S-O", "Benke"."""
        n = len(c.firsts)
        initials = "".join(f[0] for f in c.firsts)
        if "".join(before[-n:]) == initials or (before and before[-1] == initials[0]):
            return True
        a = before[-1] if before else ""
        return len(a) >= 3 and a[0] == initials[0] and (
            fuzz.ratio(a, c.firsts[-1]) >= 75 or not _common_word(a)  # a nickname: "Benke"
        )

    def _after_name(self, c: Client, after: Sequence[str]) -> bool:
        """"Andersson G." after the surname; "Gunnel A." after the first name."""
        return bool(after) and after[0] == c.firsts[0][0]

    def client_hit(self, v: View) -> bool:
        """A client of the sensitive corpora, named in any of the ways people write names."""
        if not self._clients:
            return False
        toks = v.tokens
        for size in (2, 3):
            grams = [" ".join(toks[i:i + size]) for i in range(len(toks) - size + 1)]
            for g in grams:
                if process.extractOne(g, self._full, scorer=fuzz.ratio, score_cutoff=85):
                    return True
        for i, t in enumerate(toks):
            for c in self._clients:
                if c.surname(t) and (self._before_surname(c, toks[max(0, i - 2):i])
                                     or self._after_name(c, toks[i + 1:i + 2])):
                    return True
                if t == c.firsts[0] and toks[i + 1:i + 2] == (c.last[0],):
                    return True
        return self._first_name_with_street(v)

    def _street_hit(self, v: View) -> bool:
        return bool(self._streets) and any(
            process.extractOne(t, self._streets, scorer=fuzz.ratio, score_cutoff=85)
            for t in v.tokens if len(t) >= 7 and _FOLDED_STREET_END.search(t)
        )

    def _first_name_with_street(self, v: View) -> bool:
        firsts = {c.firsts[0] for c in self._clients}
        return bool(firsts & set(v.tokens)) and self._street_hit(v)

    def _name_pair(self, canon: str) -> bool:
        for m in _NAME.finditer(canon):
            parts = [p.lower() for p in re.split(r"[- ]", m.group(0))]
            # Two capitalised words: a name unless they are a place, a sight or a medicine.
            if not any(p in self.public_terms or p in _EPONYMS or health_word(p) for p in parts):
                return True
        return False

    def _capitalised_person(self, canon: str) -> bool:
        if self._name_pair(canon):
            return True
        for m in _CAPITALISED.finditer(canon):
            # The first word of a sentence is capitalised anyway; it still counts when it is no
            # common word in any of the city's languages ("Ahmed har demens", "Elsa behöver").
            w = m.group(1).lower()
            if not (w in self.public_terms or w in _EPONYMS or health_word(w) or _common_word(w)):
                return True
        return bool(_INITIALS.search(canon))

    def person(self, v: View, client: bool) -> bool:
        """Someone in particular: a relative, a pronoun, the writer, a name (any case);
        ``client`` is ``client_hit(v)``, worked out once per text by the caller."""
        lx = lexicon()
        return bool(
            client or lx.relations.search(v.folded) or lx.self_ref.search(v.folded)
            or lx.name_intro.search(v.folded) or self._capitalised_person(v.canon)
        )

    # -- detection --

    def _values(self, v: View) -> list[Finding]:
        """Findings with a span in the canonical view: ids, phones, e-mail, addresses."""
        about_ids = bool(lexicon().id_words.search(v.folded))
        found = find_ids(v.canon, about_ids)
        found += find_phones(v.canon, self.public_numbers)
        found += [Finding("email", m.start(), m.end()) for m in _EMAIL.finditer(v.canon)]
        found += [Finding("address", m.start(), m.end()) for m in _ADDRESS.finditer(v.canon)
                  if _address_key(m.group(0)) not in self.public_addresses]
        return found

    def _dates(self, v: View, person: bool, health: bool, client: bool) -> Iterator[str]:
        dates = find_dates(v.folded)
        if not dates:
            return
        lx = lexicon()
        about = lx.birth.search(v.folded) or lx.id_words.search(v.folded) or lx.last_four.search(
            v.folded)
        kind = _id_from_parts(v.folded, dates) if about else None
        if kind:
            yield kind
        if lx.birth.search(v.folded):
            yield "dob"
            if health or self._named(v, client) or (lx.last_four.search(v.folded)
                                            and re.search(r"(?<!\d)\d{4}(?!\d)", v.folded)):
                yield "dob_person"
        elif person and health:
            yield "dob"

    def _named(self, v: View, client: bool) -> bool:
        return bool(client or lexicon().name_intro.search(v.folded)
                    or self._capitalised_person(v.canon))

    def _rare_condition(self, v: View) -> bool:
        """A relative or the writer said to have ("har", "has") a rare word, or to suffer from
        anything ("lider av"), that the public corpora never use: possibly a diagnosis the health
        vocabulary lacks."""
        from wordfreq import zipf_frequency

        lx = lexicon()
        spelt: dict[str, set[str]] | None = None
        for lang, strong, pat in lx.condition:
            wf = _WORDFREQ.get(lang, lang)
            for m in pat.finditer(v.folded):
                # the one said to have it: a relative or the writer, just before the verb
                before = v.folded[max(0, m.start() - 30):m.start()]
                subject = v.folded[max(0, m.start() - 30):m.start(1)]
                if not (lx.relations.search(subject) or lx.self_ref.search(subject)
                        or _FIRST_PERSON.search(before)):
                    continue
                for w in m.group(1).split():
                    if len(w) < 5 or w in self.public_words:
                        continue
                    if strong:
                        return True
                    if spelt is None:  # wordfreq knows "körkort", not the folded "korkort"
                        spelt = {}
                        for x in _LETTERS.findall(v.canon.casefold()):
                            spelt.setdefault(fold(x), set()).add(x)
                    if max(zipf_frequency(x, wf) for x in spelt.get(w, {w})) < RARE_ZIPF:
                        return True
        return False

    def _doubts(self, v: View, condition: bool = False) -> Iterator[str]:
        if condition and self._rare_condition(v):
            yield "condition"
        if uncovered_script(v.canon):
            yield "script"
        for chain in digit_chains(v.canon):
            digits = "".join(m.group(0) for m in chain)
            text = v.canon[chain[0].start():chain[-1].end()]
            if len(digits) >= 6 and digits not in self.public_numbers and not (
                find_dates(text) and len(digits) <= 8
            ):
                yield "digits"
                break
        if self._street_hit(v):
            yield "client_street"
        if lexicon().name_intro.search(v.folded):
            yield "name"

    def find_in(self, v: View, doubts: bool = True) -> list[Finding]:
        """What the view holds; ``doubts=False`` leaves out the doubt checks (for a decoded
        variant, whose doubts ``find`` drops)."""
        health = bool(lexicon().health.search(v.folded))
        client = self.client_hit(v)  # fuzzy matching: the costliest check, done once
        person = self.person(v, client)
        findings = [_place(f, v.canon) if f.kind == "address" and not person else f
                    for f in self._values(v)]
        if client:
            findings.append(Finding("client_name", 0, 0))
        if health and person:
            findings.append(Finding("person_health", 0, 0))
        findings += [Finding(k, 0, 0) for k in self._dates(v, person, health, client)]
        # (a person with a listed health term is personal data already)
        if doubts:
            findings += [Finding(k, 0, 0) for k in self._doubts(v, not (health and person))]
        return findings

    def find(self, text: str) -> list[Finding]:
        findings = self.find_in(view(text))
        for decoded in _decoded_variants(text):
            findings += [Finding(f.kind, 0, 0) for f in self.find_in(view(decoded), doubts=False)
                         if f.kind not in DOUBT_KINDS]
        return findings

    def kinds(self, text: str) -> set[str]:
        """Every kind found, personal data and doubts alike (see ``DOUBT_KINDS``)."""
        return {f.kind for f in self.find(text)}

    def personal(self, text: str) -> set[str]:
        """The kinds of personal data found (doubts left out)."""
        return self.kinds(text) - DOUBT_KINDS

    # -- redaction --

    def _spans(self, text: str) -> list[Finding]:
        """Value findings with offsets in ``text`` itself (read without normalising)."""
        v = View(text, fold(text), ())
        return self._values(v) if len(v.folded) == len(text) else []

    def redact(self, text: str) -> str:
        """Replace detected values with placeholders (for the audit log and the cloud). When a
        value is only visible in the canonical view (its offsets cannot be mapped back), the whole
        text is replaced."""
        spans = sorted((f for f in self._spans(text) if f.end > f.start),
                       key=lambda f: (f.start, -f.end))
        out, pos = [], 0
        for f in spans:
            if f.start < pos:
                continue
            out += [text[pos:f.start], f"[{f.kind.upper()}]"]
            pos = f.end
        out.append(text[pos:])
        redacted = "".join(out)
        left = {f.kind for f in self.find(redacted) if f.end > f.start}
        left |= self.kinds(redacted) & {"client_name", "personnummer", "samordningsnummer"}
        return "[PERSONAL DATA]" if left else redacted


# --- building the detector from the corpora ----------------------------------------------------

_NAME_PAIR = re.compile(
    r"\b[A-ZÅÄÖČĆŠŽ][^\W\d_A-ZÅÄÖ]+(?:-[A-ZÅÄÖČĆŠŽ][^\W\d_A-ZÅÄÖ]+)? [A-ZÅÄÖČĆŠŽ][^\W\d_A-ZÅÄÖ]+\b"
)


def _public_numbers(text: str) -> set[str]:
    out = set()
    for m in phonenumbers.PhoneNumberMatcher(text, "SE"):
        out.add(str(m.number.national_number))
    for chain in digit_chains(text):
        digits = "".join(g.group(0) for g in chain)
        if len(digits) >= 6:
            out.add(digits)
    return out


def _warm_wordfreq() -> None:
    """Load the word lists the condition rule reads now, not on a user's first question in
    each language (100-250 ms each)."""
    from wordfreq import zipf_frequency

    for lang in {_WORDFREQ.get(lang, lang) for lang, _, _ in lexicon().condition}:
        zipf_frequency("a", lang)


def detector_from_corpora(corpora: Iterable[tuple[str, Iterable[str]]]) -> Detector:
    """A detector that knows the people of the sensitive corpora.

    ``corpora`` gives each corpus's sensitivity label and its texts. Two capitalised words in a
    sensitive corpus are a client's name, unless a public corpus uses the same pair (a statue, a
    street) or a word of it (a place), it starts with a common word ("Om Gunnel") or a medicine
    ("Insulin Lantus"); the capitalised words of public corpora are places and sights, never
    persons. Streets named in sensitive corpora are clients' streets."""
    names: set[str] = set()
    streets: set[str] = set()
    public_caps: set[str] = set()
    public_pairs: set[str] = set()
    numbers: set[str] = set()
    addresses: set[str] = set()
    public_streets: set[str] = set()
    public_words: set[str] = set()
    for sensitivity, texts in corpora:
        for text in texts:
            if sensitivity == "sensitive":
                names.update(_NAME_PAIR.findall(text))
                streets.update(m.group(0) for m in _STREET.finditer(text))
            elif sensitivity == "public":
                canon = normalise(text)
                public_caps.update(w.lower() for w in re.findall(r"\b[A-ZÅÄÖ][\wåäöé]+", text))
                public_pairs.update(n.lower() for n in _NAME_PAIR.findall(text))
                numbers |= _public_numbers(canon)
                addresses.update(_address_key(m.group(0)) for m in _ADDRESS.finditer(canon))
                public_streets.update(m.group(0) for m in _STREET.finditer(text))
                public_words.update(_LETTERS.findall(fold(text)))
    names = {n for n in names if _client_name(n, public_pairs, public_caps)}
    _warm_wordfreq()
    return Detector(client_names=frozenset(names), public_terms=frozenset(public_caps),
                    public_words=frozenset(public_words),
                    client_streets=frozenset(s for s in streets - public_streets if len(s) >= 7),
                    public_numbers=frozenset(numbers), public_addresses=frozenset(addresses))


def _client_name(name: str, public_pairs: set[str], public_caps: set[str]) -> bool:
    from wordfreq import zipf_frequency

    first, last = name.split()[0].lower(), name.split()[-1].lower()
    return not (
        name.lower() in public_pairs or health_word(first) or zipf_frequency(first, "sv") >= 5.2
        or lexicon().relations.fullmatch(fold(first)) is not None
        # a service or a place: "Hemtjänsten Askim", "Hemsjukvården Centrum", "Västra Frölunda"
        or (first in public_caps and zipf_frequency(first, "sv") < 4.8)
        or (last in public_caps and zipf_frequency(first, "sv") < 3.0)
    )
