"""The chat pipeline's concepts, each written once (STYLE 11): a request, a citation, the result
(also the HTTP response model; the fields only the audit needs are excluded from it) and the
typed events a stream yields."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from bot.audit import AuditRecord
from gbg.labels import Role, Sensitivity


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: str


@dataclass
class ChatRequest:
    messages: list[Message]
    role: Role = Role.public
    corpora: list[str] | None = None
    lang: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # The level a stored conversation reached already: this turn is classified no lower.
    floor: Sensitivity = Sensitivity.public
    # Proof that a later feedback comes from whoever asked: only they receive it.
    feedback_token: str = field(default_factory=lambda: secrets.token_urlsafe(18))


class Citation(BaseModel):
    number: int
    title: str
    source: str
    url: str
    snippet: str
    corpus: str
    section: str


class ChatResult(BaseModel):
    request_id: str
    answer: str
    citations: list[Citation]
    provider: str | None
    model: str | None
    location: Literal["local", "cloud"] | None
    sensitivity: Literal["public", "internal", "sensitive"]
    sensitivity_reasons: list[str]
    refused: bool
    refusal_reason: str | None
    grounded: bool
    notice: str | None
    lang: str = Field(description="The answer's language (the question's, when supported).")
    latency_ms: float
    stages_ms: dict[str, float]
    ai_generated: bool = Field(
        default=True, description="Always true: the answer was produced by an AI system."
    )
    feedback_token: str = Field(
        default="", description="Send it with feedback on this answer (only the asker has it)."
    )
    conversation_id: str | None = Field(
        default=None, description="The stored conversation this turn was added to (signed-in "
        "people only); null when it is not stored.")
    # For the audit record only; never sent to the caller.
    query: str = Field(default="", exclude=True)
    chunk_ids: list[str] = Field(default_factory=list, exclude=True)
    corpora: list[str] = Field(default_factory=list, exclude=True)


@dataclass(frozen=True)
class DecidedEvent:
    """The request is planned (level, provider, sources chosen): what the audit keeps before
    any answer text exists. Not sent to the caller."""

    record: AuditRecord


@dataclass(frozen=True)
class TokenEvent:
    """A piece of the answer text."""

    text: str


@dataclass(frozen=True)
class ResetEvent:
    """The provider failed mid-answer: forget the text so far, another provider follows."""


@dataclass(frozen=True)
class FinalEvent:
    result: ChatResult


StreamEvent = DecidedEvent | TokenEvent | ResetEvent | FinalEvent
