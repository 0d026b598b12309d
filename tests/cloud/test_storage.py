"""Storage: SQLite in WAL mode, Alembic migrations equal to the models, durability before the answer
(a server killed with SIGKILL right after answering keeps every acknowledged alert), and the same
API on a real PostgreSQL server."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text

from cloud.core.db import make_engine, make_session_factory, run_migrations
from cloud.models import Base
from tests.cloud.conftest import cloud_settings, fog_alert

REPO = Path(__file__).resolve().parents[2]


def test_sqlite_file_is_in_wal_mode_with_full_sync(api):
    with api.app.state.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL


@pytest.mark.parametrize("bad", ["fast", "2"])
def test_bad_sqlite_synchronous_is_refused(tmp_path, bad):
    with pytest.raises(ValueError, match=f"sqlite_synchronous='{bad}'; allowed: OFF, NORMAL, FULL, EXTRA"):
        make_engine(f"sqlite:///{tmp_path}/x.db", sqlite_synchronous=bad)


def _schema_diff(engine) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), Base.metadata)


def test_alembic_migrations_build_exactly_the_models(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/m.db")
    run_migrations(engine)
    run_migrations(engine)  # idempotent
    assert set(inspect(engine).get_table_names()) == {"alembic_version", "alerts", "alert_techniques",
                                                      "explanations", "api_keys", "sites", "incidents", "suppressions",
                                                      "suppression_audit"}
    assert _schema_diff(engine) == []


def test_restart_explains_what_was_left_unexplained(tmp_path, make_api):
    first = make_api(explain=False)
    alert = fog_alert()
    first.post(alert)
    db = first.app.state.settings.database_url
    from fastapi.testclient import TestClient

    from cloud.api.main import create_app

    app = create_app(cloud_settings(Path(db.removeprefix("sqlite:///"))))
    with TestClient(app) as client:
        assert app.state.worker.wait_idle(30)
        from cloud.models import ExplanationRow

        with app.state.session_factory() as s:
            assert s.get(ExplanationRow, alert["alert_id"]).source == "builtin"
        assert client.get("/healthz").status_code == 200


def test_explanations_in_a_spawned_process(make_api):
    api = make_api(explain_in_process=True)
    assert api.app.state.worker.in_process
    alert = fog_alert()
    api.post(alert)
    api.wait_explained(60)
    body = api.get(f"/api/v1/alerts/{alert['alert_id']}").json()
    assert body["explanation"]["source"] == "builtin" and body["explanation_status"] == "ready"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_acknowledged_alert_survives_sigkill(tmp_path):
    """`marlids cloud serve` answers only after the commit: kill -9 it right after the answers and
    every acknowledged alert is in the database file."""
    port, db, keys = _free_port(), tmp_path / "cloud.db", tmp_path / "keys.json"
    proc = subprocess.Popen([sys.executable, "-c", "from marlids.cli import main; main()", "cloud", "serve",
                             "--db", str(db), "--port", str(port), "--bootstrap-keys", str(keys), "--no-explain",
                             "--log-level", "warning"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
        assert oct(os.stat(keys).st_mode & 0o777) == "0o600"
        ingest = json.loads(keys.read_text())["ingest"]
        alerts = [fog_alert() for _ in range(200)]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ingest}"}, timeout=30) as client, \
                concurrent.futures.ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda a: client.post("/api/v1/alerts", json=a).status_code, alerts))
        proc.send_signal(signal.SIGKILL)  # no shutdown hook runs
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert codes == [201] * len(alerts)
    with sqlite3.connect(db) as con:
        stored = {r[0] for r in con.execute("SELECT alert_id FROM alerts")}
    assert {a["alert_id"] for a in alerts} <= stored


# -- PostgreSQL --------------------------------------------------------------------------------------
def test_postgres_migrations_and_api(postgres_url, make_api):
    engine = make_engine(postgres_url)
    run_migrations(engine)
    assert _schema_diff(engine) == []
    engine.dispose()
    api = make_api(database_url=postgres_url)
    assert api.app.state.engine.dialect.name == "postgresql"
    alerts = [fog_alert(ts=1764000000.0 + i, attack_class="flood", technique_ids=["T1498"],
                        evidence=fog_alert()["evidence"] | {"hostnames": ["ünïcode-host"]}) for i in range(12)]
    assert [api.post(a).status_code for a in alerts] == [201] * 12
    assert api.post(alerts[0]).status_code == 200
    page1 = api.get("/api/v1/alerts", limit=5, technique="T1498")
    assert page1.status_code == 200
    page2 = api.get("/api/v1/alerts", limit=50, cursor=page1.json()["next_cursor"], technique="T1498")
    got = [a["alert_id"] for a in page1.json()["items"] + page2.json()["items"]]
    assert sorted(got) == sorted(a["alert_id"] for a in alerts) and len(got) == 12
    api.wait_explained()
    first = api.get(f"/api/v1/alerts/{alerts[0]['alert_id']}").json()
    one = api.get(f"/api/v1/alerts/{alerts[3]['alert_id']}").json()
    assert first["explanation"]["source"] == "builtin"  # the incident's one full explanation …
    assert one["explanation"]["source"] == "builtin:incident"  # … the later windows point to it
    assert one["evidence"]["hostnames"] == ["ünïcode-host"]
    assert one["technique_ids"] == ["T1498.001"]
    r = api.client.patch(f"/api/v1/alerts/{alerts[3]['alert_id']}", json={"status": "resolved", "note": "ok"},
                         headers=api.analyst)
    assert r.json()["status"] == "resolved"
    assert api.client.get("/healthz").json()["database"] == "ok"


def test_postgres_two_api_processes_race_on_one_alert(postgres_url, make_api):
    """Two services on one database, the same alert posted to both at once: one row, one 201."""
    a, b = make_api(database_url=postgres_url), make_api(database_url=postgres_url)
    for _ in range(5):
        alert = fog_alert()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(lambda i, al=alert: (a if i % 2 else b).post(al).status_code, range(8)))
        assert codes == [200] * 7 + [201]
    with make_session_factory(a.app.state.engine)() as s:
        n = s.execute(text("SELECT count(*) FROM alerts")).scalar()
        dup = s.execute(text("SELECT count(*) - count(DISTINCT alert_id) FROM alerts")).scalar()
    assert dup == 0 and n >= 5
