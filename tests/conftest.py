"""Shared fixtures: paths to ../shared/data (skipped with a reason when absent) and bundled captures."""

from __future__ import annotations

import os
from pathlib import Path

import pandas  # noqa: F401 - first: `marlids edge run` invoked in this process then never blocks pyarrow here
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PCAPS = SHARED_DATA / "pcaps"
BUNDLED = REPO / "data" / "captures"


@pytest.fixture(scope="session")
def pcaps() -> Path:
    """``../shared/data/pcaps``; skips the test when the shared data is not beside the clone."""
    if not PCAPS.is_dir():
        pytest.skip(f"public captures not found at {PCAPS} (../shared/data is absent in a user's clone)")
    return PCAPS


@pytest.fixture(scope="session")
def bundled_capture() -> Path:
    """The bundled site-A range capture shipped in the repository."""
    path = BUNDLED / "site_a.pcap"
    if not path.is_file():
        pytest.fail(f"bundled capture missing: {path}")
    return path


@pytest.fixture(scope="session")
def embedder():
    """One MiniLM embedder for the session (loading takes a few seconds)."""
    from edge.embed import TextEmbedder

    return TextEmbedder(cache_size=64)
