"""Keyset pagination and time filters shared by the listing endpoints (alerts, an incident's alerts,
incidents, exports)."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import Session

from cloud.api.errors import unprocessable
from cloud.services.convert import dt_to_us


def encode_cursor(ts_us: int, key: str) -> str:
    """The opaque ``next_cursor`` of a page whose last row has (``ts_us``, ``key``)."""
    return base64.urlsafe_b64encode(json.dumps([ts_us, key]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """``(ts_us, key)`` of a cursor made by :func:`encode_cursor`.

    Raises
    ------
    HTTPException
        422 (``bad_cursor``) for anything else.
    """
    try:
        ts_us, key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(ts_us, int) or not isinstance(key, str) or abs(ts_us) >= 2**63:
            raise ValueError
        return ts_us, key
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[unprocessable(
            ["query", "cursor"], "not a cursor returned by this API (pass next_cursor unchanged)", "bad_cursor",
            cursor[:40])]) from None


def time_bounds_us(since: datetime | None, until: datetime | None) -> tuple[int | None, int | None]:
    """``since`` / ``until`` in epoch microseconds (None stays None).

    Raises
    ------
    HTTPException
        422 (``out_of_range``) for a time outside what epoch microseconds hold.
    """
    try:
        return (None if since is None else dt_to_us(since)), (None if until is None else dt_to_us(until))
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[unprocessable(
            ["query", "since"], "since/until out of range", "out_of_range", str(since or until))]) from None


def keyset_page(session: Session, stmt: Select, ts_col: Any, key_col: Any, limit: int,
                cursor: str | None) -> tuple[list[Any], str | None]:
    """Rows of ``stmt`` newest first by (``ts_col``, ``key_col``), at most ``limit``, after ``cursor``;
    and the cursor of the next page (None on the last)."""
    if cursor is not None:
        c_ts, c_key = decode_cursor(cursor)
        stmt = stmt.where(or_(ts_col < c_ts, and_(ts_col == c_ts, key_col < c_key)))
    rows = session.scalars(stmt.order_by(ts_col.desc(), key_col.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return rows, (encode_cursor(getattr(last, ts_col.key), getattr(last, key_col.key)) if more else None)
