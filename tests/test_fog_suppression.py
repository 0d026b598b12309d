"""Suppressions in the fog (issue "Analyst experience", item 6): the rule set and its matching rule, the
coordinator counting instead of posting a matched alert, the poster keeping the rules and reporting hits, and
the whole loop against a real cloud (rule created through the API → fetched → applied → hit counted there)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from fog.coordinator import Coordinator
from fog.outbox import AlertOutbox, CloudPoster
from fog.suppression import SuppressionRule, SuppressionSet, canonical_address
from tests.test_transport_fog import _hello, _obs, _wm
from tests.transport_support import KEY, Receiver, threshold_actor

A, B, C = "a" * 32, "b" * 32, "c" * 32


def _alert(**over) -> dict:
    alert = {"alert_id": "x" * 32, "site_id": "site_a", "device_id": "10.0.0.7", "technique_ids": ["T1046"],
             "evidence": {"peers": [{"address": "10.0.0.66", "port": 22, "direction": "in", "packets": 9,
                                     "bytes": 900},
                                    {"address": "2001:DB8:0:0:0:0:0:1", "port": 80, "direction": "out",
                                     "packets": 3, "bytes": 300}]}}
    alert.update(over)
    return alert


# -- the rule set -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "matches"), [
    ({"device_id": "10.0.0.7"}, True),
    ({"device_id": "10.0.0.8"}, False),
    ({"site_id": "site_a", "device_id": "10.0.0.7"}, True),
    ({"site_id": "site_b", "device_id": "10.0.0.7"}, False),
    ({"technique_id": "T1046"}, True),
    ({"technique_id": "T1498"}, False),
    ({"peer": "10.0.0.66"}, True),
    ({"peer": "2001:db8::1"}, True),                      # the alert's address is canonicalised too
    ({"peer": "10.0.0.67"}, False),
    ({"device_id": "10.0.0.7", "peer": "10.0.0.66", "technique_id": "T1046"}, True),
    ({"device_id": "10.0.0.7", "peer": "10.0.0.66", "technique_id": "T1498"}, False),  # every matcher must match
    ({"device_id": "10.0.0.7", "expires_at": "2000-01-01T00:00:00Z"}, False),
])
def test_matching_rule(rule, matches):
    s = SuppressionSet()
    assert s.replace([{"suppression_id": A, **rule}], now=time.time() - 1e9 if "expires_at" in rule else 0.0) == 1
    assert (s.match(_alert(), now=time.time()) == A) is matches
    assert s.take_counts() == ({A: 1} if matches else {})


def test_expiry_counts_and_malformed_rules():
    s = SuppressionSet()
    soon = (datetime.now(UTC) + timedelta(seconds=100)).isoformat()
    rules = [{"suppression_id": A, "device_id": "10.0.0.7", "expires_at": soon},
             {"suppression_id": B, "peer": "AA-BB-CC-00-11-22"},
             {"suppression_id": "not-an-id", "device_id": "x"},
             {"suppression_id": C, "site_id": "site_a"},           # only a site: refused
             {"suppression_id": C, "peer": "<script>"},            # not an address: refused
             {"suppression_id": C, "device_id": 7},
             {"suppression_id": C, "device_id": "d", "expires_at": "tomorrow"},
             "garbage"]
    now = time.time()
    assert s.replace(rules, now) == 2
    assert s.rules()[1].peer == "aa:bb:cc:00:11:22"
    assert [s.match(_alert(), now + dt) for dt in (0, 50, 99.9, 100, 1000)] == [A, A, A, None, None]
    mac = _alert(device_id="d", evidence={"peers": [{"address": "aa:bb:cc:00:11:22"}]})
    assert s.match(mac, now) == B
    assert s.take_counts() == {A: 3, B: 1} and s.take_counts() == {}
    s.restore_counts({A: 2})
    s.match(_alert(), now)
    assert s.take_counts() == {A: 3}
    # an already expired rule is dropped on replace; counts of rules gone are kept until taken
    s.match(_alert(), now)
    assert s.replace(rules[:1], now + 200) == 0 and len(s) == 0
    assert s.take_counts() == {A: 1}
    rule = SuppressionRule.from_api({"suppression_id": A, "technique_id": "T1046", "expires_at": None})
    assert rule.expires_at is None
    assert canonical_address("::FFFF:10.0.0.1") == "::ffff:a00:1" and canonical_address(None) is None


# -- the coordinator ----------------------------------------------------------------------------------------
@pytest.fixture()
def coord(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    rules = SuppressionSet([{"suppression_id": A, "site_id": "a", "device_id": "10.0.0.1", "technique_id": "T1498"}])
    c = Coordinator(threshold_actor(2.0), outbox, ("a",), policy_version="test@1", tick_timeout_s=5.0,
                    decisions_path=tmp_path / "decisions.jsonl", suppressions=rules)
    acks: list[tuple[int, tuple[int, ...]]] = []
    assert c.hello(_hello("a", "ea")) == 0
    c.attach("ea", acks.append)
    yield c, outbox, rules, acks, tmp_path / "decisions.jsonl"
    c.close()
    outbox.close()


def test_a_matching_alert_is_counted_not_committed(coord):
    c, outbox, rules, acks, decisions = coord
    c.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 5.0))   # alerts (flood, T1498): suppressed
    c.observation("ea", _obs("a", "10.0.0.2", 1000, 2, 5.0))   # alerts: another device, posted
    c.observation("ea", _obs("a", "10.0.0.3", 1000, 3, 0.0))   # no alert
    c.watermark("ea", _wm("a", 1005, 4))
    st = c.stats()
    assert (st["decisions"], st["alerts"], st["alerts_suppressed"]) == (3, 1, 1)
    assert [json.loads(b)["device_id"] for _, b in outbox.next_pending()] == ["10.0.0.2"]
    assert rules.take_counts() == {A: 1}
    # the suppressed window is still flagged to the edge: its baseline does not learn from it
    assert acks[-1] == (4, (1, 2))
    rows = {r["device_id"]: r for r in map(json.loads, decisions.read_text().splitlines())}
    assert rows["10.0.0.1"]["suppressed"] == A and rows["10.0.0.1"]["alert"] is True
    assert "suppressed" not in rows["10.0.0.2"] and "suppressed" not in rows["10.0.0.3"]


def test_without_a_suppression_set_everything_alerting_is_posted(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    c = Coordinator(threshold_actor(2.0), outbox, ("a",), policy_version="test@1")
    try:
        c.hello(_hello("a", "ea"))
        c.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 5.0))
        c.watermark("ea", _wm("a", 1005, 2))
        assert (c.stats()["alerts"], c.stats()["alerts_suppressed"], outbox.pending) == (1, 0, 1)
    finally:
        c.close()
        outbox.close()


# -- the poster ---------------------------------------------------------------------------------------------
def test_a_cloud_without_the_api_is_asked_once(tmp_path, caplog):
    """The test receiver has no GET (HTTP 501): the poster warns once and stops asking; alerts still flow."""
    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    rules = SuppressionSet([{"suppression_id": A, "device_id": "d"}])
    with Receiver(tmp_path / "cloud.sqlite", KEY) as rx:
        poster = CloudPoster(outbox, rx.url, KEY, suppressions=rules, suppressions_refresh_s=0.05)
        assert poster.sync_suppressions() is False
        assert poster.sync_suppressions() is False
        assert len(rules) == 1, "the last rules stay in force"
        assert sum("no suppressions API" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match="suppressions-refresh"):
        CloudPoster(outbox, "http://127.0.0.1:9", KEY, suppressions_refresh_s=0)
    outbox.close()


def test_network_errors_keep_the_rules_and_the_counts(tmp_path):
    outbox = AlertOutbox(tmp_path / "outbox.sqlite")
    rules = SuppressionSet([{"suppression_id": A, "device_id": "10.0.0.7"}])
    rules.match(_alert(), time.time())
    poster = CloudPoster(outbox, "http://127.0.0.1:9", KEY, suppressions=rules, timeout_s=2.0)
    assert poster.sync_suppressions() is False
    assert len(rules) == 1 and rules.take_counts() == {A: 1}
    outbox.close()


# -- end to end: a real cloud -------------------------------------------------------------------------------
def _wait(cond, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_rule_made_in_the_cloud_suppresses_a_fog_alert_and_its_hit_is_counted_there(tmp_path):
    from cloud.api.main import BackgroundServer
    from tests.cloud.conftest import cloud_settings

    settings = cloud_settings(tmp_path / "cloud.db", port=0, bootstrap_keys_file=tmp_path / "keys.json",
                              explain=False)
    with BackgroundServer(settings) as srv:
        analyst = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.keys['analyst']}"})
        r = analyst.post("/api/v1/suppressions", json={"site_id": "a", "device_id": "10.0.0.1",
                                                        "technique_id": "T1498", "reason": "lab load generator"})
        assert r.status_code == 201, r.text
        sid = r.json()["suppression_id"]

        outbox = AlertOutbox(tmp_path / "outbox.sqlite")
        rules = SuppressionSet()
        poster = CloudPoster(outbox, srv.url, srv.keys["ingest"], suppressions=rules, suppressions_refresh_s=1.0)
        coord = Coordinator(threshold_actor(2.0), outbox, ("a",), policy_version="test@1", suppressions=rules)
        poster.start()
        try:
            _wait(lambda: len(rules) == 1, what="the fog to fetch the rule")
            assert rules.rules()[0].suppression_id == sid
            coord.hello(_hello("a", "ea"))
            coord.observation("ea", _obs("a", "10.0.0.1", 1000, 1, 5.0))   # suppressed
            coord.observation("ea", _obs("a", "10.0.0.2", 1000, 2, 5.0))   # posted
            coord.watermark("ea", _wm("a", 1005, 3))
            assert coord.stats()["alerts_suppressed"] == 1
            _wait(lambda: analyst.get(f"/api/v1/suppressions/{sid}").json()["hit_count"] == 1,
                  what="the hit count to reach the cloud")
            _wait(lambda: len(analyst.get("/api/v1/alerts").json()["items"]) == 1, what="the other alert")
            assert analyst.get("/api/v1/alerts").json()["items"][0]["device_id"] == "10.0.0.2"
            audit = analyst.get(f"/api/v1/suppressions/{sid}/audit").json()["items"]
            assert [(e["action"], e["key_name"]) for e in audit] == [("created", "bootstrap-analyst"),
                                                                      ("hits", "bootstrap-ingest")]
            # revoked in the cloud → gone from the fog at its next refresh → the same window would alert
            assert analyst.delete(f"/api/v1/suppressions/{sid}").status_code == 200
            _wait(lambda: len(rules) == 0, what="the fog to drop the revoked rule")
        finally:
            poster.stop()
            coord.close()
            outbox.close()
            analyst.close()
