"""Injected dependencies with short ``Annotated`` aliases (tests swap them via ``dependency_overrides``).

Authentication: an API key in ``X-API-Key``, in ``Authorization: Bearer <key>``, or — for the
dashboard only — in the ``marlids_key`` cookie set by ``POST /dashboard/session``. Cookie-authenticated
requests that change state must also send ``X-Requested-With: marlids`` (a header no cross-site form can
set; with CORS off, no cross-site script can either).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.metrics import Metrics
from cloud.core.config import Settings
from cloud.core.security import Role, hash_api_key
from cloud.models import ApiKeyRow
from cloud.services.attack import AttackTable
from cloud.services.worker import ExplanationWorker
from cloud.services.writer import AlertWriter

COOKIE_NAME = "marlids_key"
CSRF_HEADER = "X-Requested-With"

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key (ingest or analyst role).")
bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token (e.g. for Prometheus).")
api_key_cookie = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Dashboard session cookie.")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and role, and how the key came."""

    key_id: int
    name: str
    role: Role
    via_cookie: bool = False


class KeyStore:
    """Looks API keys up by digest, caching hits for ``ttl_s`` seconds.

    Parameters
    ----------
    session_factory : sessionmaker
        Database sessions.
    ttl_s : float
        How long a verified key is trusted without asking the database (revocation delay).
    """

    def __init__(self, session_factory: sessionmaker[Session], ttl_s: float = 30.0) -> None:
        self.session_factory = session_factory
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """``(hit, principal)`` from the cache alone."""
        entry = self._cache.get(hash_api_key(key))
        if entry is not None and entry[0] > time.monotonic():
            return True, entry[1]
        return False, None

    def lookup(self, key: str) -> Principal | None:
        """The principal of ``key``, or None for an unknown or revoked key (blocking: DB access)."""
        digest = hash_api_key(key)
        with self.session_factory() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        principal = None if row is None or row.revoked else Principal(row.id, row.name, Role(row.role))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + self.ttl_s, principal)
        return principal


def get_settings_dep(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request."""
    with request.app.state.session_factory() as session:
        yield session


def get_writer(request: Request) -> AlertWriter:
    """The app's group-commit writer."""
    return request.app.state.writer


def get_worker(request: Request) -> ExplanationWorker | None:
    """The app's explanation worker (None when explanations are off)."""
    return request.app.state.worker


def get_attack_table(request: Request) -> AttackTable:
    """The bundled ATT&CK table."""
    return request.app.state.attack_table


def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


def get_key_store(request: Request) -> KeyStore:
    """The app's API-key store."""
    return request.app.state.key_store


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
WriterDep = Annotated[AlertWriter, Depends(get_writer)]
WorkerDep = Annotated[ExplanationWorker | None, Depends(get_worker)]
AttackDep = Annotated[AttackTable, Depends(get_attack_table)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
KeyStoreDep = Annotated[KeyStore, Depends(get_key_store)]


def _unauthorized(metrics: Metrics, detail: str) -> HTTPException:
    metrics.auth_failures.inc()
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def get_current_principal(
    request: Request,
    store: KeyStoreDep,
    metrics: MetricsDep,
    header_key: Annotated[str | None, Depends(api_key_header)],
    bearer_key: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    cookie_key: Annotated[str | None, Depends(api_key_cookie)],
) -> Principal:
    """The caller, from its API key; 401 without a valid one."""
    key, via_cookie = header_key or (bearer_key.credentials if bearer_key else None), False
    if not key and cookie_key:
        key, via_cookie = cookie_key, True
    if not key:
        raise _unauthorized(metrics, "missing API key: send X-API-Key or Authorization: Bearer <key>")
    if len(key) > 256:
        raise _unauthorized(metrics, "invalid API key")
    hit, principal = store.cached(key)
    if not hit:
        principal = await run_in_threadpool(store.lookup, key)
    if principal is None:
        raise _unauthorized(metrics, "invalid or revoked API key")
    if via_cookie:
        if request.method not in ("GET", "HEAD", "OPTIONS") and request.headers.get(CSRF_HEADER) != "marlids":
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"cookie-authenticated changes need the header {CSRF_HEADER}: marlids")
        principal = Principal(principal.key_id, principal.name, principal.role, via_cookie=True)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_current_principal)]


def require_role(role: Role):
    """Dependency that lets only keys with ``role`` through (403 otherwise)."""

    async def _check(principal: PrincipalDep) -> Principal:
        if principal.role is not role:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"this endpoint needs a key with role '{role.value}'; "
                                       f"yours has role '{principal.role.value}'")
        return principal

    _check.__name__ = f"require_{role.value}"
    return _check


IngestDep = Annotated[Principal, Depends(require_role(Role.ingest))]
AnalystDep = Annotated[Principal, Depends(require_role(Role.analyst))]
