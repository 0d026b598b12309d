"""Helpers for the transport tests: a small real policy, an HTTP alert receiver, processes and ports.

Not a test module (no ``test_`` prefix). The alert receiver can also run as its own process, so the
resilience test can kill it like a crashed cloud::

    python -m tests.transport_support receiver --db alerts.sqlite --port 8099 --key KEY
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "data" / "captures"
KEY = "test-ingest-key-0123456789abcdef"


@functools.cache
def bundled_windows(site: str):
    """Offline windows of the bundled capture ``data/captures/<site>.pcap`` (cached; do not modify)."""
    from edge.windows import extract_windows

    return extract_windows([CAPTURES / f"{site}.pcap"], site_id=site)


@functools.cache
def shared_embedder():
    """One MiniLM embedder for the whole test session (loading costs seconds)."""
    from edge.embed import TextEmbedder

    return TextEmbedder(num_threads=1)


# -- a small, real policy ---------------------------------------------------------------------------------

def make_policy(directory: Path, frame, *, quantile: float = 0.75, grace_s: float = 60.0,
                half_life_windows: float = 1e12) -> Path:
    """Write an exported policy (``fusion.json``, ``actor.json``, ``actor.pt``) into ``directory``.

    The fusion pipeline is fitted on ``frame`` (no scorer; site baselines with a ``grace_s`` grace period
    and, by default, site-wide statistics only and a slow update so slow — a half-life of 10¹² windows —
    that the streamed and the offline paths agree exactly whatever the timing of the fog's
    acknowledgements: a live edge learns from a window when its acknowledgement arrives, the offline replay
    right after its slot, so the moment a new device gets statistics of its own can differ by a slot). The actor is a real
    :class:`fog.policy.DefenderActor` whose weights are set by hand so its decisions are easy to predict:
    level 3 with class ``flood`` when the window's standardised packet count is above its
    ``quantile`` over ``frame`` (after the grace period), else level 0 (``benign``) — so roughly a
    quarter of those windows alert.
    """
    from edge.embed import EMBED_DIM
    from edge.features import FEATURE_NAMES
    from edge.observation import FusionPipeline
    from edge.online import fuse_frame

    baseline = {"grace_s": grace_s, "half_life_windows": half_life_windows}
    if half_life_windows >= 1e9:
        baseline["min_device_windows"] = 10**9
    pipe = FusionPipeline(baseline=baseline).fit(frame)
    pipe.save(directory)
    j = FEATURE_NAMES.index("pkts")
    fused = fuse_frame(pipe, frame, np.zeros((len(frame), EMBED_DIM), np.float32), learn_from="none")
    z = fused.z[~fused.learning, j]
    actor = threshold_actor(float(np.quantile(np.clip(z, -10, 10), quantile)))
    actor.save(directory, meta={"run": "transport-test"})
    return directory


def threshold_actor(threshold: float):
    """A :class:`fog.policy.DefenderActor` deciding level 3 / class ``flood`` when the Observation's
    ``pkts`` z value (clipped, as in the vector) exceeds ``threshold``, else level 0 / ``benign``."""
    from edge.features import FEATURE_NAMES
    from fog.attacks import ATTACK_CLASSES
    from fog.policy import ActorConfig, DefenderActor

    j = FEATURE_NAMES.index("pkts")
    actor = DefenderActor(ActorConfig(hidden=(4,)))
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
        first, last = actor.net[0], actor.net[-1]
        first.weight[0, j] = 4.0
        first.bias[0] = -4.0 * threshold - 1e-3
        last.weight[0, 0] = -5.0                       # level 0 below
        last.weight[3, 0] = 5.0                        # level 3 above
        last.weight[5 + ATTACK_CLASSES.index("flood"), 0] = 5.0
    actor.eval()
    return actor


def expected_alerts(frame, embeddings, policy_dir: Path) -> dict[str, dict]:
    """Ground truth: the alerts (level ≥ 2) the offline path decides for ``frame``, by ``alert_id``."""
    from fog.detect import detect

    res = detect(frame, embeddings, policy_dir)
    return {r["alert_id"]: r for r in res[res["alert"]].to_dict("records")}


# -- an HTTP alert receiver ---------------------------------------------------------------------------------

class AlertStore:
    """SQLite table of received alerts keyed by ``alert_id``, a log of every POST, and site states."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS alerts (alert_id TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS site_states (n INTEGER PRIMARY KEY, site_id TEXT, body TEXT)")
        self.db.execute("CREATE TABLE IF NOT EXISTS posts (n INTEGER PRIMARY KEY, alert_id TEXT, status INTEGER)")
        self.lock = threading.Lock()

    def put(self, alert: dict) -> int:
        with self.lock:
            cur = self.db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?)",
                                  (alert["alert_id"], json.dumps(alert, sort_keys=True)))
            status = 201 if cur.rowcount else 200
            self.db.execute("INSERT INTO posts (alert_id, status) VALUES (?, ?)", (alert["alert_id"], status))
            return status

    def put_site(self, site_id: str, body: dict) -> None:
        with self.lock:
            self.db.execute("INSERT INTO site_states (site_id, body) VALUES (?, ?)", (site_id, json.dumps(body)))

    def site_states(self) -> list[tuple[str, dict]]:
        """Every site state PUT, in order."""
        with self.lock:
            return [(s, json.loads(b)) for s, b in self.db.execute("SELECT site_id, body FROM site_states ORDER BY n")]


