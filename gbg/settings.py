"""The one settings object for every part of gbg-assist.

Read from the environment (prefix ``GBG_``, nested with ``__``, e.g. ``GBG_CHROMA__HOST``) and
from an optional ``gbg.env`` file. Settings are created at the edge (the CLI, the app factory) and
passed in; nothing reads the environment at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gbg.labels import Role, Sensitivity


class ChromaSettings(BaseModel):
    """Where chunks live: an embedded PersistentClient unless ``host`` is set."""

    path: Path | None = Field(
        default=None, description="Folder of the embedded store (default: <data_dir>/chroma)."
    )
    host: str | None = Field(default=None, description="Chroma server host; enables HTTP mode.")
    port: int = Field(default=8000, ge=1, le=65535)
    ssl: bool = False
    auth_token: SecretStr | None = None
    timeout_s: float = Field(
        default=5.0, gt=0,
        description="Per call to a Chroma server: a dead or hung server costs a request at most "
        "this long before it is answered with 503.",
    )


class EmbedderSettings(BaseModel):
    backend: Literal["e5", "sentence-transformers", "ollama", "openai"] = "e5"
    model: str | None = Field(
        default=None,
        description="sentence-transformers model name or local path; the model name on an "
        "Ollama or OpenAI-compatible embedding server (ignored for e5).",
    )
    batch_size: int = Field(default=32, ge=1, le=1024)
    base_url: str | None = Field(
        default=None, description="Embedding server: Ollama (http://gpu-node:11434) or an "
        "OpenAI-compatible /v1 endpoint (Text Embeddings Inference, vLLM, llama.cpp server).")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the server's API key, if any.")
    timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=2, ge=0, le=10,
                         description="Retries on a connection error, 429 or 5xx, with backoff.")
    query_prefix: str = Field(
        default="", description='Prepended to questions (e5 models want "query: ").')
    passage_prefix: str = Field(
        default="", description='Prepended to passages (e5 models want "passage: ").')
    location: Literal["local", "cloud"] | None = Field(
        default=None,
        description="Where the embedding server runs. A server on the city's own machines is "
        "cleared for every corpus; a cloud endpoint only for public corpora, and never for the "
        "bot, whose questions can carry personal data. Unset: an OpenAI-compatible endpoint is "
        "taken for a cloud one (say `local` for your own TEI or vLLM), the rest are local.")

    @property
    def where(self) -> Literal["local", "cloud"]:
        return self.location or ("cloud" if self.backend == "openai" else "local")
    cache: bool = Field(
        default=True,
        description="Embed each passage once per embedder and exact text: vectors are kept in "
        "<data_dir>/embed-cache and read from the pack shipped with the bundled corpora.",
    )


class ChunkSettings(BaseModel):
    max_tokens: int = Field(default=256, ge=32, le=512)
    overlap_tokens: int = Field(default=32, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        return self


class WebSettings(BaseModel):
    user_agent: str = "gbg-assist-ingest/0.1 (+https://goteborg.se)"
    min_delay_s: float = Field(default=1.0, ge=0, description="Pause between requests to a host.")
    timeout_s: float = Field(default=15.0, gt=0)
    max_pages: int = Field(default=500, ge=1, description="Upper bound per sitemap source.")
    max_bytes: int = Field(
        default=10_000_000, ge=1024, description="Largest body; cut off while it streams in."
    )
    deadline_s: float = Field(
        default=60.0, gt=0,
        description="Overall time for one URL (robots.txt, redirects and the whole body).",
    )
    max_redirects: int = Field(default=5, ge=0, le=20)
    allow_networks: list[str] = Field(
        default=[],
        description="CIDR networks that web ingest may reach although they are loopback, "
        "private, link-local or otherwise not public (e.g. an intranet '10.20.0.0/16'). "
        "Empty: public addresses only.",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        out = []
        for net in value:
            try:
                out.append(str(ipaddress.ip_network(net.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network such as '10.0.0.0/8'") from exc
        return out


class FileLimits(BaseModel):
    """Per-file budgets for local files and fetched pages (``GBG_FILES__*``)."""

    max_bytes: int = Field(default=50_000_000, ge=1, description="Largest file read, in bytes.")
    max_unpacked_bytes: int = Field(
        default=100_000_000,
        ge=1,
        description="Largest total uncompressed size a DOCX (zip) archive may declare.",
    )
    max_chars: int = Field(
        default=2_000_000, ge=1, description="Most characters of text in one document (~600 pages)."
    )
    max_front_matter_bytes: int = Field(default=20_000, ge=1)
    max_seconds: float = Field(
        default=60.0, gt=0, description="Time to load and chunk one file (or fetched page)."
    )


class RetrievalSettings(BaseModel):
    k: int = Field(default=5, ge=1, le=50, description="Chunks returned per query.")
    # The fusion defaults are the cross-validated choice of `python -m eval.tune_retrieval`
    # (SweQUAD-MC, SweFAQ and the gold set's fit part, held-out folds).
    candidates: int = Field(default=80, ge=1, le=500, description="Per retriever, before fusion.")
    mode: Literal["hybrid", "dense", "bm25"] = "hybrid"
    fusion: Literal["rrf", "zscore"] = Field(
        default="zscore",
        description="rrf: reciprocal rank fusion; zscore: weighted sum of z-normalised scores.",
    )
    rrf_k: int = Field(default=60, ge=1)
    dense_weight: float = Field(default=1.0, ge=0)
    bm25_weight: float = Field(default=0.75, ge=0)
    dedupe_threshold: float = Field(
        default=0.9, gt=0, le=1, description="Token Jaccard above which chunks are duplicates."
    )
    neighbors: int = Field(default=0, ge=0, le=3, description="Add adjacent chunks of a hit.")
    refresh_s: float = Field(
        default=5.0, ge=0, description="How often to check whether a collection changed."
    )
    rebuild_in_background: bool = Field(
        default=True,
        description="After an ingest, keep serving the previous BM25 index while the new one "
        "is built in the background (false: the request that notices the change waits).",
    )


class ProviderSettings(BaseModel):
    """One LLM provider. ``clearance`` is the highest sensitivity it may see; unset means
    ``public`` for a cloud provider and ``sensitive`` for one on the city's own machines."""

    kind: Literal["ollama", "openai", "llamacpp", "extractive"]
    model: str = ""
    base_url: str | None = None
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Env var holding the key.")
    location: Literal["local", "cloud"] | None = Field(
        default=None, description="Where it runs; default: openai=cloud, the others local."
    )
    clearance: Literal["public", "internal", "sensitive"] | None = None
    temperature: float = 0.1
    max_tokens: int = Field(default=400, ge=16, le=4096)
    timeout_s: float = Field(default=60.0, gt=0)
    keep_alive: str = "10m"
    num_ctx: int = Field(default=4096, ge=512)
    model_path: Path | None = Field(default=None, description="GGUF file for llamacpp.")
    n_threads: int | None = None

    @property
    def where(self) -> Literal["local", "cloud"]:
        return self.location or ("cloud" if self.kind == "openai" else "local")

    @property
    def cleared_for(self) -> Literal["public", "internal", "sensitive"]:
        if self.clearance:
            return self.clearance
        return "public" if self.where == "cloud" else "sensitive"


