"""Fixtures of the cloud tests: settings on a temporary SQLite file, an app with one key per role, the
fog's alert payload, and a real PostgreSQL server started from Debian's binaries."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

#: Environment variables the settings read; cleared so a developer's shell cannot steer the tests.
SETTINGS_ENV = ("DATABASE_URL", "OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY", "MARLIDS_INGEST_KEY",
                "MARLIDS_ANALYST_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SETTINGS_ENV:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("MARLIDS_CLOUD_"):
            monkeypatch.delenv(name)


def fog_alert(**overrides: Any) -> dict[str, Any]:
    """An alert exactly as fog/detect.py builds it (``baseline_mean``, epoch ``ts``), plus attention
    peaks and attacker-controlled strings as the fog coordinator adds them."""
    alert = {
        "alert_id": uuid.uuid4().hex,
        "ts": 1764000005.0,
        "site_id": "site_a",
        "device_id": "10.0.0.7",
        "level": 3,
        "attack_class": "scan",
        "confidence": 0.91,
        "technique_ids": ["T1046"],
        "evidence": {
            "top_features": [
                {"name": "out_distinct_dst_ports", "value": 412.0, "baseline_mean": 3.1, "z": 41.2},
                {"name": "out_syn_only_pkts", "value": 980.0, "baseline_mean": 4.0, "z": 35.0},
                {"name": "tcp_failed_conn_fraction", "value": 0.97, "baseline_mean": 0.02, "z": 12.5},
            ],
            "attention_peaks": [{"t": 1764000000.0, "weight": 0.41}],
            "attention": [{"t": 1763999990.0 + 5 * i, "weight": w} for i, w in enumerate((0.1, 0.14, 0.41, 0.2, 0.15))],
            "protocol_summary": "TCP out: hundreds of packets to hundreds of ports, SYN-only, unanswered.",
            "mqtt_topics": ["home/livingroom/temp"],
            "hostnames": ["printer.local"],
        },
        "policy_version": "mappo-test-1",
    }
    alert.update(overrides)
    return alert


def cloud_settings(db_path: Path, **overrides: Any):
    """Settings on a SQLite file; explanations in threads (no process spawn per test app)."""
    from cloud.core.config import Settings

    values: dict[str, Any] = {"database_url": f"sqlite:///{db_path}", "explain_in_process": False, "key_cache_s": 0.0}
    values.update(overrides)
    return Settings(**values)


@dataclass
class Api:
    """A running app (TestClient with lifespan) and one key per role."""

    client: Any
    app: Any
    ingest_key: str
    analyst_key: str

    @property
    def ingest(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.ingest_key}"}

    @property
    def analyst(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.analyst_key}"}

    def post(self, alert: dict[str, Any]):
        return self.client.post("/api/v1/alerts", json=alert, headers=self.ingest)

    def get(self, path: str, **params: Any):
        return self.client.get(path, params=params, headers=self.analyst)

    def wait_explained(self, timeout: float = 30.0) -> None:
        assert self.app.state.worker.wait_idle(timeout), "explanations did not finish in time"


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Any]:
    """Factory: ``make_api(**settings_overrides)`` → :class:`Api` (apps are shut down after the test)."""
    from fastapi.testclient import TestClient

    from cloud.api.main import create_app
    from cloud.services.keys import register_key

    stack: list[TestClient] = []

    def make(explainer: Any = None, **overrides: Any) -> Api:
        settings = cloud_settings(tmp_path / f"cloud{len(stack)}.db", **overrides)
        app = create_app(settings, explainer=explainer)
        client = TestClient(app)
        client.__enter__()
        stack.append(client)
        factory = app.state.session_factory
        return Api(client, app, register_key(factory, "test-fog", "ingest")[1],
                   register_key(factory, "test-analyst", "analyst")[1])

    yield make
    for client in reversed(stack):
        client.__exit__(None, None, None)


@pytest.fixture
def api(make_api: Any) -> Api:
    """The app with default settings (built-in explainer)."""
    return make_api()


# -- a real PostgreSQL server -----------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of Debian's ``postgresql`` package in a temporary cluster on a free port
    (run as ``nobody`` when the tests run as root: PostgreSQL refuses root). Yields a SQLAlchemy URL
    of a fresh database; the server is stopped and the cluster deleted afterwards."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin/initdb): install the Debian "
                    "package 'postgresql' (scripts/setup.sh does)")
    bindir = Path(bins[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="marlids-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "nobody")
        shutil.chown(sock, "nobody")
        os.chmod(base, 0o700)
        prefix = ["runuser", "-u", "nobody", "--"]
    port = _free_port()

    def run(*cmd: str, **kw: Any) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, *cmd], check=True, capture_output=True, text=True, cwd=base, **kw)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "marlids", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(base / "server.log"), "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={port} user=marlids dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute("CREATE DATABASE marlids_test")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql://marlids@127.0.0.1:{port}/marlids_test"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, cwd=base, check=False)
        shutil.rmtree(base, ignore_errors=True)
