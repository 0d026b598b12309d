"""Fog coordinator rules (tick, idle, late, duplicates, acks), the durable outbox and the cloud poster."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edge.features import FEATURE_NAMES, N_FEATURES
from edge.observation import OBS_DIM
from edge.transport import observation_pb2 as pb
from edge.transport.wire import hello_message
from fog.coordinator import Coordinator, StreamRejected
from fog.alerts import alert_id
from fog.outbox import AlertOutbox, CloudPoster
from tests.transport_support import KEY, Receiver, read_store, threshold_actor

PKTS = FEATURE_NAMES.index("pkts")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def rig(tmp_path):
    """A coordinator for sites a and b, alerting when the vector's pkts z value is above 2."""
    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    clock = Clock()
    states: list[tuple[str, dict]] = []
    coord = Coordinator(threshold_actor(2.0), outbox, ("a", "b"), policy_version="test@1",
                        tick_timeout_s=5.0, decisions_path=tmp_path / "decisions.jsonl", clock=clock,
                        on_site_state=lambda site, st: states.append((site, st)))
    acks: dict[str, list[int]] = {"ea": [], "eb": []}
    alerted: dict[str, list[int]] = {"ea": [], "eb": []}

    def listener(edge):
        def put(item):
            acks[edge].append(item[0])
            alerted[edge].extend(item[1])
        return put

    for site, edge in (("a", "ea"), ("b", "eb")):
        assert coord.hello(_hello(site, edge)) == 0
        coord.attach(edge, listener(edge))
    coord.alerted, coord.states_seen = alerted, states
    yield coord, outbox, clock, acks
    coord.close()
    outbox.close()


def _hello(site: str, edge: str, **over):
    h = hello_message(site_id=site, edge_id=edge, window_s=5.0, grace_s=60.0).hello
    for k, v in over.items():
        setattr(h, k, v)
    return h


def _obs(site: str, device: str, t: float, seq: int, z_pkts: float, learning: bool = False) -> pb.Observation:
    o = pb.Observation(seq=seq, site_id=site, device_id=device, t_start=t, t_end=t + 5, proto_text="UDP out.")
    x = np.zeros(N_FEATURES, np.float32)
    x[PKTS] = 10 * z_pkts
    o.features.extend(x.tolist())
    if learning:
        o.learning = True
        return o
    v = np.zeros(OBS_DIM, np.float32)
    v[PKTS] = z_pkts
    o.vector.extend(v.tolist())
    o.features_z.extend(v[:N_FEATURES].tolist())
    o.baseline.extend([2.0] * N_FEATURES)
    o.baseline_spread.extend([1.0] * N_FEATURES)
    o.baseline_scope = "device"
    return o


def _wm(site: str, t_end: float, seq: int, learning: bool | None = None) -> pb.Watermark:
    w = pb.Watermark(seq=seq, site_id=site, t_end=t_end)
    if learning is not None:
        w.learning, w.grace_s, w.grace_elapsed_s, w.devices_own = learning, 60.0, 35.0 if learning else 60.0, 3
    return w


def test_tick_closes_when_every_site_has_sent_its_watermark(rig):
    coord, outbox, _, acks = rig
    coord.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 9.0))  # ≥ 8 σ: a level-4 alert keeps its level
    coord.observation("ea", _obs("a", "10.0.0.2", 1000, 2, 0.0))
    coord.watermark("ea", _wm("a", 1005, 3))
    assert coord.stats()["open_ticks"] == 1 and acks["ea"] == [], "site b has not finished the slot yet"
    coord.observation("eb", _obs("b", "10.1.0.1", 1000, 1, 0.0))
    coord.watermark("eb", _wm("b", 1005, 2))
    st = coord.stats()
    assert st["ticks_by_watermark"] == 1 and st["open_ticks"] == 0 and st["decisions"] == 3
    assert acks["ea"][-1] == 3 and acks["eb"][-1] == 2
    # exactly the busy device alerted, with the Alert contract and evidence
    (aid, body), = outbox.next_pending()
    alert = json.loads(body)
    assert aid == alert_id("a", "10.0.0.1", 1000.0) == alert["alert_id"]
    assert (alert["level"], alert["attack_class"], alert["technique_ids"], alert["ts"]) == (4, "flood", ["T1498"], 1005.0)
    top = alert["evidence"]["top_features"][0]
    assert top == {"name": "pkts", "value": 90.0, "baseline": 2.0, "baseline_std": 1.0, "z": 9.0}
    assert alert["evidence"]["baseline_scope"] == "device"
    assert alert["evidence"]["protocol_summary"] == "UDP out." and alert["policy_version"] == "test@1"
    assert outbox.committed_positions() == {"ea": 3, "eb": 2}
    assert coord.alerted == {"ea": [1], "eb": []}, "the ack names the observation that alerted"


