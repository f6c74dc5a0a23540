from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gbg.labels import Audience, Sensitivity
from ingest.errors import ManifestError
from ingest.manifest import discover_manifests, load_manifest
from tests.helpers import CORPORA, corpus_manifest, write_corpus


def test_bundled_corpora_are_valid_and_labelled() -> None:
    manifests = {m.name: m for m in discover_manifests(CORPORA)}
    assert set(manifests) >= {"turism", "stadens-tjanster", "hemtjanst-rutiner", "brukare"}
    assert manifests["turism"].audience is Audience.public
    assert manifests["turism"].languages == ["sv", "en"]
    assert manifests["stadens-tjanster"].sensitivity is Sensitivity.public
    assert manifests["hemtjanst-rutiner"].audience is Audience.staff
    assert manifests["hemtjanst-rutiner"].sensitivity is Sensitivity.internal
    assert manifests["brukare"].audience is Audience.care
    assert manifests["brukare"].sensitivity is Sensitivity.sensitive


def test_sensitivity_is_ordered() -> None:
    assert Sensitivity.public.rank < Sensitivity.internal.rank < Sensitivity.sensitive.rank


def good(**changes: Any) -> dict[str, Any]:
    return {**corpus_manifest("x-corpus"), **changes}


def without(manifest: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != key}


@pytest.mark.parametrize(
    ("manifest", "field", "fragment"),
    [
        (good(audience="everyone"), "audience", "public"),
        (good(sensitivity="secret"), "sensitivity", ""),
        (without(good(), "title"), "title", "required"),
        (good(languages=["de"]), "languages[0]", ""),
        (good(sources=[{"type": "files", "include": ["../../etc/*"]}]),
         "sources[0].include", "inside"),
        (good(sources=[{"type": "ftp", "include": ["docs/**/*"]}]), "sources[0]", ""),
        ({"unknown_key": 1, **good()}, "unknown_key", "not permitted"),
        (good(name="Bad Name!"), "name", "pattern"),
        (good(name="other"), "name", "folder"),
    ],
)
def test_bad_manifest_is_refused_naming_file_and_field(
    tmp_path: Path, manifest: dict[str, Any], field: str, fragment: str
) -> None:
    root = write_corpus(tmp_path, "x-corpus", {}, manifest=manifest)
    with pytest.raises(ManifestError) as info:
        load_manifest(root / "corpus.toml")
    err = info.value
    assert err.path == root / "corpus.toml"
    assert err.field == field
    assert str(root / "corpus.toml") in str(err) and f"'{field}'" in str(err)
    assert fragment.lower() in err.message.lower()


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    root = write_corpus(tmp_path, "x-corpus", {}, manifest='name = "x-corpus\n')
    with pytest.raises(ManifestError, match="not valid TOML") as info:
        load_manifest(root / "corpus.toml")
    assert info.value.path == root / "corpus.toml"


def test_unknown_corpus_name_lists_known(tmp_path: Path) -> None:
    write_corpus(tmp_path, "alpha", {})
    with pytest.raises(ManifestError, match="unknown corpus beta .*known: alpha"):
        discover_manifests(tmp_path, ["beta"])
