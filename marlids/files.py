"""File helpers shared by the components' state files (edge buffer, fog outbox, cloud database)."""

from __future__ import annotations

import os
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
