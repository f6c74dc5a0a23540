"""Roles and what they may read. Enforced inside retrieval, never only in a UI."""

from __future__ import annotations

from enum import StrEnum

from ingest.manifest import Audience


class Role(StrEnum):
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
    try:
        return Audience(audience) in _READS[role]
    except ValueError:  # an unknown label is never readable
        return False
