"""The corpora a caller may read, with their labels."""

from __future__ import annotations

from fastapi import APIRouter

from bot.http.deps import Caller, Service
from bot.schemas import CorpusOut
from gbg.labels import can_read
from ingest.store import INGESTING

router = APIRouter(tags=["chat"])


@router.get("/v1/corpora", response_model=list[CorpusOut])
def corpora(svc: Service, who: Caller) -> list[CorpusOut]:
    """The corpora the caller may read, with their labels."""
    return [
        CorpusOut(
            name=name, title=str(meta.get("title", name)),
            description=str(meta.get("description", "")),
            audience=str(meta.get("audience")), sensitivity=str(meta.get("sensitivity")),
            languages=[x for x in str(meta.get("languages", "")).split(",") if x],
            chunks=int(meta.get("chunks", 0)),
            documents=int(meta["documents"]) if "documents" in meta else None,
            last_ingest=str(meta.get("last_ingest")) if meta.get("last_ingest") else None,
            readable=True,
            state=str(meta.get("state") or "ready"),
            progress=(f"{meta.get('progress_done')}/{meta.get('progress_total')}"
                      if meta.get("state") == INGESTING else None),
        )
        for name, meta in sorted(svc.retriever.corpora().items())
        if can_read(who.role, str(meta.get("audience")))
    ]
