"""Fog hardening (issue 17): observations with non-finite numbers are rejected, logged and counted; the fog
writes strict JSON only; an alert the cloud refuses is dead-lettered after N tries instead of blocking the
queue, visible in the metrics and in ``marlids fog status``; the ingest key never goes over plain http to
another machine; outbox and buffer files are private (0600)."""

from __future__ import annotations

import json
import logging
import math
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edge.features import N_FEATURES
from edge.transport.buffer import DiskBuffer
from fog.alerts import dumps, json_safe
from fog.coordinator import Coordinator
from fog.metrics import FogCollector
from fog.outbox import DEAD_LETTER, AlertOutbox, CloudPoster, check_cloud_url
from tests.test_transport_fog import _hello, _obs
from tests.transport_support import KEY, threshold_actor


def _alert(i: int, **over) -> dict:
    a = {"alert_id": f"id{i:04d}", "ts": 1764000000.0 + i, "site_id": "a", "device_id": "10.0.0.1", "level": 3,
         "attack_class": "flood", "confidence": 0.9, "technique_ids": ["T1498"], "evidence": {},
         "policy_version": "v"}
    return a | over


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class _Server:
    """A cloud stand-in on 127.0.0.1: ``answer(alert) -> status`` for each POST; records (alert_id, status)."""

    def __init__(self, answer) -> None:
        self.posts: list[tuple[str, int]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                code = answer(body)
                outer.posts.append((body["alert_id"], code))
                data = json.dumps({"detail": f"status {code}"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


# -- strict JSON -------------------------------------------------------------------------------------
def test_json_safe_turns_non_finite_numbers_into_null():
    value = {"a": float("nan"), "b": [np.float32("inf"), -math.inf, 1.5, np.int64(3)], "c": np.bool_(True)}
    assert json_safe(value) == {"a": None, "b": [None, None, 1.5, 3], "c": True}
    assert json.loads(dumps(value)) == {"a": None, "b": [None, None, 1.5, 3], "c": True}


def test_json_safe_replaces_lone_surrogates_so_the_cloud_never_refuses_evidence_text():
    assert json_safe({"hostnames": ["a\ud800b", "\U0001f600 ok"]}) == {"hostnames": ["a\ufffdb", "\U0001f600 ok"]}
    dumps({"x": "\udfff"}).encode("utf-8")


def test_the_outbox_stores_strict_json(tmp_path):
    box = AlertOutbox(tmp_path / "o.sqlite")
    box.commit([_alert(1, confidence=float("nan"), evidence={"top_features": [{"value": float("inf")}]})], {})
    (_, body), = box.next_pending()
    assert "NaN" not in body and "Infinity" not in body
    assert json.loads(body)["confidence"] is None
    box.close()


# -- non-finite observations ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["features", "vector", "features_z", "baseline", "baseline_spread"])
def test_non_finite_observations_are_rejected_logged_and_counted(tmp_path, caplog, field):
    outbox = AlertOutbox(tmp_path / "o.sqlite")
    coord = Coordinator(threshold_actor(2.0), outbox, ("a",), policy_version="v")
    coord.hello(_hello("a", "ea"))
    o = _obs("a", "10.0.0.1", 1000.0, 1, 5.0)
    values = list(getattr(o, field))
    values[0] = float("nan")
    del getattr(o, field)[:]
    getattr(o, field).extend(values)
    with caplog.at_level(logging.ERROR, logger="fog.coordinator"):
        coord.observation("ea", o)
    assert coord.stats()["invalid_observations"] == 1 and coord.stats()["observations"] == 0
    (line,) = [r.getMessage() for r in caplog.records]
    assert "site a: rejected an invalid observation" in line and f"{field} hold" in line and "NaN or infinite" in line
    assert "marlids_fog_invalid_observations_total" in line

    class Fog:
        coordinator, poster = coord, None
    Fog.outbox = outbox
    families = {f.name: f for f in FogCollector(Fog).collect()}
    assert families["marlids_fog_invalid_observations"].samples[0].value == 1
    coord.close()
    outbox.close()


# -- dead letters --------------------------------------------------------------------------------------
def test_a_refused_alert_is_dead_lettered_after_n_tries_without_blocking_the_queue(tmp_path, caplog):
    box = AlertOutbox(tmp_path / "o.sqlite", max_attempts=3)
    box.commit([_alert(0, level=9)] + [_alert(i) for i in range(1, 6)], {})  # the oldest one is refused
    server = _Server(lambda a: 422 if a["level"] > 4 else 201)
    try:
        with caplog.at_level(logging.WARNING, logger="fog.outbox"):
            poster = CloudPoster(box, server.url, KEY, backoff_initial_s=0.05, backoff_max_s=0.1).start()
            _wait(lambda: box.pending == 0)
            poster.stop()
    finally:
        server.close()
    order = [a for a, _ in server.posts]
    assert [a for a, code in server.posts if code == 201] == [f"id{i:04d}" for i in range(1, 6)]
    assert order.count("id0000") == 3, "tried max_attempts times"
    assert order.index("id0001") < order.index("id0000", 1), "the alerts behind it went on meanwhile"
    assert box.counts() == {"pending": 0, "posted": 5, "dead_letter": 1}
    (dead,) = box.dead_letters()
    assert dead["alert_id"] == "id0000" and dead["attempts"] == 3 and dead["reason"].startswith("HTTP 422")
    assert poster.dead_lettered == 1 and poster.rejected == 3
    assert any("dead-lettered" in r.getMessage() and "id0000" in r.getMessage() for r in caplog.records)

    class Fog:
        coordinator = None
    Fog.poster, Fog.outbox = poster, box
    families = {f.name: f for f in FogCollector(Fog).collect()}
    states = {s.labels["state"]: s.value for s in families["marlids_fog_outbox_alerts"].samples}
    assert states == {"pending": 0, "posted": 5, "dead_letter": 1}
    assert families["marlids_fog_dead_letters"].samples[0].value == 1
    box.close()

    from typer.testing import CliRunner

    from fog.cli import app

    r = CliRunner().invoke(app, ["status", "--outbox", str(tmp_path / "o.sqlite"), "--json"])
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    assert st["alerts"] == {"pending": 0, "posted": 5, "dead_letter": 1}
    assert st["dead_letters"][0]["alert_id"] == "id0000"
    r = CliRunner().invoke(app, ["status", "--outbox", str(tmp_path / "o.sqlite")], env={"COLUMNS": "200"})
    assert "1 dead-lettered" in r.output and "id0000" in r.output


def test_an_alert_that_breaks_the_cloud_does_not_block_the_others(tmp_path):
    box = AlertOutbox(tmp_path / "o.sqlite")
    box.commit([_alert(i) for i in range(4)], {})
    server = _Server(lambda a: 500 if a["alert_id"] == "id0000" else 201)
    try:
        poster = CloudPoster(box, server.url, KEY, backoff_initial_s=0.05, backoff_max_s=0.1).start()
        _wait(lambda: box.counts()["posted"] == 3)
        poster.stop()
    finally:
        server.close()
    assert box.pending == 1 and box.count(DEAD_LETTER) == 0, "a 5xx is the cloud's fault: kept, never dead"
    box.close()


def test_the_issue_scenario_a_surrogate_alert_against_the_real_cloud(tmp_path):
    """The alert that used to take the analyst API down, as an older fog left it in its outbox: refused (422),
    dead-lettered, the rest delivered and the API still lists them. The same evidence committed by this
    fog reaches the cloud with U+FFFD instead (an attacker cannot get an alert refused with odd text)."""
    import sqlite3

    import httpx

    from cloud.api.main import BackgroundServer
    from tests.cloud.conftest import cloud_settings

    box = AlertOutbox(tmp_path / "o.sqlite", max_attempts=2)
    hostile = _alert(0, attack_class="scan", technique_ids=["T1046"], evidence={"hostnames": ["\ud800"]})
    with sqlite3.connect(tmp_path / "o.sqlite") as con:  # written around json_safe, as before issue 17
        con.execute("INSERT INTO alerts (alert_id, body) VALUES (?, ?)", (hostile["alert_id"], json.dumps(hostile)))
    box.close()
    box = AlertOutbox(tmp_path / "o.sqlite", max_attempts=2)
    box.commit([_alert(i) for i in range(1, 4)] + [hostile | {"alert_id": "id0004"}], {})
    settings = cloud_settings(tmp_path / "cloud.db", port=0, bootstrap_keys_file=tmp_path / "keys.json",
                              explain=False)
    with BackgroundServer(settings) as srv:
        poster = CloudPoster(box, srv.url, srv.keys["ingest"], backoff_initial_s=0.05, backoff_max_s=0.1).start()
        _wait(lambda: box.pending == 0)
        poster.stop()
        listed = httpx.get(f"{srv.url}/api/v1/alerts", headers={"X-API-Key": srv.keys["analyst"]})
    assert listed.status_code == 200
    items = {a["alert_id"]: a for a in listed.json()["items"]}
    assert sorted(items) == ["id0001", "id0002", "id0003", "id0004"]
    assert items["id0004"]["evidence"]["hostnames"] == ["\ufffd"]
    assert box.dead_letters()[0]["alert_id"] == "id0000" and "422" in box.dead_letters()[0]["reason"]
    box.close()


def test_an_outbox_from_before_deferred_retries_is_migrated(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.executescript("CREATE TABLE alerts (n INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL UNIQUE, "
                          "body TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0, "
                          "reason TEXT);"
                          "INSERT INTO alerts (alert_id, body) VALUES ('old1', '{}');")
    box = AlertOutbox(path)
    assert box.next_pending() == [("old1", "{}")]
    box.close()


# -- plain http ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:8080/", "http://[::1]:8080",
                                 "https://cloud.example:8443", "https://10.0.0.5"])
def test_cloud_urls_that_keep_the_key_safe(url):
    assert check_cloud_url(url) == url.rstrip("/")


@pytest.mark.parametrize("url", ["http://cloud:8080", "http://10.0.0.5:8080", "http://cloud.example"])
def test_plain_http_to_another_machine_needs_allow_plain_http(tmp_path, url, caplog):
    with pytest.raises(ValueError, match="--allow-plain-http"):
        check_cloud_url(url)
    box = AlertOutbox(tmp_path / "o.sqlite")
    with pytest.raises(ValueError, match="in clear"):
        CloudPoster(box, url, KEY)
    with caplog.at_level(logging.WARNING, logger="fog.outbox"):
        CloudPoster(box, url, KEY, allow_plain_http=True)
    assert "plain http" in caplog.text
    box.close()


def test_fog_serve_refuses_plain_http_with_one_line(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "marlids", "fog", "serve", "--listen", "127.0.0.1:0", "--insecure",
                        "--cloud", "http://cloud.example:8080", "--ingest-key", KEY, "--sites", "a",
                        "--outbox", str(tmp_path / "o.sqlite")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("marlids: error: --cloud 'http://cloud.example:8080'")
    assert "Traceback" not in r.stderr


# -- private files -------------------------------------------------------------------------------------
def test_outbox_and_buffer_files_are_private(tmp_path):
    box = AlertOutbox(tmp_path / "fog" / "outbox.sqlite")
    box.commit([_alert(1)], {})
    buf = DiskBuffer(tmp_path / "edge" / "buffer.sqlite")
    files = [p for p in (tmp_path / "fog").iterdir()] + [p for p in (tmp_path / "edge").iterdir()]
    assert any(p.name.endswith("-wal") for p in files)
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p, oct(p.stat().st_mode))
    box.close()
    buf.close()
    assert N_FEATURES > 0
