"""Conversations of signed-in people, kept server-side (issue 19): listed, reopened, continued,
deleted and exported by their owner only, a pseudonymous subject (``Principal.subject``).

Retention follows a conversation's highest sensitivity level: it expires that many hours after
its last message (``HistorySettings.retention_hours``; 0 means not stored). A conversation
whose level rises to one that may not be stored is deleted at once, earlier turns included.

With a Fernet key (the environment variable ``HistorySettings.key_env``; several keys separated
by commas rotate: the first encrypts, all decrypt) every conversation's title, message texts and
citations are encrypted. Without one, sensitive conversations are not stored at all. A key that
is not a Fernet key stores and reads nothing (``HistoryKeyError``) but still lets conversations
be purged and deleted. Content encrypted under another key is never shown as anything but
unreadable: listed with ``readable: false`` and no title, and ``get`` raises
``ConversationUnreadableError`` (so its owner can still see and delete it).

The tables live in the audit database (SQLite or PostgreSQL), in portable SQLAlchemy Core."""

from __future__ import annotations

import builtins
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    false,
    func,
    insert,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from bot.audit import _aware, _clean, create_schema
from gbg.labels import Sensitivity
from gbg.settings import HistorySettings

if TYPE_CHECKING:
    from bot.models import ChatResult
    from gbg.settings import Settings

log = logging.getLogger("bot.history")

ID_PATTERN = r"^[0-9a-f]{32}$"  # uuid4().hex
TITLE_CHARS = 80
PURGE_INTERVAL_S = 3600.0

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("subject", String(128), nullable=False, index=True),
    Column("title", Text, nullable=False),  # encrypted when ``encrypted``
    Column("level", String(16), nullable=False),  # the highest level of any turn
    Column("encrypted", Boolean, nullable=False),
    Column("turns", Integer, nullable=False),  # question-answer pairs
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)

conversation_turns = Table(
    "conversation_turns",
    metadata,
    Column("conversation_id", String(32), ForeignKey("conversations.id", ondelete="CASCADE"),
           primary_key=True),
    Column("seq", Integer, primary_key=True),  # 0, 1, 2, ...: question, answer, question, ...
    Column("role", String(16), nullable=False),  # user or assistant
    Column("content", Text, nullable=False),  # encrypted when ``encrypted``
    Column("citations", Text),  # a JSON list (assistant turns), encrypted when ``encrypted``
    Column("meta", JSON, nullable=False),  # request_id, sensitivity, lang, provider, model...
    Column("encrypted", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

_C = conversations.c
_T = conversation_turns.c


class HistoryKeyError(Exception):
    """The history key is set but is not a Fernet key: nothing can be stored or read."""


class ConversationUnreadableError(Exception):
    """A stored conversation cannot be decrypted with the current key (it was written under
    another one, or no key is set now)."""


class ConversationOut(BaseModel):
    """A conversation as listed."""

    id: str
    title: str | None = Field(description="The first question, shortened; null when unreadable.")
    level: str = Field(description="The highest sensitivity level reached; sets the retention.")
    created_at: datetime
    updated_at: datetime
    expires_at: datetime = Field(description="Deleted then unless continued before.")
    turns: int = Field(description="Question-answer pairs.")
    readable: bool = Field(default=True, description="False when stored under another key.")


class MessageOut(BaseModel):
    role: str = Field(description="user or assistant")
    content: str
    created_at: datetime
    request_id: str | None = None
    sensitivity: str | None = None
    lang: str | None = None
    citations: list[dict[str, Any]] = Field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    location: str | None = None
    grounded: bool | None = None
    refused: bool | None = None
    notice: str | None = None


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]


class _Cipher:
    """Fernet over the configured keys; no keys means plaintext for what may be stored so."""

    def __init__(self, keys: str | None, source: str) -> None:
        self.error: str | None = None
        self._fernet: MultiFernet | None = None
        parts = [k.strip() for k in (keys or "").split(",") if k.strip()]
        if not parts:
            return
        try:
            self._fernet = MultiFernet([Fernet(k) for k in parts])
        except ValueError:  # the key itself is never put in a message
            self.error = f"{source} does not hold a valid Fernet key"

    @property
    def enabled(self) -> bool:
        """Whether content is encrypted (raises ``HistoryKeyError`` for an invalid key)."""
        self.check()
        return self._fernet is not None

    @property
    def usable(self) -> bool:
        """A valid key is set (never raises)."""
        return self._fernet is not None

    def check(self) -> None:
        if self.error:
            raise HistoryKeyError(self.error)

    def seal(self, text: str) -> str:
        self.check()
        return self._fernet.encrypt(text.encode()).decode() if self._fernet else str(_clean(text))

    def open(self, stored: str, encrypted: bool) -> str:
        if not encrypted:
            return stored
        if self.error:
            raise ConversationUnreadableError(self.error)
        if self._fernet is None:
            raise ConversationUnreadableError("encrypted, and no history key is set")
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken as exc:
            raise ConversationUnreadableError(
                "cannot be decrypted with the current history key") from exc


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _title(question: str) -> str:
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1].rstrip() + "…"


