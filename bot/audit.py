"""The audit log: one record per request, feedback attached later. SQLite by default, any
SQLAlchemy URL (PostgreSQL) when configured. Questions are stored redacted or not at all."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

metadata = MetaData()

audit_table = Table(
    "audit",
    metadata,
    Column("request_id", String(64), primary_key=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("endpoint", String(32), nullable=False),
    Column("status", Integer, nullable=False),
    Column("role", String(16), nullable=False),
    # a signed-in person: the keyed hash of issuer and sub (bot.oidc), never a name or e-mail
    Column("subject", String(64), index=True),
    Column("level", String(16), nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("provider", String(64)),
    Column("model", String(128)),
    Column("location", String(16)),
    Column("corpora", JSON, nullable=False),
    Column("chunk_ids", JSON, nullable=False),
    Column("refused", Boolean, nullable=False),
    Column("refusal_reason", String(64)),
    Column("grounded", Boolean),
    Column("lang", String(4)),
    Column("latency_ms", Float),
    Column("question", Text),  # redacted, or NULL
    Column("outcome", String(32)),
    Column("feedback_key", String(64)),  # SHA-256 of the asker's feedback token
    Column("feedback_rating", Integer),
    Column("feedback_comment", Text),
    Column("feedback_time", DateTime(timezone=True)),
)


class AuditRecord(BaseModel):
    """One request as the audit log keeps it (the question already redacted, or None)."""

    request_id: str
    endpoint: str
    status: int
    role: str
    subject: str | None = Field(default=None, description="Pseudonymous id of a signed-in "
                                "person (a keyed hash); none for anonymous and API-key callers.")
    level: str = "public"
    reasons: list[str] = Field(default_factory=list)
    provider: str | None = None
    model: str | None = None
    location: str | None = None
    corpora: list[str] = Field(default_factory=list)
    chunk_ids: list[str] = Field(default_factory=list)
    refused: bool = False
    refusal_reason: str | None = None
    grounded: bool | None = None
    lang: str | None = None
    latency_ms: float | None = None
    question: str | None = Field(default=None, description="Redacted; never for sensitive.")
    outcome: str | None = Field(
        default=None,
        description="answered, refused, client_disconnected or error (chat requests).",
    )
    time: datetime = Field(default_factory=lambda: datetime.now(UTC))
    feedback_key: str | None = Field(default=None, exclude=True)  # stored, never shown

    def row(self, *, exclude: set[str] | None = None) -> dict[str, Any]:
        data = self.model_dump(exclude=exclude)
        data["feedback_key"] = self.feedback_key
        return {k: _clean(v) for k, v in data.items()}


def feedback_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AuditEntry(AuditRecord):
    """A stored record with the feedback given on it: what the audit view shows."""

    feedback_rating: int | None = None
    feedback_comment: str | None = Field(default=None, description="Redacted.")
    feedback_time: datetime | None = None


class UnknownRequestError(Exception):
    pass


class FeedbackNotAllowedError(Exception):
    """Feedback on a request made by someone else (the token does not match)."""


def _clean(value: Any) -> Any:
    """PostgreSQL text cannot hold NUL; a NUL in a question must not turn an answer into a 500."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)  # one zone in the table, whatever the database keeps
    return value


def _aware(row: dict[str, Any]) -> dict[str, Any]:
    """Times are written in UTC; SQLite hands them back without an offset, so put it back."""
    for k, v in row.items():
        if isinstance(v, datetime) and v.tzinfo is None:
            row[k] = v.replace(tzinfo=UTC)
    return row


def create_schema(engine: Engine, meta: MetaData, attempts: int = 3,
                  migrate: Callable[[Engine], None] | None = None) -> None:
    """create_all, safe when several workers start together on a fresh database: each checks,
    sees no table and creates it, and all but one fail (PostgreSQL: a duplicate key in pg_type;
    SQLite: "table audit already exists"). When the tables are there after such a failure,
    another worker made them and the next create_all skips them; any other error is raised.
    ``migrate`` then brings tables made by an older version up to date."""
    for attempt in range(attempts):
        try:
            meta.create_all(engine)
            if migrate is not None:
                migrate(engine)
            return
        except DBAPIError:
            have = inspect(engine)
            if attempt == attempts - 1 or not all(have.has_table(t) for t in meta.tables):
                raise