class LLMSettings(BaseModel):
    providers: dict[str, ProviderSettings] = Field(
        default_factory=lambda: {"extractive": ProviderSettings(kind="extractive")}
    )
    preference: list[str] = Field(
        default_factory=lambda: ["ollama", "llamacpp", "openai", "extractive"],
        description="Order in which cleared, available providers are tried.",
    )
    health_ttl_s: float = Field(default=10.0, ge=0, description="Cache of provider health.")


class BotSettings(BaseModel):
    max_message_chars: int = Field(default=4000, ge=1)
    max_turns: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=64_000, ge=1024)
    max_header_bytes: int = Field(
        default=16_384, ge=1024, description="All request headers together; more is a 431."
    )
    max_headers: int = Field(default=64, ge=8, description="Header lines; more is a 431.")
    min_relevance: float = Field(
        default=0.80, description="Top dense similarity below which the bot says it does not know."
    )
    min_relevance_other_languages: float = Field(
        default=0.76, ge=0, le=1,
        description="The same floor for a question in a language the sources are not written "
        "in: e5 similarities across languages run lower (an Arabic question over its Swedish "
        "answer scores about 0.80).",
    )
    answerability_threshold: float | None = Field(
        default=None, ge=0, le=1,
        description="The calibrated probability that the retrieved sources answer the question "
        "below which every provider is skipped and the bot says it does not know; higher refuses "
        "more and is wrong less often. None: the threshold fitted with the model "
        "(bot/data/answerability.json, by eval/fit_answerability.py).",
    )
    answerability_threshold_other_languages: float | None = Field(
        default=None, ge=0, le=1,
        description="The same for questions in languages the sources are not written in "
        "(German, Arabic, ...), which have their own model (bot/data/answerability_xl.json). "
        "None: the threshold fitted with that model.",
    )
    contact: str = "Göteborgs Stads kontaktcenter, 031-365 00 00, goteborg.se"
    warm_up: bool = Field(
        default=True,
        description="Build the service and every role's BM25 index when a worker starts, "
        "before it accepts requests.",
    )
    threads: int = Field(
        default=4, ge=1, le=200,
        description="Requests a worker handles at once; the rest wait their turn in order. "
        "Few for CPU-bound answering (extractive); more (e.g. 32) when a generative provider "
        "makes requests wait on the model.",
    )
    workers: int = Field(
        default=1, ge=1, le=64,
        description="API worker processes for `gbg serve`; more than one needs a Chroma server.",
    )
    shutdown_timeout_s: float = Field(
        default=20.0, ge=0,
        description="On SIGTERM: stop accepting, let requests in flight finish for this long.",
    )
    rate_per_key: str | None = Field(
        default="120/minute",
        description="Requests per signed-in key (a `limits` string, e.g. '120/minute'); "
        "empty or null: no limit.",
    )
    rate_per_address: str | None = Field(
        default="30/minute",
        description="Requests per client address for anonymous callers (and invalid keys).",
    )
    rate_storage: str = Field(
        default="memory://",
        description="Where counters live: 'memory://' (per worker) or a shared store such as "
        "'redis://host:6379' so that every worker counts together.",
    )
    forwarded_allow_ips: str = Field(
        default="127.0.0.1",
        description="Peers whose X-Forwarded-For is trusted as the client address (the load "
        "balancer, the UI). Comma-separated addresses or networks; '*' trusts everyone.",
    )

    @model_validator(mode="after")
    def _rates_parse(self) -> BotSettings:
        from limits import parse

        for name in ("rate_per_key", "rate_per_address"):
            value = getattr(self, name)
            if value in ("", "0", "none", "off"):
                setattr(self, name, None)
            elif value is not None:
                try:
                    parse(value)
                except ValueError as exc:
                    raise ValueError(
                        f"{name}: {value!r} is not a rate such as '30/minute'") from exc
        return self


