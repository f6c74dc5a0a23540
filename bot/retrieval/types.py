"""What retrieval returns and takes: the retrieved chunk, the per-call options and the errors
the API turns into 4xx."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gbg.labels import Role

Mode = Literal["hybrid", "dense", "bm25"]
Fusion = Literal["rrf", "zscore"]


class RetrievalError(Exception):
    """Base class for retrieval errors the API turns into 4xx."""


class CorpusNotPermittedError(RetrievalError):
    def __init__(self, corpora: Sequence[str], role: Role) -> None:
        self.corpora = list(corpora)
        self.role = role
        super().__init__(f"role {role.value!r} may not read corpus {', '.join(corpora)}")


class CorpusNotReadyError(RetrievalError):
    """A corpus asked for by name is still being ingested: answering from half of it would
    mislead, so the caller is told to come back."""

    def __init__(self, corpora: Sequence[str], progress: Sequence[str]) -> None:
        self.corpora = list(corpora)
        parts = [f"{c} ({p})" for c, p in zip(corpora, progress, strict=True)]
        super().__init__(f"corpus {', '.join(parts)} is still being ingested; try again shortly")


class UnknownCorpusError(RetrievalError):
    def __init__(self, corpora: Sequence[str], known: Sequence[str]) -> None:
        self.corpora = list(corpora)
        super().__init__(
            f"unknown corpus {', '.join(corpora)} (known: {', '.join(known) or 'none'})"
        )


@dataclass(frozen=True)
class RetrievedChunk:
    id: str
    text: str
    metadata: dict[str, Any]
    score: float  # fused score (higher is better)
    dense: float | None = None  # cosine similarity, when dense search found it
    bm25: float | None = None
    rank: int = 0
    neighbor_of: str | None = None

    @property
    def corpus(self) -> str:
        return str(self.metadata.get("corpus", ""))

    @property
    def source(self) -> str:
        return str(self.metadata.get("source", ""))


@dataclass(frozen=True)
class RetrievalOptions:
    """Per-call choices; ``None`` means the configured default. ``query_vec`` lets a caller
    that embeds many queries in a batch pass the vector in."""

    corpora: Sequence[str] | None = None
    lang: str | None = None
    k: int | None = None
    mode: Mode | None = None
    neighbors: int | None = None
    fusion: Fusion | None = None
    query_vec: np.ndarray | None = None
