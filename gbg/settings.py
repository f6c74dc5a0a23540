"""The one settings object for every part of gbg-assist.

Read from the environment (prefix ``GBG_``, nested with ``__``, e.g. ``GBG_CHROMA__HOST``) and
from an optional ``gbg.env`` file. Settings are created at the edge (the CLI, the app factory) and
passed in; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChromaSettings(BaseModel):
    """Where chunks live: an embedded PersistentClient unless ``host`` is set."""

    path: Path | None = Field(
        default=None, description="Folder of the embedded store (default: <data_dir>/chroma)."
    )
    host: str | None = Field(default=None, description="Chroma server host; enables HTTP mode.")
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False
    auth_token: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)


class EmbedderSettings(BaseModel):
    backend: Literal["e5", "sentence-transformers"] = "e5"
    model: str | None = Field(
        default=None,
        description="sentence-transformers model name or local path (ignored for e5).",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)


class ChunkSettings(BaseModel):
    max_tokens: int = Field(default=256, ge=32, le=512)
    overlap_tokens: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class WebSettings(BaseModel):
    user_agent: str = "gbg-assist-ingest/0.1 (+https://goteborg.se)"
    min_delay_s: float = Field(default=1.0, ge=0, description="Pause between requests to a host.")
    timeout_s: float = Field(default=15.0, gt=0)
    max_pages: int = Field(default=500, ge=1, description="Upper bound per sitemap source.")
    max_bytes: int = Field(default=10_000_000, ge=1024)


class RetrievalSettings(BaseModel):
    k: int = Field(default=5, ge=1, le=50, description="Chunks returned per query.")
    candidates: int = Field(default=40, ge=1, le=500, description="Per retriever, before fusion.")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=1.0, ge=0)
    bm25_weight: float = Field(default=1.0, ge=0)
    dedupe_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Token Jaccard above which chunks are duplicates."
    )
    neighbors: int = Field(default=0, ge=0, le=3, description="Add adjacent chunks of a hit.")
    refresh_s: float = Field(
        default=5.0, ge=0, description="How often to check whether a collection changed."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GBG_",
        env_nested_delimiter="__",
        env_file="gbg.env",
        extra="ignore",
    )

    data_dir: Path = Path(".gbg")
    corpora_dir: Path = Path("corpora")
    chroma: ChromaSettings = ChromaSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkSettings = ChunkSettings()
    web: WebSettings = WebSettings()
    retrieval: RetrievalSettings = RetrievalSettings()

    @property
    def chroma_path(self) -> Path:
        return self.chroma.path or (self.data_dir / "chroma")
