"""``GET /v1/me``: who the bot takes the caller to be (what the UI shows after sign-in)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from bot.http.deps import Caller
from bot.schemas import ErrorOut

router = APIRouter(tags=["auth"])


class MeOut(BaseModel):
    role: str = Field(description="public, staff or care: the corpora this caller may read.")
    admin: bool = Field(description="May read the audit log.")
    signed_in: bool = Field(description="A person signed in with the city's provider.")
    name: str | None = Field(default=None, description="The person's name from their token "
                             "(shown to them; never stored).")


@router.get("/v1/me", response_model=MeOut, responses={401: {"model": ErrorOut}})
def me(who: Caller) -> MeOut:
    """The caller's role, as their API key or sign-in token gives it."""
    return MeOut(role=who.role.value, admin=who.admin, signed_in=who.subject is not None,
                 name=who.display_name)
