"""The one durable SQLite queue behind the edge's disk buffer and the fog's alert outbox.

Both keep messages that must survive a crash or an outage in a local SQLite file, written by one thread
and read by another: :class:`SQLiteQueue` is what they share — the private file (created mode 0600, and
SQLite gives its ``-wal`` and ``-shm`` files the same mode), the WAL journal with ``synchronous=NORMAL``
(a commit survives a process crash; the last commits before a power loss may not), one connection used
under one condition variable, transactions that roll back on any error, a bounded wait for room with a
deadline, and a close that wakes every waiter. What is queued, and the rules for it, stay with each
subclass (:class:`edge.transport.buffer.DiskBuffer`, :class:`fog.outbox.AlertOutbox`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def create_private_file(path: Path) -> Path:
    """Create ``path`` (and its folder) with mode 0600 — readable and writable by its owner only — if it does
    not exist yet; an existing file keeps its mode. SQLite gives a database's ``-wal`` and ``-shm`` files
    the mode of the database, so opening the file afterwards keeps all three private. Returns ``path``.

    Raises
    ------
    OSError
        When the folder cannot be made or the file cannot be created.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    return path


class QueueClosedError(RuntimeError):
    """The queue was closed while a call waited on it."""


class SQLiteQueue:
    """A durable queue file shared by a producer and a consumer thread (module docstring).

    Parameters
    ----------
    path : str or Path
        SQLite file; created (mode 0600) with its folder when missing.
    schema : str
        SQL script creating the subclass's tables (``CREATE TABLE IF NOT EXISTS …``).

    Raises
    ------
    PermissionError, sqlite3.DatabaseError
        If the file cannot be created or opened as a database.
    """

    #: Raised by waits on a closed queue (subclasses name their own).
    closed_error: type[RuntimeError] = QueueClosedError
    #: What the queue is called in messages ("buffer", "outbox").
    noun = "queue"

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        create_private_file(self.path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(schema)
        self._cond = threading.Condition()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise self.closed_error(f"{self.path}: {self.noun} closed")

    def _wait_for_room(self, full: Callable[[], bool], timeout: float | None, describe: Callable[[], str]) -> None:
        """Wait (holding ``self._cond``) while ``full()``; re-checked at least every 0.5 s and on every notify.

        Raises
        ------
        TimeoutError
            With ``describe()`` when still full after ``timeout`` seconds (``None``: wait forever).
        closed_error
            If the queue is (or gets) closed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while full():
            self._check_open()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(describe())
            self._cond.wait(0.5 if left is None else min(0.5, left))
        self._check_open()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception (call holding ``self._cond``)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file; waiting callers get :attr:`closed_error`. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            self._db.close()