def test_grace_period_windows_are_never_decided_and_site_states_are_reported(rig):
    coord, outbox, _, acks = rig
    coord.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 9.0, learning=True))
    coord.watermark("ea", _wm("a", 1005, 2, learning=True))
    coord.watermark("eb", _wm("b", 1005, 1, learning=False))
    st = coord.stats()
    assert st["grace_observations"] == 1 and st["decisions"] == 0 and outbox.pending == 0
    assert acks["ea"][-1] == 2, "a grace-period window is acknowledged like any other"
    assert coord.site_states()["a"]["state"] == "learning" and coord.site_states()["b"]["state"] == "detecting"
    coord.watermark("ea", _wm("a", 1010, 3, learning=False))
    assert [s["state"] for site, s in coord.states_seen if site == "a"] == ["learning", "detecting"]


def test_deadline_idle_observation_and_late_rule(rig, tmp_path):
    coord, outbox, clock, acks = rig
    coord.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 5.0))
    coord.watermark("ea", _wm("a", 1005, 2))
    clock.t = 4.9
    assert coord.poll() == 0 and acks["ea"] == [], "before the deadline the tick waits for site b"
    clock.t = 5.0
    assert coord.poll() == 1
    st = coord.stats()
    assert st["ticks_by_deadline"] == 1 and st["idle_observations"] == 1, "site b got the idle observation"
    assert acks["ea"][-1] == 2 and outbox.pending == 1
    # site b's observation of that tick arrives late: decided alone, same alert id as on time, not dropped
    coord.observation("eb", _obs("b", "10.1.0.9", 1000, 1, 7.0))
    assert coord.stats()["late_observations"] == 1 and acks["eb"] == []
    coord.poll()
    assert acks["eb"][-1] == 1
    ids = {a for a, _ in outbox.next_pending()}
    assert ids == {alert_id("a", "10.0.0.1", 1000.0), alert_id("b", "10.1.0.9", 1000.0)}
    rows = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert [r.get("idle", False) for r in rows] == [False, True, False] and rows[2]["late"] is True


def test_replays_are_ignored_and_positions_survive_a_restart(rig, tmp_path):
    coord, outbox, _, acks = rig
    for seq in (1, 2):
        coord.observation("ea", _obs("a", f"10.0.0.{seq}", 1000, seq, 5.0))
    coord.watermark("ea", _wm("a", 1005, 3))
    coord.watermark("eb", _wm("b", 1005, 1))
    assert outbox.pending == 2 and acks["ea"][-1] == 3
    # the edge reconnects and replays: nothing is decided twice
    coord.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 5.0))
    assert coord.stats()["duplicates"] == 1 and coord.stats()["decisions"] == 2
    # a restarted coordinator on the same outbox knows the positions: the first Ack skips committed messages
    again = Coordinator(threshold_actor(2.0), outbox, ("a", "b"), policy_version="test@1")
    assert again.hello(_hello("a", "ea")) == 3
    again.observation("ea", _obs("a", "10.0.0.2", 1000, 2, 5.0))
    assert again.stats()["duplicates"] == 1 and again.stats()["observations"] == 0


def test_an_invalid_observation_is_skipped_not_replayed_forever(rig):
    coord, _, _, acks = rig
    bad = _obs("a", "10.0.0.1", 1000, 1, 5.0)
    del bad.vector[-1]
    coord.observation("ea", bad)
    assert coord.stats()["invalid_observations"] == 1 and acks["ea"] == [1]
    with pytest.raises(StreamRejected, match="sent an observation of site 'b'"):
        coord.observation("ea", _obs("b", "10.0.0.1", 1000, 2, 5.0))


