"""The edge's bounded on-disk buffer: every message goes through it, acked messages leave it.

A SQLite file (WAL journal) holding serialized :class:`~edge.transport.observation_pb2.EdgeMessage`
rows keyed by their stream sequence number. The producer (windows → Observations) appends; the sender
streams rows in ``seq`` order to the fog and deletes them once the fog acks them (an ack means "decided
and its alerts stored", see ``observation.proto``). While the fog is unreachable rows accumulate; on
reconnect the sender replays them from the oldest, in order. A restart of the edge keeps the file, its
``edge_id`` and its sequence numbers, so nothing acknowledged is re-sent and nothing unacknowledged is
forgotten.

Capacity and the full-buffer policy
-----------------------------------
``capacity`` bounds the number of buffered messages (Observations and Watermarks; an Observation is
about 3.5 kB, so the default 20,000 is ≈ 70 MB). When a new batch does not fit:

* ``"drop-oldest"`` (default): the oldest buffered messages are deleted to make room. They are lost —
  counted in :attr:`DiskBuffer.dropped` (kept in the file) and logged as a warning — but the edge keeps
  up with live traffic and the freshest windows survive a long outage.
* ``"block"``: :meth:`DiskBuffer.put` waits until acks free enough room, which pauses the producer:
  a pcap replay simply stops reading; on a live interface the packets that arrive meanwhile pile up in the
  capture library and the kernel drops them once its ring is full. Nothing already buffered is lost.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from edge.transport.sqlite_queue import QueueClosedError, SQLiteQueue, create_private_file

__all__ = ["BUFFER_POLICIES", "BufferClosedError", "DiskBuffer", "create_private_file"]

log = logging.getLogger(__name__)

#: Full-buffer policies (module docstring).
BUFFER_POLICIES: tuple[str, ...] = ("drop-oldest", "block")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
"""


class BufferClosedError(QueueClosedError):
    """The buffer was closed while a call waited on it."""


class DiskBuffer(SQLiteQueue):
    """Bounded, ordered, persistent message buffer (module docstring), an :class:`SQLiteQueue`.

    Parameters
    ----------
    path : str or Path
        SQLite file; created (mode 0600) with its folder when missing.
    capacity : int, default 20000
        Most messages held (≥ 1).
    policy : {"drop-oldest", "block"}, default "drop-oldest"
        What :meth:`put` does when a batch does not fit.

    Attributes
    ----------
    edge_id : str
        UUID of this buffer file (stable across restarts; the fog tracks acks per edge_id).
    dropped : int
        Messages deleted by ``drop-oldest`` over the file's life.

    Raises
    ------
    ValueError
        For a bad ``capacity`` or ``policy``.
    PermissionError, sqlite3.DatabaseError
        If the file cannot be created or is not a buffer.
    """

    closed_error = BufferClosedError
    noun = "buffer"

    def __init__(self, path: str | Path, capacity: int = 20000, policy: str = "drop-oldest") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer ≥ 1 message, got {capacity!r}")
        if policy not in BUFFER_POLICIES:
            raise ValueError(f"policy must be one of {BUFFER_POLICIES}, got {policy!r}")
        super().__init__(path, _SCHEMA)
        self.capacity = capacity
        self.policy = policy
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if "edge_id" not in meta:
            meta["edge_id"] = str(uuid.uuid4())
            self._db.execute("INSERT INTO meta VALUES ('edge_id', ?)", (meta["edge_id"],))
        self.edge_id: str = meta["edge_id"]
        self.dropped = int(meta.get("dropped", 0))
        self._count = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        self._last_seq = int(row[0]) if row else 0

    # -- producer side ------------------------------------------------------------------------
    def put(self, bodies: list, timeout: float | None = None) -> list[int]:
        """Append messages; returns their sequence numbers.

        Parameters
        ----------
        bodies : list of EdgeMessage
            Messages whose inner Observation/Watermark ``seq`` is set here.
        timeout : float, optional
            ``"block"`` policy: seconds to wait for room (``None`` = forever).

        Raises
        ------
        ValueError
            If the batch alone exceeds the capacity.
        TimeoutError
            ``"block"`` policy: no room within ``timeout``.
        BufferClosedError
            If the buffer is closed while waiting.
        """
        n = len(bodies)
        if n > self.capacity:
            raise ValueError(f"a batch of {n} messages exceeds the buffer capacity of {self.capacity}")
        if n == 0:
            return []
        with self._cond:
            if self.policy == "block":
                self._wait_for_room(lambda: self._count + n > self.capacity, timeout,
                                    lambda: f"{self.path}: buffer full ({self._count} messages) for {timeout} s")
            self._check_open()
            seqs = list(range(self._last_seq + 1, self._last_seq + 1 + n))
            rows = []
            for seq, msg in zip(seqs, bodies):
                getattr(msg, msg.WhichOneof("body")).seq = seq
                rows.append((seq, msg.SerializeToString()))
            over = self._count + n - self.capacity
            with self._transaction() as db:
                if over > 0:  # drop-oldest
                    db.execute("DELETE FROM messages WHERE seq IN (SELECT seq FROM messages ORDER BY seq LIMIT ?)",
                               (over,))
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped', ?)", (str(self.dropped + over),))
                db.executemany("INSERT INTO messages (seq, body) VALUES (?, ?)", rows)
            if over > 0:
                self.dropped += over
                self._count -= over
                log.warning("%s: buffer full, dropped the %d oldest messages (%d dropped in all)",
                            self.path, over, self.dropped)
            self._count += n
            self._last_seq = seqs[-1]
            self._cond.notify_all()
            return seqs

    # -- sender side --------------------------------------------------------------------------
    def read_after(self, seq: int, limit: int = 256) -> list[tuple[int, bytes]]:
        """Up to ``limit`` ``(seq, serialized EdgeMessage)`` with sequence number > ``seq``, in order."""
        with self._cond:
            if self._closed:
                return []
            return self._db.execute("SELECT seq, body FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (seq, limit)).fetchall()

    def oldest_seq(self) -> int | None:
        """Sequence number of the oldest buffered message, or None when empty."""
        with self._cond:
            if self._closed:
                return None
            row = self._db.execute("SELECT MIN(seq) FROM messages").fetchone()
            return row[0]

    def ack(self, seq: int) -> int:
        """Delete every message with sequence number ≤ ``seq``; returns how many were deleted."""
        with self._cond:
            if self._closed:
                return 0
            cur = self._db.execute("DELETE FROM messages WHERE seq <= ?", (seq,))
            removed = cur.rowcount
            if removed:
                self._count -= removed
                self._cond.notify_all()
            return removed

    def wait_for(self, predicate, timeout: float) -> bool:
        """Wait up to ``timeout`` s until ``predicate()`` holds (re-checked on every put/ack); returns it."""
        with self._cond:
            return self._cond.wait_for(lambda: self._closed or predicate(), timeout)

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest message ever put (0 before the first)."""
        return self._last_seq

    def __len__(self) -> int:
        return self._count