def _add_missing_columns(engine: Engine) -> None:
    """Columns added since a database was created (``outcome``, ``subject``), added in place
    with their indexes."""
    have = {c["name"] for c in inspect(engine).get_columns(audit_table.name)}
    for col in audit_table.columns:
        if col.name not in have:
            kind = col.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {audit_table.name} ADD COLUMN {col.name} {kind}")
    for index in audit_table.indexes:
        index.create(engine, checkfirst=True)


class AuditStore:
    def __init__(self, url: str) -> None:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            from pathlib import Path

            from sqlalchemy.engine import make_url

            # "sqlite://" and "sqlite:///:memory:" are in memory: no file to make
            path = make_url(url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                # questions (redacted) and conversations: readable by the service's user only
                Path(path).touch(mode=0o600, exist_ok=True)
        self.engine: Engine = create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            for attempt in range(5):  # a brand-new file opened by several workers at once
                try:
                    with self.engine.begin() as conn:
                        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
                    break
                except DBAPIError:
                    if attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        create_schema(self.engine, metadata, migrate=_add_missing_columns)

    def write(self, rec: AuditRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(audit_table).values(**rec.row()))

    def complete(self, rec: AuditRecord) -> None:
        """Replace a written record's fields (not its time or feedback) when the request ends."""
        row = rec.row(exclude={"time", "request_id"})
        with self.engine.begin() as conn:
            conn.execute(
                update(audit_table).where(audit_table.c.request_id == rec.request_id).values(**row)
            )

    def feedback(self, request_id: str, rating: int, comment: str | None,
                 token: str | None = None) -> None:
        """Store (or replace) the rating of a request. With ``token`` (what the HTTP API always
        passes) only the holder of that request's feedback token may do it."""
        stmt = update(audit_table).where(audit_table.c.request_id == request_id)
        if token is not None:
            stmt = stmt.where(audit_table.c.feedback_key == feedback_key(token))
        with self.engine.begin() as conn:
            res = conn.execute(stmt.values(feedback_rating=rating, feedback_comment=_clean(comment),
                                           feedback_time=datetime.now(UTC)))
        if res.rowcount == 0:
            if token is not None and self.get(request_id) is not None:
                raise FeedbackNotAllowedError(request_id)
            raise UnknownRequestError(request_id)

    def get(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(audit_table).where(audit_table.c.request_id == request_id)
            ).mappings().first()
        return _aware(dict(row)) if row else None

    def query(self, level: str | None = None, provider: str | None = None,
              refused: bool | None = None, limit: int = 200) -> list[dict[str, Any]]:
        stmt = select(audit_table).order_by(audit_table.c.time.desc()).limit(limit)
        if level:
            stmt = stmt.where(audit_table.c.level == level)
        if provider:
            stmt = stmt.where(audit_table.c.provider == provider)
        if refused is not None:
            stmt = stmt.where(audit_table.c.refused == refused)
        with self.engine.connect() as conn:
            return [_aware(dict(r)) for r in conn.execute(stmt).mappings()]

    def by_subject(self, subject: str) -> list[dict[str, Any]]:
        """Every record of one signed-in person (what an access request returns)."""
        stmt = (select(audit_table).where(audit_table.c.subject == subject)
                .order_by(audit_table.c.time))
        with self.engine.connect() as conn:
            rows = [_aware(dict(r)) for r in conn.execute(stmt).mappings()]
        for r in rows:
            r.pop("feedback_key", None)
        return rows

    def count(self) -> int:
        with self.engine.connect() as conn:
            return len(conn.execute(select(audit_table.c.request_id)).all())

    def purge(self, older_than_days: int) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        with self.engine.begin() as conn:
            res = conn.execute(delete(audit_table).where(audit_table.c.time < cutoff))
            return int(res.rowcount)

    def export(self, fmt: str = "json") -> str:
        rows = self.query(limit=10**9)
        for r in rows:
            for k, v in list(r.items()):
                if isinstance(v, datetime):
                    r[k] = v.isoformat()
        if fmt == "json":
            return json.dumps(rows, ensure_ascii=False, indent=1)
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]))
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict)
                            else v for k, v in r.items()})
        return buf.getvalue()
