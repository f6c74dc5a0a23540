"""Per-file budgets for local files: bytes read, unpacked bytes, characters and seconds.

A file over a budget is that file's error (skipped and reported), never the run's. The time
budget is cooperative: loaders and the chunker call :func:`check_time` between pages, blocks and
sections, and the pipeline between stages; every single step is bounded by the size budgets.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from gbg.settings import FileLimits
from ingest.errors import LimitExceededError

DEFAULT_LIMITS = FileLimits()

class Budget:
    """A deadline ``seconds`` from now; :meth:`restart` gives the next document a fresh one."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds

    def restart(self) -> None:
        self.deadline = time.monotonic() + self.seconds


_budget: ContextVar[Budget | None] = ContextVar("gbg_file_budget", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[Budget]:
    """Within the block, :func:`check_time` raises once ``seconds`` have passed."""
    budget = Budget(seconds)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def check_time() -> None:
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise LimitExceededError(
            f"took longer than {budget.seconds:g} s to load and chunk: skipped "
            "(time budget per file)"
        )
