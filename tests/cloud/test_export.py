"""SIEM exports: ECS-style JSON lines and a STIX 2.1 bundle of sightings of MITRE's attack-patterns
(checked with the OASIS ``stix2`` library and against MITRE's STIX data)."""

from __future__ import annotations

import json

import pytest
import stix2

from tests.cloud.conftest import fog_alert
from tests.conftest import SHARED_DATA


@pytest.fixture
def seeded(api):
    alerts = [fog_alert(ts=1764000000.0 + i, site_id=("site_a", "site_b")[i % 2],
                        attack_class=("scan", "flood", "arp_spoof")[i % 3],
                        technique_ids=[("T1046", "T1498", "T1557.002")[i % 3]]) for i in range(6)]
    for a in alerts:
        assert api.post(a).status_code == 201
    api.wait_explained()
    api.client.patch(f"/api/v1/alerts/{alerts[0]['alert_id']}", json={"status": "acknowledged", "note": "n"},
                     headers=api.analyst)
    return api, alerts


def test_ecs_json_lines(seeded):
    api, alerts = seeded
    r = api.get("/api/v1/export/ecs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    docs = [json.loads(line) for line in r.text.splitlines()]
    assert [d["event"]["id"] for d in docs] == [a["alert_id"] for a in alerts]  # oldest first
    d = docs[1]
    assert d["@timestamp"] == "2025-11-24T16:00:01.000Z"
    assert d["event"]["kind"] == "alert" and d["event"]["severity"] == 3 and d["event"]["risk_score"] == 91.0
    assert d["threat"]["framework"] == "MITRE ATT&CK"
    assert d["threat"]["technique"]["id"] == ["T1498.001"]
    assert d["threat"]["technique"]["reference"] == ["https://attack.mitre.org/techniques/T1498/001"]
    assert d["threat"]["tactic"] == {"id": ["TA0040"], "name": ["Impact"]}
    assert d["observer"]["name"] == "site_b" and d["host"]["name"] == "10.0.0.7"
    assert d["message"].startswith("Level 3 alert") and d["marlids"]["explanation_source"] == "builtin"
    assert docs[0]["labels"]["triage_status"] == "acknowledged"
    only_a = api.get("/api/v1/export/ecs", site_id="site_a").text.splitlines()
    assert len(only_a) == 3


def test_stix_bundle_parses_and_references_attack_patterns(seeded):
    api, alerts = seeded
    bundle = api.get("/api/v1/export/stix").json()
    parsed = stix2.parse(bundle, allow_custom=True, version="2.1")
    by_type: dict[str, list] = {}
    for obj in parsed.objects:
        by_type.setdefault(obj.type, []).append(obj)
    assert len(by_type["sighting"]) == len(alerts)
    patterns = {p.id: p for p in by_type["attack-pattern"]}
    identities = {i.id for i in by_type["identity"]}
    for s in by_type["sighting"]:
        assert s.sighting_of_ref in patterns
        assert set(s.where_sighted_refs) <= identities and s.created_by_ref in identities
        assert s.external_references[0].external_id in {a["alert_id"] for a in alerts}
    ids = {p.external_references[0].external_id for p in patterns.values()}
    assert ids == {"T1046", "T1498.001", "T1557.002"}
    again = api.get("/api/v1/export/stix").json()
    assert sorted(o["id"] for o in again["objects"]) == sorted(o["id"] for o in bundle["objects"])  # deterministic


@pytest.mark.needs_shared
def test_stix_attack_patterns_are_mitre_objects(seeded):
    path = SHARED_DATA / "attack" / "enterprise-attack-patterns.json"
    if not path.is_file():
        pytest.skip(f"ATT&CK STIX data not found at {path} (../shared/data is absent)")
    api, _ = seeded
    mitre = {o["id"]: o for o in json.loads(path.read_text())["objects"] if o["type"] == "attack-pattern"}
    for obj in api.get("/api/v1/export/stix").json()["objects"]:
        if obj["type"] == "attack-pattern":
            m = mitre[obj["id"]]
            assert (obj["name"], obj["created"], obj["modified"]) == (m["name"], m["created"], m["modified"])
            assert obj["kill_chain_phases"] == [p for p in m["kill_chain_phases"]]


def test_navigator_layer_scores_the_techniques_of_a_time_range(seeded):
    """The ATT&CK Navigator layer (format 4.5) of the stored alerts: one entry per technique seen, scored with
    its alert count; a time range and a site narrow it; the layer holds one domain."""
    api, _ = seeded
    layer = api.get("/api/v1/export/navigator").json()
    assert layer["domain"] == "enterprise-attack" and layer["versions"]["layer"] == "4.5"
    assert layer["versions"]["attack"] == "18"
    got = {t["techniqueID"]: t["score"] for t in layer["techniques"]}
    assert got == {"T1046": 2, "T1498.001": 2, "T1557.002": 2}
    assert all(t["comment"].startswith("2 alert(s), highest level 3") for t in layer["techniques"])
    assert layer["gradient"]["minValue"] == 1 and layer["gradient"]["maxValue"] == 2
    late = api.get("/api/v1/export/navigator", since="2025-11-24T16:00:03Z").json()
    assert {t["techniqueID"]: t["score"] for t in late["techniques"]} == {"T1046": 1, "T1498.001": 1, "T1557.002": 1}
    only_b = api.get("/api/v1/export/navigator", site_id="site_b").json()
    assert sum(t["score"] for t in only_b["techniques"]) == 3 and "site_b" in only_b["name"]
    assert api.get("/api/v1/export/navigator", domain="ics-attack").json()["techniques"] == []
    assert api.get("/api/v1/export/navigator", domain="mobile-attack").status_code == 422
