"""The labels ingest and bot share: a corpus's audience (who may read it), its sensitivity
(information class) and a caller's role. A leaf module: it imports nothing of the project.

Sensitivity is ordered like Swedish information classification practice: public (öppen) <
internal (intern) < sensitive (känslig). Each role reads its own audience and every one below it;
an unknown label is never readable and counts as the most sensitive.
"""

from __future__ import annotations

from enum import StrEnum


class Audience(StrEnum):
    """Who may read a corpus."""

    public = "public"
    staff = "staff"
    care = "care"


class Sensitivity(StrEnum):
    """Information class, ordered: public < internal < sensitive."""

    public = "public"
    internal = "internal"
    sensitive = "sensitive"

    @property
    def rank(self) -> int:
        return _SENSITIVITY_ORDER.index(self)

    @classmethod
    def parse(cls, label: str) -> Sensitivity:
        """The level a stored label names; an unknown label is the most sensitive."""
        try:
            return cls(label)
        except ValueError:
            return cls.sensitive


_SENSITIVITY_ORDER = [Sensitivity.public, Sensitivity.internal, Sensitivity.sensitive]


class Role(StrEnum):
    """A caller's role."""

    public = "public"  # anonymous tourists and residents
    staff = "staff"  # home-care staff: also internal routines
    care = "care"  # care staff with a client relationship: also sensitive client plans


_READS: dict[Role, frozenset[Audience]] = {
    Role.public: frozenset({Audience.public}),
    Role.staff: frozenset({Audience.public, Audience.staff}),
    Role.care: frozenset({Audience.public, Audience.staff, Audience.care}),
}


def readable_audiences(role: Role) -> frozenset[Audience]:
    return _READS[role]


def can_read(role: Role, audience: str) -> bool:
    """Whether ``role`` may read a corpus labelled ``audience`` (unknown labels: never)."""
    try:
        return Audience(audience) in _READS[role]
    except ValueError:
        return False
