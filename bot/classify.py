"""Sensitivity classification: a pure function from what a request touches to a level
(public < internal < sensitive) and the reasons, the names of the rules that fired, never the
matched values (STYLE 2)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.pii import DOUBT_KINDS, Detector, covered_languages
from gbg.labels import Sensitivity


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
    language: str | None = None,
) -> Classification:
    """The request's level and why. ``chunk_sensitivities`` are (corpus, sensitivity) pairs of
    the retrieved chunks; ``history`` holds the earlier turns (which can only raise the level);
    ``floor`` is a level already reached in this conversation. Personal data anywhere in the
    conversation makes it ``sensitive``; doubt (an uncovered script, six or more digits, a client's
    street, a date of birth, an introduced name) makes it at least ``internal``, which keeps it
    off every cloud provider (they are cleared for ``public`` only)."""
    level = floor
    reasons: list[str] = [] if floor is Sensitivity.public else [f"conversation:{floor.value}"]

    def raise_to(lvl: Sensitivity, reason: str) -> None:
        nonlocal level
        if lvl.rank > level.rank:
            level = lvl
        if reason not in reasons:
            reasons.append(reason)

    # A question in a language the vocabularies do not cover (French, Danish, Norwegian, or one
    # we do not answer in): a name or a diagnosis could pass unseen, so it stays local.
    if language and language not in covered_languages():
        raise_to(Sensitivity.internal, f"doubt:language:{language}")
    # The conversation is read as one text: an id split across turns, or a person in turn 1 and
    # a diagnosis in turn 3, is found only in the joined text.
    asked = detector.kinds(question)
    joined = detector.kinds("\n".join([*history, question])) if history else set()
    for kind in sorted(asked):
        raise_to(_level(kind), f"{_prefix(kind, 'pii')}:{kind}")
    for kind in sorted(joined - asked):
        raise_to(_level(kind), f"{_prefix(kind, 'history')}:{kind}")
    for corpus, sens in sorted(set(chunk_sensitivities)):
        lvl = Sensitivity.parse(sens)  # an unknown label is treated as the most sensitive
        if lvl is not Sensitivity.public:
            raise_to(lvl, f"corpus:{corpus}")
    if role == "care" and level is Sensitivity.public and asked:
        raise_to(Sensitivity.sensitive, "role:care")
    return Classification(level, tuple(reasons))


def _level(kind: str) -> Sensitivity:
    """Doubt keeps a request off the cloud (internal); personal data makes it sensitive."""
    return Sensitivity.internal if kind in DOUBT_KINDS else Sensitivity.sensitive


def _prefix(kind: str, where: str) -> str:
    return "doubt" if kind in DOUBT_KINDS else where