def read_store(path: Path) -> tuple[dict[str, dict], list[tuple[str, int]]]:
    """``(alerts by id, [(alert_id, status) of every POST])`` of a receiver's database."""
    db = sqlite3.connect(path)
    try:
        alerts = {a: json.loads(b) for a, b in db.execute("SELECT alert_id, body FROM alerts")}
        posts = db.execute("SELECT alert_id, status FROM posts ORDER BY n").fetchall()
    finally:
        db.close()
    return alerts, posts


REQUIRED = ("alert_id", "ts", "site_id", "device_id", "level", "attack_class", "confidence", "technique_ids",
            "evidence", "policy_version")


def make_handler(store: AlertStore, key: str, fail_first: int = 0):
    failures = [fail_first]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _reply(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path != "/api/v1/alerts":
                return self._reply(404, {"detail": "not found"})
            if self.headers.get("Authorization") != f"Bearer {key}":
                return self._reply(401, {"detail": "bad key"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if failures[0] > 0:
                failures[0] -= 1
                return self._reply(503, {"detail": "busy"})
            missing = [k for k in REQUIRED if k not in body]
            if missing or not 0 <= body["level"] <= 4:
                return self._reply(422, {"detail": f"missing {missing}"})
            self._reply(store.put(body), body)

        def do_PUT(self) -> None:
            prefix = "/api/v1/sites/"
            if not self.path.startswith(prefix):
                return self._reply(404, {"detail": "not found"})
            if self.headers.get("Authorization") != f"Bearer {key}":
                return self._reply(401, {"detail": "bad key"})
            from urllib.parse import unquote

            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            store.put_site(unquote(self.path[len(prefix):]), body)
            self._reply(200, body)

    return Handler


class Receiver:
    """In-process receiver on 127.0.0.1 (``port`` 0 = any free port); the first ``fail_first`` POSTs get 503."""

    def __init__(self, db: Path, key: str, port: int = 0, fail_first: int = 0) -> None:
        self.store = AlertStore(db)
        self.server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(self.store, key, fail_first))
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# -- processes and ports -----------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port (it can be bound)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_port(port: int, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to one process we started and reap it."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    proc.wait(30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.transport_support")
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("receiver", help="run an HTTP alert receiver until killed")
    r.add_argument("--db", type=Path, required=True)
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    rec = Receiver(args.db, args.key, args.port)
    print(f"receiver on {rec.url}", flush=True)
    rec.server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