class ConversationStore:
    def __init__(self, engine: Engine, settings: HistorySettings | None = None,
                 key: str | None = None, *, key_source: str = "the history key",
                 now: Callable[[], datetime] = _utc_now) -> None:
        self.engine = engine
        self.settings = settings or HistorySettings()
        self._cipher = _Cipher(key, key_source)
        self._clock = now
        defaults = HistorySettings().retention_hours  # a level left out of the settings
        self._retention = {lvl: float(self.settings.retention_hours.get(lvl, defaults[lvl]))
                           for lvl in Sensitivity}
        create_schema(engine, metadata)

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine | None = None,
                      now: Callable[[], datetime] = _utc_now) -> ConversationStore:
        """The store in the audit database, keyed from the environment."""
        if engine is None:
            from bot.audit import AuditStore

            engine = AuditStore(settings.audit_url).engine
        env = settings.history.key_env
        return cls(engine, settings.history, os.environ.get(env), key_source=env, now=now)

    # -- policy ---------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether content is encrypted (raises ``HistoryKeyError`` for an invalid key)."""
        return self._cipher.enabled

    def check_key(self) -> None:
        """Raise ``HistoryKeyError`` when the configured key is not a Fernet key."""
        self._cipher.check()

    def storable(self, level: Sensitivity) -> bool:
        """Whether a conversation at ``level`` may be stored at all: above public only
        encrypted (an internal turn may hold a name or a client's street)."""
        if self._retention[level] <= 0:
            return False
        return level is Sensitivity.public or self._cipher.usable

    def _now(self) -> datetime:
        now = self._clock()
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)

    def _expiry(self, level: Sensitivity, last: datetime) -> datetime:
        return last + timedelta(hours=self._retention[level])

    def _live(self, now: datetime) -> ColumnElement[bool]:
        """Not expired: by the stored expiry and by today's retention of its level (a shortened
        retention applies to what is stored already)."""
        within = [and_(_C.level == lvl.value, _C.updated_at > now - timedelta(hours=h))
                  for lvl, h in self._retention.items() if h > 0]
        return and_(_C.expires_at > now, or_(false(), *within))

    # -- writing --------------------------------------------------------------------------

    def append(self, subject: str, conversation_id: str | None, question: str,
               result: ChatResult) -> str | None:
        """Store a question and its answer: in ``conversation_id`` when that is one of
        ``subject``'s live conversations, else in a new one. Returns the conversation's id, or
        None when it may not be stored (then a continued conversation is deleted, earlier
        turns included)."""
        level = Sensitivity.parse(result.sensitivity)
        now = self._now()
        with self.engine.begin() as conn:
            row = None
            if conversation_id:
                # a conversation that is full is not continued: the answer starts a new one
                mine = and_(_C.id == conversation_id, _C.subject == subject, self._live(now),
                            _C.turns < self.settings.max_turns)
                # Write first, read after: the write takes the lock (PostgreSQL: the row,
                # SQLite: the database), so two answers continuing one conversation at once
                # read its turns one after the other and number theirs apart.
                conn.execute(update(conversations).where(mine).values(turns=_C.turns))
                row = conn.execute(select(_C.id, _C.level, _C.turns).where(mine)
                                   ).mappings().first()
            if row is not None:
                top = max(level, Sensitivity.parse(row["level"]), key=lambda s: s.rank)
                if not self.storable(top):
                    self._delete(conn, _C.id == row["id"])
                    return None
                cid, seq = str(row["id"]), 2 * int(row["turns"])
                conn.execute(update(conversations).where(_C.id == cid).values(
                    level=top.value, turns=_C.turns + 1, updated_at=now,
                    expires_at=self._expiry(top, now)))
            else:
                if not self.storable(level):
                    return None
                cid, seq = uuid.uuid4().hex, 0
                conn.execute(insert(conversations).values(
                    id=cid, subject=subject, title=self._cipher.seal(_title(question)),
                    level=level.value, encrypted=self.encrypted, turns=1, created_at=now,
                    updated_at=now, expires_at=self._expiry(level, now)))
            conn.execute(insert(conversation_turns), self._turn_rows(cid, seq, question, result,
                                                                     now))
            if row is None:
                self._drop_oldest(conn, subject, now)
        return cid

    def _turn_rows(self, cid: str, seq: int, question: str, result: ChatResult,
                   now: datetime) -> builtins.list[dict[str, Any]]:
        seal, enc = self._cipher.seal, self.encrypted
        common = {"request_id": result.request_id, "sensitivity": result.sensitivity,
                  "lang": result.lang}
        citations = [c.model_dump() for c in result.citations]
        return [
            {"conversation_id": cid, "seq": seq, "role": "user", "content": seal(question),
             "citations": None, "meta": common, "encrypted": enc, "created_at": now},
            {"conversation_id": cid, "seq": seq + 1, "role": "assistant",
             "content": seal(result.answer),
             "citations": seal(json.dumps(citations, ensure_ascii=False)),
             "meta": {**common, "provider": result.provider, "model": result.model,
                      "location": result.location, "grounded": result.grounded,
                      "refused": result.refused, "notice": result.notice},
             "encrypted": enc, "created_at": now},
        ]

    def _drop_oldest(self, conn: Connection, subject: str, now: datetime) -> None:
        """Keep the subject's ``max_conversations`` most recently used conversations."""
        extra = conn.execute(
            select(_C.id).where(_C.subject == subject, self._live(now))
            .order_by(_C.updated_at.desc(), _C.created_at.desc())
            .offset(self.settings.max_conversations)
        ).scalars().all()
        if extra:
            self._delete(conn, _C.id.in_(extra))

    @staticmethod
    def _delete(conn: Connection, where: ColumnElement[bool]) -> int:
        """Delete the conversations ``where`` selects, their turns first."""
        conn.execute(delete(conversation_turns).where(
            _T.conversation_id.in_(select(_C.id).where(where))))
        return int(conn.execute(delete(conversations).where(where)).rowcount)

    def delete(self, subject: str, conversation_id: str) -> bool:
        """Delete one of ``subject``'s conversations; False when there is no such one."""
        with self.engine.begin() as conn:
            return self._delete(conn, and_(_C.id == conversation_id,
                                           _C.subject == subject)) > 0

    def delete_all(self, subject: str) -> int:
        with self.engine.begin() as conn:
            return self._delete(conn, _C.subject == subject)

    def purge(self, subject: str | None = None) -> int:
        """Delete every expired conversation (only ``subject``'s when given); returns how
        many."""
        where = not_(self._live(self._now()))
        if subject is not None:
            where = and_(_C.subject == subject, where)
        with self.engine.begin() as conn:
            return self._delete(conn, where)

    # -- reading --------------------------------------------------------------------------

    def _summary(self, row: Any) -> ConversationOut:
        r = _aware(dict(row))
        try:
            title: str | None = self._cipher.open(r["title"], r["encrypted"])
        except ConversationUnreadableError:
            title = None
        return ConversationOut(id=r["id"], title=title, level=r["level"],
                               created_at=r["created_at"], updated_at=r["updated_at"],
                               expires_at=r["expires_at"], turns=r["turns"],
                               readable=title is not None)

    def list(self, subject: str) -> builtins.list[ConversationOut]:
        """``subject``'s live conversations, the most recently used first (with a key that
        does not open them: listed as unreadable, so that they can still be deleted)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(conversations).where(_C.subject == subject, self._live(self._now()))
                .order_by(_C.updated_at.desc(), _C.created_at.desc())
            ).mappings().all()
        return [self._summary(r) for r in rows]

    def count(self, subject: str | None = None) -> int:
        """Stored conversations, expired ones not yet purged included."""
        stmt = select(func.count()).select_from(conversations)
        if subject is not None:
            stmt = stmt.where(_C.subject == subject)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def level(self, subject: str, conversation_id: str) -> Sensitivity | None:
        """The highest level one of ``subject``'s live conversations has reached (its next turn
        is classified no lower); None when there is no such conversation."""
        with self.engine.connect() as conn:
            value = conn.execute(select(_C.level).where(
                _C.id == conversation_id, _C.subject == subject, self._live(self._now()))
            ).scalar_one_or_none()
        return None if value is None else Sensitivity.parse(str(value))

    def get(self, subject: str, conversation_id: str) -> ConversationDetail | None:
        """One of ``subject``'s live conversations with its messages in order; None when there
        is no such one. Raises ``ConversationUnreadableError`` when it cannot be decrypted."""
        self._cipher.check()
        with self.engine.connect() as conn:
            row = conn.execute(select(conversations).where(
                _C.id == conversation_id, _C.subject == subject, self._live(self._now())
            )).mappings().first()
            if row is None:
                return None
            turns = conn.execute(select(conversation_turns).where(
                _T.conversation_id == conversation_id).order_by(_T.seq)).mappings().all()
        summary = self._summary(row)
        if not summary.readable:
            raise ConversationUnreadableError(conversation_id)
        return ConversationDetail(**summary.model_dump(),
                                  messages=[self._message(t) for t in turns])

    def _message(self, row: Any) -> MessageOut:
        t = _aware(dict(row))
        content = self._cipher.open(t["content"], t["encrypted"])
        citations = (json.loads(self._cipher.open(t["citations"], t["encrypted"]))
                     if t["citations"] else [])
        meta = {k: v for k, v in (t["meta"] or {}).items() if k in MessageOut.model_fields}
        return MessageOut(**{**meta, "role": t["role"], "content": content,
                             "created_at": t["created_at"], "citations": citations})

    def export(self, subject: str) -> dict[str, Any]:
        """Everything stored for ``subject`` (its expired conversations are purged first),
        decrypted; a conversation that cannot be decrypted is listed as unreadable."""
        self.purge(subject)
        out: builtins.list[dict[str, Any]] = []
        for c in self.list(subject):
            try:
                detail = self.get(subject, c.id) if c.readable else None
            except (ConversationUnreadableError, HistoryKeyError):
                detail = None
            if detail is not None:
                out.append(detail.model_dump(mode="json"))
            else:
                out.append({**c.model_dump(mode="json"), "readable": False, "messages": []})
        return {"subject": subject, "conversations": out}


class Purger:
    """Purges expired conversations now and then every ``interval_s`` in a daemon thread,
    until ``stop``. A failure is logged (its type only: no content) and retried next time."""

    def __init__(self, store: Callable[[], ConversationStore],
                 interval_s: float = PURGE_INTERVAL_S) -> None:
        self._store = store
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="history-purge", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self._store().purge()
                if n:
                    log.info("purged %d expired conversation(s)", n)
            except Exception as exc:  # the next round tries again
                log.warning("conversation purge failed: %s", type(exc).__name__)
            self._stop.wait(self._interval)
