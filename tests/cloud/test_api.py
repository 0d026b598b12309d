"""The analyst API end to end through FastAPI's TestClient (real SQLite file, real writer thread)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from cloud.services.convert import alert_public, alert_public_json
from tests.cloud.conftest import fog_alert

ALERTS = "/api/v1/alerts"


def test_post_stores_the_fog_payload_and_maps_attack(api):
    alert = fog_alert()
    r = api.post(alert)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["alert_id"] == alert["alert_id"]
    assert body["ts"] == "2025-11-24T16:00:05Z"
    assert body["technique_ids"] == ["T1046"]
    assert body["tactics"] == [{"id": "TA0007", "name": "Discovery", "technique_id": "T1046"}]
    # fog/detect.py writes baseline_mean; the API speaks baseline
    assert body["evidence"]["top_features"][0] == {"name": "out_distinct_dst_ports", "value": 412.0,
                                                   "baseline": 3.1, "baseline_std": None, "z": 41.2}
    assert body["status"] == "new" and body["explanation_status"] == "pending"


def test_post_is_idempotent_by_alert_id(api):
    alert = fog_alert()
    first = api.post(alert)
    again = api.post(dict(alert, level=1, confidence=0.1))  # a retry never overwrites either
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["level"] == 3 and again.json()["received_at"] == first.json()["received_at"]
    db = api.app.state.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM alerts WHERE alert_id = ?", (alert["alert_id"],)).fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM alert_techniques").fetchone()[0] == 1


def test_concurrent_repeats_store_one_alert(api):
    import concurrent.futures

    alert = fog_alert()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: api.post(alert), range(16)))
    assert codes == [200] * 15 + [201]


def test_fast_ingest_answer_equals_the_public_schema(api):
    """The ingest answer is serialized without building AlertPublic; it must say the same thing."""
    from cloud.models import AlertRow
    from cloud.services.writer import row_dict

    alert = fog_alert(ts=1764000005.123456)
    fast = api.post(alert).json()
    with api.app.state.session_factory() as s:
        row = row_dict(s.get(AlertRow, alert["alert_id"]))
    assert fast == json.loads(alert_public(row).model_dump_json()) == json.loads(alert_public_json(row))


@pytest.mark.parametrize(("field", "value", "expect"), [
    ("level", 5, "less than or equal to 4"),
    ("confidence", 1.5, "less than or equal to 1"),
    ("attack_class", "ddos", "'benign', 'scan', 'flood'"),
    ("alert_id", "../etc/passwd", "should match pattern"),
    ("site_id", "", "should match pattern"),
    ("technique_ids", ["T99"], "should match pattern"),
    ("policy_version", "", "at least 1"),
    ("ts", "yesterday", "valid number"),
    ("ts", 253402300800, "less than or equal to 253402300799"),
    ("unexpected", 1, "Extra inputs are not permitted"),
])
def test_bad_alerts_get_422_naming_the_field(api, field, value, expect):
    r = api.post(fog_alert(**{field: value}))
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert any(field in map(str, d["loc"]) and expect in d["msg"] for d in detail), detail


def test_unknown_technique_is_422_with_a_clear_message(api):
    r = api.post(fog_alert(technique_ids=["T1046", "T9999"]))
    assert r.status_code == 422
    (d,) = r.json()["detail"]
    assert d["loc"] == ["body", "technique_ids"] and d["input"] == "T9999"
    assert "unknown ATT&CK technique id 'T9999'" in d["msg"]
    assert api.get(f"{ALERTS}").json()["items"] == []


def test_attacker_strings_are_cut_never_rejected(api):
    """Long or odd attacker-controlled text must not get an alert refused (that would suppress it)."""
    evidence = fog_alert()["evidence"] | {"mqtt_topics": ["a" * 50_000] + ["t"] * 100,
                                          "hostnames": ["nul\x00byte"], "protocol_summary": "x" * 20_000}
    r = api.post(fog_alert(evidence=evidence))
    assert r.status_code == 201, r.text
    ev = r.json()["evidence"]
    assert len(ev["mqtt_topics"]) == 32 and ev["mqtt_topics"][0].endswith("…[truncated]")
    assert len(ev["mqtt_topics"][0]) == 1024 + len("…[truncated]")
    assert ev["hostnames"] == ["nul\ufffdbyte"]
    assert len(ev["protocol_summary"]) == 4096 + len("…[truncated]")


def test_get_one_with_explanation_and_404(api):
    alert = fog_alert()
    api.post(alert)
    api.wait_explained()
    r = api.get(f"{ALERTS}/{alert['alert_id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["explanation_status"] == "ready"
    assert body["explanation"]["source"] == "builtin"
    assert body["explanation"]["techniques"][0]["id"] == "T1046"
    missing = api.get(f"{ALERTS}/{'0' * 32}")
    assert missing.status_code == 404 and "no alert with alert_id" in missing.json()["detail"]


def test_patch_triage_status_and_note(api):
    alert = fog_alert()
    api.post(alert)
    url = f"{ALERTS}/{alert['alert_id']}"
    r = api.client.patch(url, json={"status": "acknowledged", "note": "looking at the switch logs"},
                         headers=api.analyst)
    assert r.status_code == 200
    assert (r.json()["status"], r.json()["note"]) == ("acknowledged", "looking at the switch logs")
    r = api.client.patch(url, json={"status": "false_positive"}, headers=api.analyst)
    assert r.json()["status"] == "false_positive" and r.json()["note"] == "looking at the switch logs"
    assert api.get(url).json()["status"] == "false_positive"
    assert api.client.patch(url, json={}, headers=api.analyst).status_code == 422
    bad = api.client.patch(url, json={"status": "closed"}, headers=api.analyst)
    assert bad.status_code == 422 and "acknowledged" in bad.json()["detail"][0]["msg"]
    assert api.client.patch(f"{ALERTS}/{'0' * 32}", json={"status": "resolved"},
                            headers=api.analyst).status_code == 404


def _seed(api, n: int = 25) -> list[dict]:
    alerts = []
    for i in range(n):
        a = fog_alert(ts=1764000000.0 + 10 * (i // 2),  # pairs share a ts: the cursor must break ties
                      site_id="site_a" if i % 3 else "site_b", device_id=f"10.0.0.{i % 4}",
                      level=1 + i % 4, attack_class=("scan", "flood", "brute_force")[i % 3],
                      technique_ids=[("T1046", "T1498", "T1110")[i % 3]])
        assert api.post(a).status_code == 201
        alerts.append(a)
    return alerts


def test_cursor_pagination_walks_everything_once_newest_first(api):
    alerts = _seed(api)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = api.get(ALERTS, **params).json()
        seen += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 4 and len(seen) == 25
    assert sorted(a["alert_id"] for a in seen) == sorted(a["alert_id"] for a in alerts)
    keys = [(a["ts"], a["alert_id"]) for a in seen]
    assert keys == sorted(keys, reverse=True)


@pytest.mark.parametrize(("params", "predicate"), [
    ({"site_id": "site_b"}, lambda a: a["site_id"] == "site_b"),
    ({"device_id": "10.0.0.1"}, lambda a: a["device_id"] == "10.0.0.1"),
    ({"level": 2}, lambda a: a["level"] == 2),
    ({"min_level": 3}, lambda a: a["level"] >= 3),
    ({"technique": "T1498"}, lambda a: a["technique_ids"] == ["T1498.001"]),   # parent matches sub-technique
    ({"technique": "T1110.001"}, lambda a: a["technique_ids"] == ["T1110.001"]),
    ({"since": "2025-11-24T16:00:30Z", "until": "2025-11-24T16:01:00Z"},
     lambda a: "2025-11-24T16:00:30Z" <= a["ts"] < "2025-11-24T16:01:00Z"),
])
def test_filters(api, params, predicate):
    alerts = _seed(api)
    everything = api.get(ALERTS, limit=500).json()["items"]
    got = api.get(ALERTS, limit=500, **params).json()["items"]
    assert got, f"filter {params} matched nothing"
    assert {a["alert_id"] for a in got} == {a["alert_id"] for a in everything if predicate(a)}
    assert len(everything) == len(alerts)


def test_status_filter_follows_triage(api):
    alerts = _seed(api, 5)
    api.client.patch(f"{ALERTS}/{alerts[0]['alert_id']}", json={"status": "resolved"}, headers=api.analyst)
    assert [a["alert_id"] for a in api.get(ALERTS, status="resolved").json()["items"]] == [alerts[0]["alert_id"]]
    assert len(api.get(ALERTS, status="new").json()["items"]) == 4


@pytest.mark.parametrize("cursor", ["garbage!", "W10", "WyJ4IiwgMV0"])  # not base64 JSON / [] / ["x", 1]
def test_bad_cursor_is_422(api, cursor):
    r = api.get(ALERTS, cursor=cursor)
    assert r.status_code == 422 and "not a cursor returned by this API" in r.json()["detail"][0]["msg"]


def test_techniques_endpoint(api):
    r = api.get("/api/v1/techniques/T1046")
    assert r.status_code == 200
    t = r.json()
    assert (t["name"], t["url"], t["domain"]) == ("Network Service Discovery",
                                                 "https://attack.mitre.org/techniques/T1046", "enterprise-attack")
    assert t["tactics"] == [{"id": "TA0007", "shortname": "discovery", "name": "Discovery"}]
    assert api.get("/api/v1/techniques/T0814").json()["domain"] == "ics-attack"
    for bad in ("T9999", "T1046.999", "nonsense"):
        r = api.get(f"/api/v1/techniques/{bad}")
        assert r.status_code == 422
        assert f"unknown ATT&CK technique id '{bad}'" in r.json()["detail"][0]["msg"]


def test_healthz_is_open_and_metrics_count(api):
    assert api.client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    alert = fog_alert()
    api.post(alert)
    api.post(alert)
    api.wait_explained()
    text = api.client.get("/metrics", headers=api.ingest).text
    assert 'marlids_cloud_alerts_received_total{result="created"} 1.0' in text
    assert 'marlids_cloud_alerts_received_total{result="duplicate"} 1.0' in text
    assert 'marlids_cloud_explanations_total{source="builtin"} 1.0' in text
    assert "marlids_cloud_commit_batch_size_bucket" in text and 'queue="writer"' in text


def test_oversized_and_too_deep_bodies_are_4xx(make_api):
    api = make_api(max_body_bytes=4096)
    big = fog_alert(evidence={"protocol_summary": "x" * 10_000})
    assert api.post(big).status_code == 413
    deep = "[" * 1500 + "]" * 1500
    r = api.client.post(ALERTS, content=deep, headers=api.ingest | {"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


def test_openapi_document_needs_an_analyst_key(api):
    assert api.client.get("/api/v1/openapi.json").status_code == 401
    spec = api.get("/api/v1/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["ApiKey"]["description"]}
    assert {"/api/v1/alerts", "/api/v1/alerts/{alert_id}", "/api/v1/techniques/{technique_id}",
            "/healthz", "/metrics"} <= set(spec["paths"])


def test_fog_coordinator_evidence_shape_is_accepted(api):
    """fog.detect.feature_evidence/attention_evidence write ``baseline``, ``baseline_std`` and ``z`` (None when
    the benign std is 0), peaks and the full series."""
    evidence = {
        "top_features": [{"name": "pkts_per_s", "value": 900.0, "baseline": 12.0, "baseline_std": 3.0, "z": 296.0},
                         {"name": "arp_ip_mac_conflicts", "value": 4.0, "baseline": 0.0, "baseline_std": 0.0,
                          "z": None}],
        "attention_peaks": [{"t": 1764000000.0, "weight": 0.62}],
        "attention": [{"t": 1763999995.0, "weight": 0.38}, {"t": 1764000000.0, "weight": 0.62}],
        "protocol_summary": "ARP: dozens of replies from one MAC for the gateway address.",
    }
    alert = fog_alert(attack_class="arp_spoof", technique_ids=["T1557.002"], evidence=evidence)
    r = api.post(alert)
    assert r.status_code == 201, r.text
    assert r.json()["evidence"]["top_features"][1]["z"] is None
    api.wait_explained()
    expl = api.get(f"{ALERTS}/{alert['alert_id']}").json()["explanation"]
    assert expl["source"] == "builtin" and "arp_ip_mac_conflicts" in expl["summary"]


def test_full_queue_answers_503_and_loses_nothing(make_api):
    """The database stalls (another connection holds SQLite's write lock): the writer waits, its queue
    fills, further alerts get 503 + Retry-After at once; once the lock goes, every 201 is stored."""
    import concurrent.futures
    import time

    api = make_api(ingest_queue_max=2, explain=False)
    db = api.app.state.settings.database_url.removeprefix("sqlite:///")
    blocker = sqlite3.connect(db, isolation_level=None, timeout=1)
    blocker.execute("BEGIN IMMEDIATE")
    alerts = [fog_alert() for _ in range(8)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(api.post, a) for a in alerts]
        time.sleep(1.0)
        blocker.execute("ROLLBACK")
        responses = [f.result() for f in futures]
    blocker.close()
    codes = [r.status_code for r in responses]
    assert codes.count(503) >= 1 and codes.count(201) >= 1 and set(codes) <= {201, 503}, codes
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1" and "ingest queue full" in refused.json()["detail"]
    with sqlite3.connect(db) as con:
        stored = {row[0] for row in con.execute("SELECT alert_id FROM alerts")}
    assert {a["alert_id"] for a, r in zip(alerts, responses, strict=True) if r.status_code == 201} == stored


def test_site_states_are_reported_by_the_fog_and_read_by_analysts(api):
    c = api.client
    body = {"state": "learning", "grace_elapsed_s": 35.0, "grace_s": 60.0, "grace_windows": 40, "devices_own": 0}
    assert c.put("/api/v1/sites/site_a", json=body, headers=api.analyst).status_code == 403, "ingest role only"
    assert c.put("/api/v1/sites/site_a", json=body, headers=api.ingest).status_code == 200
    assert c.put("/api/v1/sites/site_a", json=body | {"state": "detecting", "devices_own": 7},
                 headers=api.ingest).status_code == 200, "the latest report wins"
    for bad in ({"state": "asleep"}, body | {"grace_s": -1}, body | {"extra": 1}):
        assert c.put("/api/v1/sites/site_b", json=bad, headers=api.ingest).status_code == 422
    assert c.put("/api/v1/sites/bad site", json=body, headers=api.ingest).status_code == 422
    sites = api.get("/api/v1/sites").json()
    assert [(s["site_id"], s["state"], s["devices_own"]) for s in sites] == [("site_a", "detecting", 7)]
    assert c.get("/api/v1/sites", headers=api.ingest).status_code == 403


def test_evidence_names_whose_baseline_it_compares_with(api):
    alert = fog_alert()
    alert["evidence"]["baseline_scope"] = "device"
    assert api.post(alert).json()["evidence"]["baseline_scope"] == "device"
    bad = fog_alert(alert_id="b" * 32)
    bad["evidence"]["baseline_scope"] = "planet"
    assert api.post(bad).status_code == 422


def test_free_text_search_matches_site_device_class_and_ids(api):
    a = fog_alert(device_id="10.0.0.7", attack_class="scan")
    b = fog_alert(device_id="192.168.1.50", site_id="plant_b", attack_class="flood", technique_ids=["T1498"],
                  ts=1764000100.0)
    for x in (a, b):
        assert api.post(x).status_code == 201

    def ids(**params):
        r = api.get("/api/v1/alerts", **params)
        assert r.status_code == 200, r.text
        return {x["alert_id"] for x in r.json()["items"]}

    assert ids(q="0.0.7") == {a["alert_id"]}
    assert ids(q="FLOOD") == ids(q="plant") == {b["alert_id"]}
    assert ids(q=a["alert_id"][:10]) == {a["alert_id"]}
    assert ids(q="%") == ids(q="10_0") == set()  # % and _ are literal characters, not patterns ("10.0" is not "10_0")
    assert api.get("/api/v1/alerts", q="x" * 101).status_code == 422
