"""Server-Sent Events for a chat stream: ``token`` events with text, ``reset`` when a provider
failed and another takes over, then one ``final`` event with the result."""

from __future__ import annotations

import json

from bot.models import ChatResult, FinalEvent, ResetEvent, StreamEvent, TokenEvent


def encode(event: StreamEvent) -> bytes:
    if isinstance(event, FinalEvent):
        return _frame("final", result_payload(event.result))
    if isinstance(event, ResetEvent):
        return b"event: reset\ndata: {}\n\n"
    assert isinstance(event, TokenEvent)
    return _frame("token", json.dumps({"text": event.text}, ensure_ascii=False))


def result_payload(result: ChatResult) -> str:
    return result.model_dump_json()


def _frame(name: str, data: str) -> bytes:
    return f"event: {name}\ndata: {data}\n\n".encode()
