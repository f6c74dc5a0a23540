"""Build the configured providers by name."""

from __future__ import annotations

from bot.llm.base import ChatProvider
from bot.llm.extractive import ExtractiveProvider
from gbg.settings import ProviderSettings, Settings


def build_provider(name: str, cfg: ProviderSettings, contact: str) -> ChatProvider:
    if cfg.kind == "extractive":
        return ExtractiveProvider(name)
    if cfg.kind == "ollama":
        from bot.llm.langchain_chat import OllamaProvider

        return OllamaProvider(name, cfg, contact)
    if cfg.kind == "openai":
        from bot.llm.langchain_chat import OpenAIProvider

        return OpenAIProvider(name, cfg, contact)
    from bot.llm.llamacpp import LlamaCppProvider

    return LlamaCppProvider(name, cfg, contact)


def build_providers(settings: Settings) -> dict[str, ChatProvider]:
    return {
        name: build_provider(name, cfg, settings.bot.contact)
        for name, cfg in settings.llm.providers.items()
    }
