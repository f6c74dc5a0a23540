"""Rate limits per signed-in key and per client address, counted by the `limits` library in
memory (per worker) or in a shared store (Redis) so that every worker counts together."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gbg.settings import BotSettings

log = logging.getLogger("bot.ratelimit")


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: str = ""
    retry_after_s: int = 0


class RateLimiter:
    def __init__(self, settings: BotSettings) -> None:
        self.per_key: RateLimitItem | None = (
            parse(settings.rate_per_key) if settings.rate_per_key else None
        )
        self.per_address: RateLimitItem | None = (
            parse(settings.rate_per_address) if settings.rate_per_address else None
        )
        options = {}
        if settings.rate_storage.startswith(("redis", "rediss")):
            # A hung Redis must cost a request 0.2 s (then it is let through), not hang it.
            options = {"socket_timeout": 0.2, "socket_connect_timeout": 0.2}
        self._limiter = MovingWindowRateLimiter(
            storage_from_string(settings.rate_storage, **options))

    def hit(self, kind: str, identity: str) -> Verdict:
        """Count one request for ``identity`` (a key's hash, a signed-in subject or an address:
        keys and subjects share the per-key rate, in their own counters); fail open (with a
        log line) when a shared store cannot be reached: a limit must not take the service down."""
        item = self.per_key if kind in ("key", "subject") else self.per_address
        if item is None:
            return Verdict(True)
        try:
            if self._limiter.hit(item, kind, identity):
                return Verdict(True)
            stats = self._limiter.get_window_stats(item, kind, identity)
            wait = max(1, math.ceil(stats.reset_time - time.time()))
        except Exception as exc:  # redis down, timeouts: counted as allowed
            log.warning("rate limit store unavailable (%s); request allowed", type(exc).__name__)
            return Verdict(True)
        return Verdict(False, str(item), wait)
