"""Request models of the HTTP API and its small responses. The chat result and the audit
entry are the pipeline's own models (``bot.models``, ``bot.audit``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gbg.i18n import canonical, supported


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"] = Field(description="Who wrote the turn.")
    content: str = Field(min_length=1, description="The text of the turn.")


class ChatIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"messages": [{"role": "user", "content": "Hur tar jag mig till Liseberg?"}]}
            ]
        },
    )
    messages: list[MessageIn] = Field(min_length=1, description="The conversation, oldest first.")
    corpora: list[str] | None = Field(default=None, description="Only these corpora.")
    lang: str | None = Field(
        default=None, max_length=16,
        description="Answer in this language (a code such as sv, en, de, ar) instead of the "
        "question's own, which is detected.")
    stream: bool = Field(default=False, description="Server-Sent Events instead of JSON.")
    conversation_id: str | None = Field(
        default=None, min_length=32, max_length=32, pattern=r"^[0-9a-f]{32}$",
        description="Continue this stored conversation (signed-in people); an unknown or "
        "expired one starts a new conversation.")

    @field_validator("lang")
    @classmethod
    def _known_language(cls, v: str | None) -> str | None:
        if v is None:
            return None
        code = canonical(v)
        if code is None:
            raise ValueError(f"unsupported language {v!r}; supported: {', '.join(supported())}")
        return code


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=8, max_length=64, pattern=r"^[0-9a-f]+$")
    rating: Literal[-1, 1] = Field(description="1 = helpful, -1 = not helpful.")
    comment: str | None = Field(default=None, max_length=2000)
    token: str = Field(min_length=8, max_length=64,
                       description="The answer's feedback_token: only the asker may rate it.")


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
    state: str = Field(default="ready", description="ready, or ingesting: not answered from "
                       "until the ingest ends")
    progress: str | None = Field(default=None, description="While ingesting: documents done "
                                 "of the total.")


class ErrorOut(BaseModel):
    detail: str
