"""Injected dependencies with short ``Annotated`` aliases (tests swap them via ``dependency_overrides``).

Authentication: an API key in ``Authorization: Bearer <key>`` (what the fog sends), in ``X-API-Key``,
or — for the dashboard — in the ``marlids_key`` cookie set by ``POST /dashboard/session``. Cookie-authenticated
requests that change state must also send ``X-Requested-With: marlids`` (a header no cross-site form can
set; with CORS off, no cross-site script can either).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPBearer
from pydantic import BeforeValidator
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.metrics import Metrics
from cloud.core.security import Role, hash_api_key
from cloud.models import ApiKeyRow
from cloud.services.attack import AttackTable

COOKIE_NAME = "marlids_key"
CSRF_HEADER = "X-Requested-With"
_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _iso_only(value: Any) -> Any:
    """Refuse numbers: pydantic would read a large one as milliseconds, a small one as seconds."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.match(value)):
        raise ValueError(f"{value!r} is a number; give an ISO 8601 time such as 2025-11-24T16:00:00Z "
                         "(naive times are UTC)")
    return value


#: A time in a query: ISO 8601 only (naive = UTC), never a bare number (seconds? milliseconds?).
TimeQuery = Annotated[datetime, BeforeValidator(_iso_only)]


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


def get_session(request: Request) -> Iterator[Session]:
    """A database session for one request (a sync dependency: it runs in the thread pool with the route)."""
    with request.app.state.session_factory() as session:
        yield session


# The accessors below are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a thread
# pool, a thread hop per dependency per request.
async def get_attack_table(request: Request) -> AttackTable:
    """The bundled ATT&CK table."""
    return request.app.state.attack_table


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


async def get_key_store(request: Request) -> KeyStore:
    """The app's API-key store."""
    return request.app.state.key_store


SessionDep = Annotated[Session, Depends(get_session)]
AttackDep = Annotated[AttackTable, Depends(get_attack_table)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
KeyStoreDep = Annotated[KeyStore, Depends(get_key_store)]


def _unauthorized(metrics: Metrics, detail: str) -> HTTPException:
    metrics.auth_failures.inc()
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def get_current_principal(request: Request) -> Principal:
    """The caller, from its API key (``Authorization: Bearer``, ``X-API-Key`` or the dashboard cookie).

    Raises
    ------
    HTTPException
        401 without a valid, unrevoked key; 403 for a cookie-borne change without the CSRF header.
    """
    store: KeyStore = request.app.state.key_store
    metrics: Metrics = request.app.state.metrics
    headers = request.headers
    key, via_cookie = _bearer_token(headers.get("authorization")) or headers.get("x-api-key"), False
    if not key:
        cookie = request.cookies.get(COOKIE_NAME) if "cookie" in headers else None
        key, via_cookie = cookie, bool(cookie)
    if not key:
        raise _unauthorized(metrics, "missing API key: send Authorization: Bearer <key> or X-API-Key: <key>")
    if len(key) > 256:
        raise _unauthorized(metrics, "invalid API key")
    hit, principal = store.cached(key)
    if not hit:
        principal = await run_in_threadpool(store.lookup, key)
    if principal is None:
        raise _unauthorized(metrics, "invalid or revoked API key")
    if via_cookie:
        if request.method not in ("GET", "HEAD", "OPTIONS") and headers.get(CSRF_HEADER) != "marlids":
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"cookie-authenticated changes need the header {CSRF_HEADER}: marlids")
        principal = Principal(principal.key_id, principal.name, principal.role, via_cookie=True)
    return principal


class ApiKeyAuth(HTTPBearer):
    """The one authentication dependency: an API key, optionally of one role (403 for another role).

    It is an ``HTTPBearer`` so the OpenAPI document declares bearer authentication (what the fog and
    Prometheus send); ``X-API-Key`` and the dashboard cookie are accepted too. One dependency instead
    of a chain keeps FastAPI's per-request dependency work small on the ingest path.

    Parameters
    ----------
    role : Role, optional
        The role the endpoint needs; None accepts any valid key.
    """

    def __init__(self, role: Role | None = None) -> None:
        super().__init__(scheme_name="ApiKey", auto_error=False,
                         description="An API key as `Authorization: Bearer <key>` (or `X-API-Key: <key>`); "
                                     "roles: ingest (POST alerts), analyst (everything else).")
        self.role = role

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        principal = await get_current_principal(request)
        if self.role is not None and principal.role is not self.role:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"this endpoint needs a key with role '{self.role.value}'; "
                                       f"yours has role '{principal.role.value}'")
        return principal


PrincipalDep = Annotated[Principal, Security(ApiKeyAuth())]
IngestDep = Annotated[Principal, Security(ApiKeyAuth(Role.ingest))]
AnalystDep = Annotated[Principal, Security(ApiKeyAuth(Role.analyst))]
