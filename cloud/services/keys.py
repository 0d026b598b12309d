"""API-key management: create, register, list and revoke keys; only SHA-256 digests reach the database.

Two ways to give a deployment its first keys without a database shell:

* a **bootstrap file** (``marlids cloud serve --bootstrap-keys FILE``): a JSON object
  ``{"ingest": "<key>", "analyst": "<key>"}``. When the file is missing the service creates both keys
  and writes the file (mode 0600); when it exists its keys are registered (idempotent).
* **environment variables** ``MARLIDS_INGEST_KEY`` / ``MARLIDS_ANALYST_KEY``: registered at start-up,
  so the fog (which reads ``MARLIDS_INGEST_KEY`` to post) and the cloud can share one value.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.core.security import Role, hash_api_key, new_api_key
from cloud.models import ApiKeyRow

#: A key supplied by the user must be long enough that an unsalted digest is safe (no dictionary).
MIN_KEY_CHARS = 24
KEY_PATTERN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")


@dataclass(frozen=True)
class KeyInfo:
    """A stored key without its secret."""

    id: int
    name: str
    role: str
    created_at_us: int
    revoked: bool


def _role(role: str | Role) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ValueError(f"role={role!r}; allowed: {', '.join(r.value for r in Role)}") from None


def validate_key(key: str) -> str:
    """Check a user-supplied key: at least :data:`MIN_KEY_CHARS` URL-safe characters, at most 256.

    Raises
    ------
    ValueError
        Naming what is wrong (never echoing the key).
    """
    if not isinstance(key, str) or not MIN_KEY_CHARS <= len(key) <= 256:
        raise ValueError(f"an API key must have {MIN_KEY_CHARS}–256 characters "
                         f"(got {len(key) if isinstance(key, str) else type(key).__name__})")
    if not KEY_PATTERN.match(key):
        raise ValueError("an API key may only contain letters, digits and . _ ~ + / = -")
    return key


def register_key(session_factory: sessionmaker[Session], name: str, role: str | Role,
                 key: str | None = None) -> tuple[int, str]:
    """Store the digest of ``key`` (a fresh random key when None) with ``role``; idempotent.

    Parameters
    ----------
    session_factory : sessionmaker
        Sessions on the service's database (migrated).
    name : str
        A label for people (``fog-site-a``, ``alice``).
    role : {"ingest", "analyst"}
    key : str, optional
        A key chosen elsewhere (see :func:`validate_key`); registering the same key again with the
        same role is a no-op that returns the existing row.

    Returns
    -------
    (id, key)
        The row id and the key in clear (show it once; only its digest is stored).

    Raises
    ------
    ValueError
        For a bad role, name or key, or a key already registered with another role.
    """
    role = _role(role)
    if not NAME_PATTERN.match(name or ""):
        raise ValueError(f"name={name!r}: use 1–128 letters, digits and . _ @ : - (starting with a letter/digit)")
    key = new_api_key() if key is None else validate_key(key)
    digest = hash_api_key(key)
    with session_factory() as session:
        row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row is None:
            row = ApiKeyRow(name=name, key_hash=digest, role=role.value, created_at_us=int(time.time() * 1e6),
                            revoked=False)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # registered concurrently by another process
                session.rollback()
                row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
        if row.role != role.value:
            raise ValueError(f"this key is already registered with role {row.role!r} (id {row.id}); "
                             f"one key has one role")
        if row.revoked:
            raise ValueError(f"this key (id {row.id}) was revoked; create a new one")
        return row.id, key


def list_keys(session_factory: sessionmaker[Session]) -> list[KeyInfo]:
    """Every stored key (digests are not returned)."""
    with session_factory() as session:
        return [KeyInfo(r.id, r.name, r.role, r.created_at_us, r.revoked)
                for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]


def revoke_key(session_factory: sessionmaker[Session], key_id: int) -> None:
    """Revoke key ``key_id`` (running services notice within their key-cache time).

    Raises
    ------
    ValueError
        When no key has that id.
    """
    with session_factory() as session:
        row = session.get(ApiKeyRow, key_id)
        if row is None:
            raise ValueError(f"no API key with id {key_id}")
        row.revoked = True
        session.commit()


def bootstrap_keys(session_factory: sessionmaker[Session], path: Path) -> dict[str, str]:
    """Register the keys in the bootstrap file ``path``, creating the file (mode 0600) when missing.

    Returns
    -------
    dict
        ``{"ingest": key, "analyst": key}``.

    Raises
    ------
    ValueError
        When the file is not a JSON object with string ``ingest`` and ``analyst`` keys.
    """
    path = Path(path)
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"bootstrap key file {path} is not JSON: {exc}") from None
        if not isinstance(data, dict) or not all(isinstance(data.get(r.value), str) for r in Role):
            raise ValueError(f"bootstrap key file {path} must be a JSON object with string fields "
                             f"{', '.join(repr(r.value) for r in Role)}")
        for role in Role:
            register_key(session_factory, f"bootstrap-{role.value}", role, data[role.value])
        return {r.value: data[r.value] for r in Role}
    keys = {role.value: register_key(session_factory, f"bootstrap-{role.value}", role)[1] for role in Role}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(keys, fh, indent=1)
        fh.write("\n")
    return keys
