"""One small interface for every answer generator (STYLE 1): a provider streams text for a
generation request. Prompts are built in ``bot.prompts``; providers only speak their wire protocol.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from gbg.labels import Sensitivity


class ProviderError(Exception):
    """The provider failed or is unreachable. Never carries prompt text (it may be sensitive)."""


_MARKER = re.compile(r"\[(\d{1,3})\]")


def as_data(text: str) -> str:
    """A document's text with its own citation markers neutralised ("[2]" -> "(2)"), so text in
    a document cannot pose as the answer's citation of another source."""
    return _MARKER.sub(r"(\1)", text)


@dataclass(frozen=True)
class Source:
    n: int
    title: str
    text: str
    lang: str = "sv"
    section: str = ""
    # the retrieval's cosine similarity of the chunk to the question (None: BM25 only); the
    # extractive answerer weighs it when it chooses the source to quote
    relevance: float | None = None


@dataclass(frozen=True)
class GenerationRequest:
    question: str
    lang: str
    sources: list[Source] = field(default_factory=list)


class ChatProvider(ABC):
    """An answer generator. ``name`` is the configured name, ``kind`` the backend."""

    name: str
    kind: Literal["ollama", "openai", "llamacpp", "extractive"]
    model: str
    location: Literal["local", "cloud"]
    clearance: Sensitivity

    @abstractmethod
    def stream(self, request: GenerationRequest) -> Iterator[str]:
        """Yield pieces of the answer text as they are produced."""

    def generate(self, request: GenerationRequest) -> str:
        return "".join(self.stream(request))

    def healthy(self) -> bool:
        """Whether the provider answers now (cheap; called by /readyz and routing)."""
        return True

    def describe(self) -> dict[str, str]:
        return {
            "name": self.name,
            "kind": self.kind,
            "model": self.model,
            "location": self.location,
            "clearance": str(self.clearance),
        }
