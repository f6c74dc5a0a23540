"""Corpus manifests: ``corpora/<name>/corpus.toml``, validated with pydantic.

A bad manifest is refused with an error that names the file and the field, so an operator can fix
it without reading code.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from gbg.labels import Audience, Sensitivity
from ingest.errors import ManifestError

# Chroma collection names: 3-63 chars of [a-z0-9-], starting and ending alphanumeric.
CORPUS_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$"


class License(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    attribution: str = ""
    url: HttpUrl | None = None


class FileSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["files"]
    include: list[str] = Field(min_length=1)
    exclude: list[str] = []

    @field_validator("include", "exclude")
    @classmethod
    def _relative_globs(cls, globs: list[str]) -> list[str]:
        for g in globs:
            if g.startswith("/") or ".." in Path(g).parts:
                raise ValueError(f"glob {g!r} must stay inside the corpus folder")
        return globs


class UrlListSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["urls"]
    urls: list[HttpUrl] = Field(min_length=1)


class SitemapSource(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["sitemap"]
    url: HttpUrl
    include: list[str] = Field(default=[], description="Only URLs containing one of these.")
    max_pages: int | None = Field(default=None, ge=1)


Source = Annotated[FileSource | UrlListSource | SitemapSource, Field(discriminator="type")]


class CorpusManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CORPUS_NAME_PATTERN)
    title: str = Field(min_length=1)
    description: str = ""
    audience: Audience
    sensitivity: Sensitivity
    languages: list[Literal["sv", "en"]] = Field(min_length=1)
    license: License
    sources: list[Source] = Field(min_length=1)

    # Set by the loader, not by the file.
    root: Path = Field(default=Path("."), exclude=True)


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    return ".".join(parts)


def load_manifest(path: Path) -> CorpusManifest:
    """Parse and validate one ``corpus.toml``; raise ManifestError naming file and field."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(path, None, "file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(path, None, f"not valid TOML: {exc}") from exc
    try:
        manifest = CorpusManifest.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        # Discriminated unions add the tag to the location; drop it for a readable path.
        loc = tuple(p for p in err["loc"] if p not in ("files", "urls", "sitemap"))
        raise ManifestError(path, _field_path(loc) or None, err["msg"]) from exc
    if manifest.name != path.parent.name:
        raise ManifestError(
            path, "name", f"must match the folder name {path.parent.name!r}, got {manifest.name!r}"
        )
    manifest.root = path.parent
    return manifest


def discover_manifests(corpora_dir: Path, names: list[str] | None = None) -> list[CorpusManifest]:
    """All corpora under ``corpora_dir`` (or just ``names``), sorted by name."""
    if not corpora_dir.is_dir():
        raise ManifestError(corpora_dir, None, "corpora folder not found")
    found = {p.parent.name: p for p in sorted(corpora_dir.glob("*/corpus.toml"))}
    if names:
        unknown = [n for n in names if n not in found]
        if unknown:
            known = ", ".join(sorted(found)) or "none"
            raise ManifestError(
                corpora_dir, None, f"unknown corpus {', '.join(unknown)} (known: {known})"
            )
        found = {n: found[n] for n in names}
    return [load_manifest(p) for p in found.values()]
