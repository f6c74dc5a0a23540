"""Errors of the ingest package. The CLI turns them into one readable line each."""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """Base class: something the operator can fix."""


class ManifestError(IngestError):
    def __init__(self, path: Path, field: str | None, message: str) -> None:
        self.path = path
        self.field = field
        self.message = message
        where = f"{path}: field '{field}'" if field else str(path)
        super().__init__(f"{where}: {message}")


class LoaderError(IngestError):
    """One source could not be read: it is skipped and reported, the rest goes on."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        self.message = message
        super().__init__(f"{source}: {message}")


class LimitExceededError(IngestError):
    """A file or page is over one of its budgets (size, characters, time): it is skipped."""


class UnsafeSourceError(IngestError):
    """A source points somewhere ingest must not go (outside the corpus folder, a private
    network address, a host the manifest does not name)."""


class EmbedderMismatchError(IngestError):
    def __init__(self, collection: str, stored: str, configured: str) -> None:
        super().__init__(
            f"collection {collection!r} was built with embedder {stored!r} but {configured!r} is "
            "configured; run `gbg ingest --rebuild` to re-embed it with the configured one"
        )


class StoreUnavailableError(IngestError):
    """Chroma did not answer."""


class EmbedderUnavailableError(IngestError):
    """An embedding server did not answer, or answered something that is not embeddings: the
    bot answers 503 (come back later), never 500; the message names the server, not the texts."""
