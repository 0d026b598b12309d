"""Resilience: kill -9 the fog, then the cloud, in the middle of two sites' streams; zero lost, zero
duplicated alerts against the alerts the offline path decides for the same windows with the same policy.

The edges run in this process (two :class:`EdgeDaemon`, replaying the bundled captures at 12× on their
own clock, ≈ 19 s of stream); the fog (``marlids fog serve``) and the cloud run as subprocesses so they
can be killed like crashed services. ``CLOUD_BACKEND`` picks the cloud: the real analyst API
(``marlids cloud serve``, SQLite) or, with a one-line change, the minimal HTTP receiver of
``tests/transport_support.py``.
"""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from edge.daemon import EdgeConfig, EdgeDaemon
from tests.transport_support import (
    CAPTURES,
    KEY,
    REPO,
    bundled_windows,
    expected_alerts,
    free_port,
    kill,
    make_policy,
    port_is_free,
    read_store,
    shared_embedder,
    wait_port,
)

MARLIDS = str(Path(sys.executable).with_name("marlids"))
ANALYST_KEY = "test-analyst-key-0123456789abcdef"
SPEED = 12.0


class RealCloud:
    """``marlids cloud serve`` on a SQLite file, keys registered from a bootstrap file."""

    name = "marlids cloud serve"

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "cloud.db"
        self.keys = tmp / "keys.json"
        self.keys.write_text(json.dumps({"ingest": KEY, "analyst": ANALYST_KEY}))
        self.keys.chmod(0o600)
        self.log = tmp / "cloud.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen([MARLIDS, "cloud", "serve", "--db", str(self.db), "--port", str(self.port),
                                          "--bootstrap-keys", str(self.keys), "--no-explain", "--log-level",
                                          "warning"], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        wait_port(self.port, 90, self.proc)

    def stored(self) -> list[dict]:
        """Every stored alert, through the analyst API (keyset pages)."""
        out, cursor = [], None
        with httpx.Client(headers={"Authorization": f"Bearer {ANALYST_KEY}"}, timeout=30) as c:
            while True:
                r = c.get(f"{self.url}/api/v1/alerts", params={"limit": 500, **({"cursor": cursor} if cursor else {})})
                r.raise_for_status()
                page = r.json()
                out += page["items"]
                cursor = page["next_cursor"]
                if not cursor:
                    return out


class ReceiverCloud:
    """The minimal receiver of ``tests/transport_support.py`` in its own process (stores by alert_id)."""

    name = "test receiver"

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "receiver.sqlite"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.transport_support", "receiver", "--db",
                                      str(self.db), "--port", str(self.port), "--key", KEY], cwd=REPO,
                                     stdout=subprocess.DEVNULL)
        wait_port(self.port, 30, self.proc)

    def stored(self) -> list[dict]:
        return list(read_store(self.db)[0].values())


CLOUD_BACKEND = RealCloud  # ReceiverCloud: the same test without the cloud package


def _start_fog(port: int, policy: Path, cloud_url: str, tmp: Path) -> subprocess.Popen:
    log = (tmp / "fog.log").open("a")
    proc = subprocess.Popen([MARLIDS, "fog", "serve", "--listen", f"127.0.0.1:{port}", "--policy", str(policy),
                             "--cloud", cloud_url, "--sites", "site_a,site_b", "--outbox", str(tmp / "outbox.sqlite"),
                             "--decisions", str(tmp / "decisions.jsonl"), "--tick-timeout", "0.5", "--retry-max", "1",
                             "--insecure"], env={**os.environ, "MARLIDS_INGEST_KEY": KEY}, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_port(port, 90, proc)
    return proc


@pytest.mark.timeout(300)
def test_kill_fog_then_cloud_mid_stream_loses_and_duplicates_nothing(tmp_path):
    frames = {s: bundled_windows(s) for s in ("site_a", "site_b")}
    both = pd.concat(frames.values(), ignore_index=True)
    policy = make_policy(tmp_path / "policy", both)
    emb = shared_embedder()
    want = expected_alerts(both, emb.embed(both["proto_text"].tolist()), policy)
    from fog.detect import detect

    offline = detect(both, emb.embed(both["proto_text"].tolist()), policy)
    after_grace = both[~offline["learning"].to_numpy()]
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}

    cloud = CLOUD_BACKEND(tmp_path)
    cloud.start()
    fog_port = free_port()
    fog = _start_fog(fog_port, policy, cloud.url, tmp_path)
    edges = [EdgeDaemon(EdgeConfig(site_id=s, fog=f"127.0.0.1:{fog_port}", pcap=CAPTURES / f"{s}.pcap",
                                   replay_speed=SPEED, fusion_dir=policy, buffer_path=tmp_path / f"{s}.sqlite",
                                   baseline_path=tmp_path / f"{s}.baseline.json", reconnect_max_s=0.5),
                        embedder=emb) for s in frames]
    events = []
    try:
        for e in edges:
            e.start()

        def streaming() -> bool:
            return all(e.stats().slots > 0 and not e.stats().producer_done for e in edges)

        deadline = time.monotonic() + 60
        while not all(e.stats().slots >= 8 for e in edges) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert streaming(), "the edges should be streaming"
        kill(fog)                                           # 1. the fog crashes mid-stream
        events.append(("fog killed", [e.stats().slots for e in edges]))
        time.sleep(2.0)
        assert all(not e.stats().connected for e in edges)
        fog = _start_fog(fog_port, policy, cloud.url, tmp_path)  # …and comes back on the same outbox
        deadline = time.monotonic() + 30
        while not all(e.stats().connected for e in edges) and time.monotonic() < deadline:
            time.sleep(0.05)
        events.append(("fog back", [e.stats().slots for e in edges]))
        assert streaming(), "the fog restart must happen mid-stream"
        kill(cloud.proc)                                    # 2. the cloud crashes mid-stream
        events.append(("cloud killed", [e.stats().slots for e in edges]))
        assert streaming(), "the cloud kill must happen mid-stream"
        time.sleep(2.0)
        cloud.start()
        events.append(("cloud back", [e.stats().slots for e in edges]))
        for e in edges:
            assert e.wait(timeout=120), e.stats()
        stored = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stored = cloud.stored()
            if len(stored) >= len(want):
                break
            time.sleep(0.5)
        time.sleep(1.0)  # anything still in flight would show up as an extra alert
        stored = cloud.stored()
        edge_stats = [e.stats() for e in edges]
    finally:
        for e in edges:
            e.stop()
        if fog.poll() is None:
            fog.send_signal(signal.SIGTERM)
        fog_rc = fog.wait(30)
        if cloud.proc.poll() is None:
            cloud.proc.send_signal(signal.SIGTERM)
        cloud.proc.wait(30)

    ids = [a["alert_id"] for a in stored]
    lost = set(want) - set(ids)
    extra = set(ids) - set(want)
    assert not lost, f"{len(lost)} alerts lost (events: {events})"
    assert not extra, f"{len(extra)} alerts that the offline path did not raise"
    assert len(ids) == len(set(ids)) == len(want), "an alert is stored twice"
    for a in stored:
        w = want[a["alert_id"]]
        assert (a["site_id"], a["device_id"], a["level"], a["attack_class"]) == \
               (w["site_id"], w["device_id"], w["level"], w["attack_class"])
    assert all(s.dropped == 0 and s.buffered == 0 and s.reconnects >= 1 for s in edge_stats), edge_stats
    # every window after the grace period was decided (some twice: the restarted fog re-decides what the
    # killed one had not acked); the grace period's windows never were
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    decided = {(r["site_id"], r["device_id"], r["t_start"]) for r in map(json.loads, lines)
               if not r.get("idle") and not r.get("learning")}
    assert decided == set(zip(after_grace["site_id"], after_grace["device_id"], after_grace["t_start"]))
    # clean shutdown: the fog exits 0 on SIGTERM, processes reaped, ports released
    assert fog_rc == 0, (tmp_path / "fog.log").read_text()[-2000:]
    assert port_is_free(fog_port) and port_is_free(cloud.port)
    left = {p.pid for p in psutil.Process().children(recursive=True)} - children_before
    assert not left, f"child processes left behind: {left}"
    print(f"{cloud.name}: {len(want)} alerts, events {events}")


