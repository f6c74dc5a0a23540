"""A fresh machine ingests the bundled corpora from the shipped embedding cache: the same
`gbg ingest` a first `./scripts/up` runs, against one that embeds every passage (`--no-cache`),
in one run, on a data directory that has never been used (no local cache). A ratio, not a
wall-clock limit: the machine is shared."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CORPORA, PYTHON, REPO

pytestmark = pytest.mark.slow


def ingest(data_dir: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    env = {**os.environ, "GBG_DATA_DIR": str(data_dir), "GBG_CORPORA_DIR": str(CORPORA)}
    t = time.perf_counter()
    done = subprocess.run([PYTHON, "-m", "gbg", "ingest", "--json", *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - t
    assert done.returncode == 0, done.stderr[-2000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return elapsed, report


def chunks(report: dict[str, Any]) -> dict[str, int]:
    return {c["corpus"]: c["chunks_total"] for c in report["corpora"]}


def test_first_ingest_from_the_shipped_cache_is_a_fraction_of_embedding_it_all(
        tmp_path: Path) -> None:
    cached_s, cached = ingest(tmp_path / "fresh")
    plain_s, plain = ingest(tmp_path / "plain", "--no-cache")
    print(f"\nbundled corpora, first ingest: shipped cache {cached_s:.1f} s, "
          f"no cache {plain_s:.1f} s, ratio {cached_s / plain_s:.2f}")
    assert chunks(cached) == chunks(plain) and sum(chunks(plain).values()) > 500
    assert not any(c["errors"] for c in cached["corpora"] + plain["corpora"])
    # Process start and loading the model are in both; embedding ~700 passages is only in the
    # second (about 70 s here against 4 s).
    assert cached_s < 0.4 * plain_s
