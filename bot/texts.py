"""The bot's fixed texts come from the platform's one message catalogue (``gbg.i18n``):
refusals, notices, the eligibility referral and the extractive answerer's framing, in every
language the platform answers in."""

from __future__ import annotations

from gbg.i18n import text

__all__ = ["text"]
