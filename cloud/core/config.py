"""Settings of the cloud service: one ``BaseSettings`` object read from the environment.

Every field can be set with ``MARLIDS_CLOUD_<FIELD>``; the conventional variables ``DATABASE_URL``,
``OPENAI_BASE_URL``, ``OPENAI_MODEL`` and ``OPENAI_API_KEY`` are honoured too. Nothing is read at
import time: call :func:`get_settings` (cached) or build ``Settings(...)`` explicitly (tests do).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Typed configuration of the analyst API (every field is documented by its ``description``).

    Attributes
    ----------
    database_url : str
        SQLAlchemy URL. Default: a SQLite file (WAL journal) in the working directory.
        ``postgresql://user@host:port/db`` (psycopg 3) selects PostgreSQL.
    bootstrap_keys_file : Path or None
        JSON ``{"ingest": key, "analyst": key}`` registered at start-up (created when missing).
    ingest_key, analyst_key : SecretStr or None
        Keys registered at start-up from ``MARLIDS_INGEST_KEY`` / ``MARLIDS_ANALYST_KEY``.
    """

    model_config = SettingsConfigDict(env_prefix="MARLIDS_CLOUD_", extra="ignore", populate_by_name=True)

    database_url: str = Field(
        "sqlite:///./marlids-cloud.db",
        validation_alias=AliasChoices("DATABASE_URL", "MARLIDS_CLOUD_DATABASE_URL"),
        description="SQLAlchemy database URL (SQLite file by default, PostgreSQL via DATABASE_URL).",
    )
    sqlite_synchronous: str = Field("FULL", description="SQLite PRAGMA synchronous (FULL: durable commits).")
    host: str = Field("127.0.0.1", description="Address `marlids cloud serve` binds.")
    port: int = Field(8080, ge=0, le=65535, description="Port `marlids cloud serve` binds (0: any free port).")
    tls_cert: Path | None = Field(None, description="Serve HTTPS with this certificate chain (PEM); needs tls_key.")
    tls_key: Path | None = Field(None, description="Private key (PEM) of tls_cert.")
    cookie_secure: bool | None = Field(
        None, description="Force the dashboard cookie's Secure flag on or off; unset = on exactly when the request "
                          "came over HTTPS (set true behind a TLS-terminating proxy).")
    cors_origins: list[str] = Field(default_factory=list,
                                    description="Origins allowed by CORS; empty (the default) = CORS off.")
    auto_migrate: bool = Field(True, description="Run Alembic migrations to head at start-up.")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body accepted (413 beyond).")
    bootstrap_keys_file: Path | None = Field(
        None, description="JSON {'ingest': key, 'analyst': key} registered at start-up; created (0600) if missing.")
    ingest_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MARLIDS_INGEST_KEY", "MARLIDS_CLOUD_INGEST_KEY"),
        description="An ingest key registered at start-up (the fog reads the same variable to post).")
    analyst_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MARLIDS_ANALYST_KEY", "MARLIDS_CLOUD_ANALYST_KEY"),
        description="An analyst key registered at start-up.")

    ingest_batch_max: int = Field(512, ge=1, le=10_000, description="Most alerts committed in one transaction.")
    ingest_queue_max: int = Field(100_000, ge=1, description="Alerts waiting for the writer before 503.")
    key_cache_s: float = Field(30.0, ge=0, description="Seconds a verified API key stays cached in memory.")

    explain: bool = Field(True, description="Generate explanations in the background.")
    explain_workers: int = Field(1, ge=1, le=32, description="Background explanation threads (and processes).")
    explain_in_process: bool = Field(
        True, description="Explain in spawned processes (the API process keeps its CPU for requests); "
                          "false = in threads of the API process.")
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_BASE_URL", "MARLIDS_CLOUD_OPENAI_BASE_URL"),
        description="OpenAI-compatible server; unset = built-in explainer only.")
    llm_model: str | None = Field(
        None, validation_alias=AliasChoices("OPENAI_MODEL", "MARLIDS_CLOUD_LLM_MODEL"),
        description="Model name sent to the OpenAI-compatible server.")
    openai_api_key: str = Field(
        "not-needed", validation_alias=AliasChoices("OPENAI_API_KEY", "MARLIDS_CLOUD_OPENAI_API_KEY"),
        description="API key for the OpenAI-compatible server (local servers ignore it).")
    llm_timeout_s: float = Field(30.0, gt=0, description="Timeout of one chat-completions call, seconds.")
    llm_json_mode: bool = Field(True, description="Ask for response_format=json_object.")
    llm_max_tokens: int = Field(1024, ge=64, le=32_768,
                                description="Cap on the tokens of one model answer (a model that never closes its "
                                            "JSON stops there instead of keeping a local server busy).")
    untrusted_max_chars: int = Field(160, ge=8, le=4096,
                                     description="Cap on each attacker-controlled string sent to the model.")
    untrusted_max_items: int = Field(8, ge=0, le=64,
                                     description="Cap on attacker-controlled strings per evidence field.")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError(f"tls_cert={self.tls_cert} and tls_key={self.tls_key}: give both (HTTPS) or neither")
        return self

    @property
    def tls(self) -> bool:
        """True when the API is served over HTTPS by uvicorn itself."""
        return self.tls_cert is not None

    @property
    def llm_enabled(self) -> bool:
        """True when both an OpenAI-compatible base URL and a model are configured."""
        return bool(self.openai_base_url and self.llm_model)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