@pytest.mark.parametrize("sites, hello, code", [
    (("a", "b"), {"site_id": "c"}, "PERMISSION_DENIED"),
    (1, {"site_id": "z"}, "RESOURCE_EXHAUSTED"),
    (("a", "b"), {"obs_dim": 451}, "FAILED_PRECONDITION"),
    (("a", "b"), {"window_s": 10.0}, "FAILED_PRECONDITION"),
    (("a", "b"), {"edge_id": ""}, "INVALID_ARGUMENT"),
])
def test_streams_are_refused_with_a_reason(tmp_path, sites, hello, code):
    outbox = AlertOutbox(tmp_path / "o.sqlite")
    coord = Coordinator(threshold_actor(2.0), outbox, sites, policy_version="v")
    coord.hello(_hello("a", "first"))  # the first site fixes the window length (and fills a count of 1)
    with pytest.raises(StreamRejected) as exc:
        coord.hello(_hello(hello.pop("site_id", "b"), hello.pop("edge_id", "second"), **hello))
    assert exc.value.code == code
    outbox.close()


@pytest.mark.parametrize("sites, timeout, match", [(0, 5.0, "--sites"), (["a", "a"], 5.0, "distinct"),
                                                    (("a",), 0.0, "--tick-timeout")])
def test_bad_coordinator_settings(tmp_path, sites, timeout, match):
    outbox = AlertOutbox(tmp_path / "o.sqlite")
    with pytest.raises(ValueError, match=match):
        Coordinator(threshold_actor(2.0), outbox, sites, policy_version="v", tick_timeout_s=timeout)
    outbox.close()


def _alert(i: int) -> dict:
    return {"alert_id": f"id{i:04d}", "ts": 1000.0 + i, "site_id": "a", "device_id": "d", "level": 3,
            "attack_class": "flood", "confidence": 0.9, "technique_ids": ["T1498"], "evidence": {},
            "policy_version": "v"}


def test_outbox_is_idempotent_bounded_and_monotonic(tmp_path):
    box = AlertOutbox(tmp_path / "o.sqlite", capacity=3)
    assert box.commit([_alert(1), _alert(2)], {"e": ("a", 5)}) == 2
    assert box.commit([_alert(2)], {"e": ("a", 4)}) == 0, "an alert decided again is not queued twice"
    assert box.committed_positions() == {"e": 5}, "positions never move backwards"
    with pytest.raises(TimeoutError, match="waiting for the cloud"):
        box.commit([_alert(3), _alert(4)], {}, timeout=0.2)
    box.mark_posted("id0001")
    assert box.commit([_alert(3), _alert(4)], {}, timeout=1) == 2
    box.mark_posted("id0002")
    assert box.commit([_alert(2)], {}) == 0, "a posted alert is remembered"
    box.mark_rejected("id0003", "HTTP 422")
    assert (box.pending, box.count(1), box.count(2)) == (1, 2, 1)
    box.close()


def test_poster_retries_with_backoff_then_delivers_each_alert_once(tmp_path):
    box = AlertOutbox(tmp_path / "o.sqlite")
    box.commit([_alert(i) for i in range(5)], {})
    with Receiver(tmp_path / "cloud.sqlite", KEY, fail_first=3) as rec:
        poster = CloudPoster(box, rec.url, KEY, backoff_initial_s=0.05, backoff_max_s=0.2).start()
        deadline = time.monotonic() + 20
        while box.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        poster.stop()
    got, posts = read_store(tmp_path / "cloud.sqlite")
    assert sorted(got) == [f"id{i:04d}" for i in range(5)]
    assert poster.failures == 3 and poster.posted == 5 and [s for _, s in posts] == [201] * 5
    # a wrong key is retried (it may be registered later), never dropped
    box.commit([_alert(9)], {})
    with Receiver(tmp_path / "cloud2.sqlite", KEY) as rec:
        poster = CloudPoster(box, rec.url, "wrong-key", backoff_initial_s=0.05, backoff_max_s=0.1).start()
        time.sleep(0.5)
        poster.stop()
    assert box.pending == 1 and poster.failures >= 2
    box.close()


@pytest.mark.parametrize("url, key, match", [("ftp://x", KEY, "http"), ("http://127.0.0.1:1", "", "ingest-key"),
                                            ("http://x", KEY, "allow-plain-http")])
def test_poster_settings(tmp_path, url, key, match):
    box = AlertOutbox(tmp_path / "o.sqlite")
    with pytest.raises(ValueError, match=match):
        CloudPoster(box, url, key)
    box.close()
