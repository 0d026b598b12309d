"""API keys: random tokens shown once, stored only as SHA-256 digests, each with one role.

Keys carry 256 bits of entropy, so a fast unsalted digest is enough (no dictionary to attack); the
digest is what the database holds and what a lookup compares.
"""

from __future__ import annotations

import enum
import hashlib
import secrets

KEY_PREFIX = "mk_"


class Role(str, enum.Enum):
    """What a key may do: ``ingest`` posts alerts (fog coordinators); ``analyst`` reads and triages."""

    ingest = "ingest"
    analyst = "analyst"


def new_api_key() -> str:
    """A fresh key, e.g. ``mk_3q…`` (43 URL-safe characters after the prefix)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Hex SHA-256 digest of ``key`` (what the database stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