class AuditSettings(BaseModel):
    url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite at <data_dir>/audit.db."
    )
    store_question: Literal["redacted", "none"] = "redacted"
    retention_days: int = Field(default=180, ge=1)


ASYMMETRIC_ALGORITHMS = frozenset({
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


class OIDCSettings(BaseModel):
    """Sign-in with the city's OpenID Connect provider (Entra ID, Keycloak, ...). The bot checks
    the ID tokens the UI sends; the UI signs people in with the same provider."""

    issuer: str = Field(description="The provider's issuer URL (its discovery document is at "
                                    "<issuer>/.well-known/openid-configuration).")
    client_id: str = Field(description="The UI's client id: the audience the bot accepts.")
    audiences: list[str] = Field(
        default_factory=list, description="More accepted audiences (API clients).")
    client_secret_env: str = Field(
        default="GBG_OIDC_CLIENT_SECRET", description="Environment variable with the UI's "
        "client secret (never in a settings file).")
    role_claim: str = Field(default="groups", description="The claim that holds the groups "
                                                          "or roles (a list or a string).")
    group_roles: dict[str, Role] = Field(
        default_factory=dict, description="Group (or role) name -> public, staff or care; the "
        "highest role among a person's groups applies; none mapped means public.")
    admin_groups: list[str] = Field(default_factory=list,
                                    description="Groups that may read the audit log.")
    algorithms: list[str] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in ASYMMETRIC_ALGORITHMS]
        if bad or not v:
            raise ValueError(f"algorithms {bad or v} not accepted: only the provider's public "
                             f"keys can check a token ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})")
        return v
    leeway_s: int = Field(default=60, ge=0, le=600, description="Clock skew allowed on "
                                                               "exp/nbf/iat.")
    jwks_cache_s: int = Field(default=3600, ge=0, description="How long fetched keys are "
                              "trusted; an unknown key id fetches them again (rotation).")
    jwks_refresh_min_s: float = Field(default=10.0, ge=0, description="Least time between two "
                                      "fetches caused by unknown key ids.")
    timeout_s: float = Field(default=5.0, gt=0)
    redirect_uri: str | None = Field(
        default=None, description="The UI's callback: <UI URL>/oauth2callback "
        "(default: http://localhost:<ui port>/oauth2callback).")
    scopes: str = "openid profile email"


class AuthSettings(BaseModel):
    keys_file: Path | None = Field(
        default=None, description="Hashed API keys (default: <data_dir>/keys.json)."
    )
    oidc: OIDCSettings | None = Field(default=None, description="Sign-in with OpenID Connect.")
    subject_key_env: str = Field(
        default="GBG_SUBJECT_KEY", description="Environment variable with the key that "
        "pseudonymises signed-in subjects (default: a key kept at <data_dir>/subject.key).")
    api_key_field: bool | None = Field(
        default=None, description="The UI's API-key field (development, or a city without an "
        "identity provider); default: shown only when no OIDC provider is configured.")


class HistorySettings(BaseModel):
    """Conversations of signed-in people, kept server-side for as long as the most sensitive
    thing said in them allows."""

    enabled: bool = True
    retention_hours: dict[Sensitivity, float] = Field(
        default_factory=lambda: {Sensitivity.public: 30 * 24.0, Sensitivity.internal: 7 * 24.0,
                                 Sensitivity.sensitive: 24.0},
        description="Hours a conversation is kept after its last message, by its highest "
                    "level; 0 means not stored at all.")
    key_env: str = Field(
        default="GBG_HISTORY_KEY", description="Environment variable with the Fernet key that "
        "encrypts stored conversations; without it sensitive ones are not stored.")
    max_conversations: int = Field(default=200, ge=1, description="Per person; the oldest go.")
    max_turns: int = Field(default=100, ge=1, description="Questions per conversation; the "
                           "next one starts a new conversation.")

    @field_validator("retention_hours")
    @classmethod
    def _finite(cls, v: dict[Sensitivity, float]) -> dict[Sensitivity, float]:
        for level, hours in v.items():
            if not 0 <= hours < 24 * 366 * 10:
                raise ValueError(f"retention_hours[{level.value}] = {hours}: give 0 (not "
                                 "stored) up to ten years, in hours")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GBG_",
        env_nested_delimiter="__",
        env_file="gbg.env",
        extra="ignore",
    )

    data_dir: Path = Path(".gbg")
    corpora_dir: Path = Path("corpora")
    chroma: ChromaSettings = ChromaSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    chunking: ChunkSettings = ChunkSettings()
    web: WebSettings = WebSettings()
    files: FileLimits = FileLimits()
    retrieval: RetrievalSettings = RetrievalSettings()
    llm: LLMSettings = LLMSettings()
    bot: BotSettings = BotSettings()
    audit: AuditSettings = AuditSettings()
    auth: AuthSettings = AuthSettings()
    history: HistorySettings = HistorySettings()
    development: bool = Field(
        default=False, description="Development mode: allows an OIDC issuer over plain HTTP "
        "(a provider on this machine).")

    @property
    def chroma_path(self) -> Path:
        return self.chroma.path or (self.data_dir / "chroma")

    @property
    def audit_url(self) -> str:
        return self.audit.url or f"sqlite:///{(self.data_dir / 'audit.db').resolve()}"

    @property
    def keys_path(self) -> Path:
        return self.auth.keys_file or (self.data_dir / "keys.json")

    @model_validator(mode="after")
    def _cloud_never_sensitive(self) -> Settings:
        for name, p in self.llm.providers.items():
            if p.where == "cloud" and p.cleared_for == "sensitive":
                raise ValueError(
                    f"provider {name!r} runs in the cloud and cannot be cleared for sensitive "
                    "data; clear it for 'internal' at most"
                )
        return self

    @model_validator(mode="after")
    def _issuer_over_https(self) -> Settings:
        oidc = self.auth.oidc
        if oidc is not None and not oidc.issuer.startswith("https://") and not self.development:
            raise ValueError(
                f"auth.oidc.issuer {oidc.issuer!r} is not HTTPS: tokens and keys must come over "
                "TLS (GBG_DEVELOPMENT=true allows plain HTTP for a provider on this machine)"
            )
        if oidc is not None and oidc.redirect_uri and not oidc.redirect_uri.startswith(
                "https://") and not self.development:
            raise ValueError(f"auth.oidc.redirect_uri {oidc.redirect_uri!r} is not HTTPS")
        return self

    @model_validator(mode="after")
    def _workers_need_a_server(self) -> Settings:
        if self.bot.workers > 1 and not self.chroma.host:
            raise ValueError(
                "bot.workers > 1 needs a Chroma server (GBG_CHROMA__HOST): the embedded store "
                "is one process's"
            )
        return self
