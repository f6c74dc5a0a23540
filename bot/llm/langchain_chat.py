"""Generative providers built on LangChain chat models: Ollama (ChatOllama) and any
OpenAI-compatible endpoint (ChatOpenAI: Azure OpenAI, Mistral, vLLM, a llama.cpp server)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
from langchain_core.messages import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage

from bot.llm.base import ChatProvider, GenerationRequest, ProviderError
from bot.prompts import build_messages
from gbg.labels import Sensitivity
from gbg.settings import ProviderSettings


def _lc_messages(messages: list[dict[str, str]]) -> list[BaseMessage]:
    return [
        SystemMessage(m["content"]) if m["role"] == "system" else HumanMessage(m["content"])
        for m in messages
    ]


class LangChainProvider(ChatProvider):
    def __init__(self, name: str, cfg: ProviderSettings, contact: str) -> None:
        self.name = name
        self.cfg = cfg
        self.model = cfg.model
        self.location = cfg.where
        self.clearance = Sensitivity(cfg.cleared_for)
        self.contact = contact
        self._llm: Any = None

    def _chat_model(self) -> Any:
        raise NotImplementedError

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        if self._llm is None:
            self._llm = self._chat_model()
        messages = _lc_messages(build_messages(request, self.contact))
        try:
            for chunk in self._llm.stream(messages):
                text = chunk.content if isinstance(chunk, AIMessageChunk) else str(chunk)
                if isinstance(text, list):  # content blocks
                    text = "".join(b.get("text", "") for b in text if isinstance(b, dict))
                if text:
                    yield str(text)
        except Exception as exc:  # the client libraries raise many transport types
            # Say what failed, never what was sent: the prompt may hold personal data.
            raise ProviderError(
                f"{self.kind} provider {self.name!r} failed: {type(exc).__name__}"
            ) from None


class OllamaProvider(LangChainProvider):
    kind = "ollama"

    def __init__(self, name: str, cfg: ProviderSettings, contact: str) -> None:
        super().__init__(name, cfg, contact)
        self.base_url = (cfg.base_url or os.environ.get("OLLAMA_HOST") or
                         "http://127.0.0.1:11434").rstrip("/")
        if not self.model:
            raise ProviderError(
                f"provider {name!r}: set a model, e.g. GBG_LLM__PROVIDERS__{name.upper()}__MODEL="
                "qwen2.5:7b-instruct"
            )
        self._health: tuple[float, bool] = (-1e9, False)

    def _chat_model(self) -> Any:
        from langchain_ollama import ChatOllama

        return ChatOllama(
            model=self.model,
            base_url=self.base_url,
            keep_alive=self.cfg.keep_alive,
            num_ctx=self.cfg.num_ctx,
            num_predict=self.cfg.max_tokens,
            temperature=self.cfg.temperature,
            client_kwargs={"timeout": self.cfg.timeout_s},
        )

    def healthy(self) -> bool:
        try:
            r = httpx.get(f"{self.base_url}/api/tags", timeout=2.0)
            return r.status_code == 200
        except httpx.HTTPError:
            return False


class OpenAIProvider(LangChainProvider):
    kind = "openai"

    def __init__(self, name: str, cfg: ProviderSettings, contact: str) -> None:
        super().__init__(name, cfg, contact)
        if not cfg.base_url:
            raise ProviderError(
                f"provider {name!r}: set base_url, e.g. "
                f"GBG_LLM__PROVIDERS__{name.upper()}__BASE_URL=https://api.mistral.ai/v1"
            )
        self.base_url = cfg.base_url.rstrip("/")
        self._started = time.monotonic()

    def _key(self) -> str:
        key = os.environ.get(self.cfg.api_key_env, "")
        if not key:
            raise ProviderError(
                f"provider {self.name!r}: set the {self.cfg.api_key_env} environment variable"
            )
        return key

    def _chat_model(self) -> Any:
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(
            model=self.model,
            base_url=self.base_url,
            api_key=self._key(),
            temperature=self.cfg.temperature,
            max_tokens=self.cfg.max_tokens,
            timeout=self.cfg.timeout_s,
            max_retries=1,
            streaming=True,
        )

    def healthy(self) -> bool:
        try:
            self._key()
            r = httpx.get(
                f"{self.base_url}/models",
                headers={"Authorization": f"Bearer {self._key()}"},
                timeout=2.0,
            )
            return r.status_code < 500
        except (httpx.HTTPError, ProviderError):
            return False
