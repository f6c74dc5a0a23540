"""Feedback on an answer, by its request id."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from bot.audit import FeedbackNotAllowedError, UnknownRequestError
from bot.http.deps import Caller, Service
from bot.schemas import ErrorOut, FeedbackIn

router = APIRouter(tags=["chat"])


@router.post("/v1/feedback", status_code=201,
             responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}})
def feedback(body: FeedbackIn, _: Caller, svc: Service) -> dict[str, str]:
    """Rate an answer by its request id."""
    comment = svc.detector.redact(body.comment) if body.comment else None
    try:
        svc.audit.feedback(body.request_id, body.rating, comment, token=body.token)
    except UnknownRequestError as exc:
        raise HTTPException(404, f"unknown request id {body.request_id}") from exc
    except FeedbackNotAllowedError as exc:
        raise HTTPException(403, "feedback only from whoever asked (wrong token)") from exc
    return {"status": "stored", "request_id": body.request_id}
