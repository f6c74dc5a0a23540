"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"] = Field(description="Who wrote the turn.")
    content: str = Field(min_length=1, description="The text of the turn.")


class ChatIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"messages": [{"role": "user", "content": "Hur tar jag mig till Liseberg?"}]}]
        },
    )
    messages: list[MessageIn] = Field(min_length=1, description="The conversation, oldest first.")
    corpora: list[str] | None = Field(default=None, description="Only these corpora.")
    lang: Literal["sv", "en"] | None = Field(default=None, description="Answer language.")
    stream: bool = Field(default=False, description="Server-Sent Events instead of JSON.")


class CitationOut(BaseModel):
    number: int
    title: str
    source: str
    url: str
    snippet: str
    corpus: str
    section: str


class ChatOut(BaseModel):
    request_id: str
    answer: str
    citations: list[CitationOut]
    provider: str | None
    model: str | None
    location: Literal["local", "cloud"] | None
    sensitivity: Literal["public", "internal", "sensitive"]
    sensitivity_reasons: list[str]
    refused: bool
    refusal_reason: str | None
    grounded: bool
    notice: str | None
    lang: Literal["sv", "en"]
    latency_ms: float
    stages_ms: dict[str, float]
    ai_generated: bool = Field(description="Always true: the answer was produced by an AI system.")


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")
    rating: Literal[-1, 1] = Field(description="1 = helpful, -1 = not helpful.")
    comment: str | None = Field(default=None, max_length=2000)


class CorpusOut(BaseModel):
    name: str
    title: str
    description: str
    audience: str
    sensitivity: str
    languages: list[str]
    chunks: int
    documents: int | None = None
    last_ingest: str | None = None
    readable: bool


class ErrorOut(BaseModel):
    detail: str


class AuditOut(BaseModel):
    """One audit record as the audit view shows it (already redacted when stored)."""

    request_id: str
    time: datetime
    endpoint: str
    status: int
    role: str
    level: str
    reasons: list[str]
    provider: str | None = None
    model: str | None = None
    location: str | None = None
    corpora: list[str]
    chunk_ids: list[str]
    refused: bool
    refusal_reason: str | None = None
    grounded: bool | None = None
    lang: str | None = None
    latency_ms: float | None = None
    question: str | None = Field(default=None, description="Redacted; never for sensitive.")
    feedback_rating: int | None = None
    feedback_comment: str | None = Field(default=None, description="Redacted.")
    feedback_time: datetime | None = None