@pytest.mark.timeout(300)
def test_a_killed_edge_resumes_its_learned_baseline(tmp_path):
    """kill -9 a `marlids edge run` once its site baseline is learned; the restarted daemon resumes it from
    disk: no new grace period (the fog receives no learning window from it), the same baseline."""
    from fog.server import FogConfig, FogServer
    from tests.transport_support import Receiver

    policy = make_policy(tmp_path / "policy", bundled_windows("site_a"), half_life_windows=720.0)
    state = tmp_path / "site_a.baseline.json"
    with Receiver(tmp_path / "cloud.sqlite", KEY) as rec:
        fog = FogServer(FogConfig(listen="127.0.0.1:0", policy_dir=policy, cloud_url=rec.url, ingest_key=KEY,
                                  sites=("site_a",), outbox_path=tmp_path / "outbox.sqlite", tick_timeout_s=1.0,
                                  drain_s=0)).start()

        def edge(*extra: str) -> subprocess.Popen:
            log = (tmp_path / "edge.log").open("a")
            p = subprocess.Popen([MARLIDS, "edge", "run", "--pcap", str(CAPTURES / "site_a.pcap"), "--site", "site_a",
                                  "--fog", f"127.0.0.1:{fog.port}", "--insecure", "--fusion", str(policy),
                                  "--buffer", str(tmp_path / "buffer.sqlite"), "--baseline", str(state), *extra],
                                 cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(tmp_path)})
            log.close()
            return p

        try:
            first = edge("--replay-speed", "20")
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (state.is_file() and '"fitted": true' in state.read_text()):
                assert first.poll() is None, (tmp_path / "edge.log").read_text()[-3000:]
                time.sleep(0.2)
            assert '"fitted": true' in state.read_text(), "the baseline is saved as soon as the grace period ends"
            time.sleep(1.0)
            kill(first)                                            # the edge crashes after learning
            saved = json.loads(state.read_text())
            assert saved["baseline"]["fitted"] and saved["baseline"]["site"] is not None
            grace_before = fog.stats()["grace_observations"]
            assert grace_before > 50
            second = edge("--fast", "--drain-timeout", "30")
            assert second.wait(180) == 0, (tmp_path / "edge.log").read_text()[-3000:]
            st = fog.stats()
        finally:
            for p in (locals().get("first"), locals().get("second")):
                if p is not None and p.poll() is None:
                    kill(p)
            fog.stop()
    log = (tmp_path / "edge.log").read_text()
    assert "resumed the baseline" in log and log.count("learning a new baseline") == 1
    assert re.search(r"site site_a: learning baseline \d+/60 s", log), "the edge says it is learning"
    assert st["grace_observations"] == grace_before, "the restarted edge started no new grace period"
    assert st["decisions"] > 200, "…and its windows were decided from the start"
    resumed = json.loads(state.read_text())["baseline"]
    assert resumed["fitted_at"] == saved["baseline"]["fitted_at"], "the same baseline, kept learning"
