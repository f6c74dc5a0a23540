"""The routing policy: a pure function from a level and the providers to the provider that
answers, or none (STYLE 2). Never downgrades: none cleared and up means a refusal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gbg.labels import Sensitivity


@dataclass(frozen=True)
class ProviderOption:
    name: str
    clearance: Sensitivity
    available: bool


@dataclass(frozen=True)
class RouteDecision:
    provider: str | None
    reason: str  # "cleared", or "no_cleared_provider"


def route(
    level: Sensitivity, options: Sequence[ProviderOption], preference: Sequence[str]
) -> RouteDecision:
    """The first provider in preference order that is cleared for ``level`` and available.
    Never falls back to a less-cleared one; none cleared and up means a refusal."""
    order = {n: i for i, n in enumerate(preference)}
    ranked = sorted(options, key=lambda o: (order.get(o.name, len(order)), o.name))
    for opt in ranked:
        if opt.clearance.rank >= level.rank and opt.available:
            return RouteDecision(opt.name, "cleared")
    return RouteDecision(None, "no_cleared_provider")
