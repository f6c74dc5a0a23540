"""An in-process GGUF model through llama-cpp-python (the `llamacpp` extra): fully offline."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bot.llm.base import ChatProvider, GenerationRequest, ProviderError
from bot.prompts import build_messages
from gbg.labels import Sensitivity
from gbg.settings import ProviderSettings


class LlamaCppProvider(ChatProvider):
    kind = "llamacpp"
    location = "local"

    def __init__(self, name: str, cfg: ProviderSettings, contact: str) -> None:
        self.name = name
        self.cfg = cfg
        self.contact = contact
        self.clearance = Sensitivity(cfg.cleared_for)
        if cfg.model_path is None or not Path(cfg.model_path).is_file():
            raise ProviderError(
                f"provider {name!r}: model_path must point to a GGUF file "
                f"(GBG_LLM__PROVIDERS__{name.upper()}__MODEL_PATH); see scripts/fetch_model"
            )
        self.model = cfg.model or Path(cfg.model_path).name
        self._llm: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ProviderError(
                "the llamacpp provider needs the extra: pip install -e '.[llamacpp]'"
            ) from exc
        return Llama(
            model_path=str(self.cfg.model_path),
            n_ctx=self.cfg.num_ctx,
            n_threads=self.cfg.n_threads,
            verbose=False,
            seed=0,
        )

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        with self._lock:  # one generation at a time per loaded model
            if self._llm is None:
                self._llm = self._load()
            try:
                for part in self._llm.create_chat_completion(
                    messages=build_messages(request, self.contact),
                    max_tokens=self.cfg.max_tokens,
                    temperature=self.cfg.temperature,
                    stream=True,
                ):
                    text = part["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            except Exception as exc:
                raise ProviderError(f"llamacpp provider {self.name!r} failed: "
                                    f"{type(exc).__name__}") from None

    def healthy(self) -> bool:
        return Path(str(self.cfg.model_path)).is_file()
