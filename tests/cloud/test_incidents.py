"""Incidents (cloud/services/incidents.py): one attack's alerts grouped as they arrive, through the API."""

from __future__ import annotations

import pytest

from cloud.services.incidents import GAP_S, SPOOFED_MAX_PACKETS, incident_key
from tests.cloud.conftest import fog_alert

T0 = 1764000000.0
SCANNER = "10.0.0.66"


def _scan_at(device: str, t: float, scanner: str = SCANNER, site: str = "site_a", packets: int = 372) -> dict:
    """A scan alert seen at a bystander: its top peer is the scanner, inbound."""
    return fog_alert(ts=t, site_id=site, device_id=device, evidence={
        "peers": [{"address": scanner, "port": 22, "direction": "in", "packets": packets, "bytes": 60 * packets,
                   "ports": 186}]})


def _incidents(api, **params) -> list[dict]:
    r = api.get("/api/v1/incidents", **params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_sweep_is_one_incident_with_its_victims_and_its_own_alert(api):
    alerts = [_scan_at(f"10.0.0.{d}", T0 + 5 * i) for i, d in enumerate((21, 22, 23, 31, 32))]
    alerts.append(fog_alert(ts=T0 + 30, device_id=SCANNER, evidence={  # the scanner's own window, outbound
        "peers": [{"address": "10.0.0.21", "port": 22, "direction": "out", "packets": 373, "bytes": 15666}]}))
    for a in alerts:
        assert api.post(a).status_code == 201
    (inc,) = _incidents(api)
    assert inc["actor"] == SCANNER and inc["actor_role"] == "peer" and inc["attack_class"] == "scan"
    assert inc["alert_count"] == 6 and inc["max_level"] == 3 and inc["site_ids"] == ["site_a"]
    assert set(inc["device_ids"]) == {"10.0.0.21", "10.0.0.22", "10.0.0.23", "10.0.0.31", "10.0.0.32", SCANNER}
    assert inc["first_ts"] == "2025-11-24T16:00:00Z" and inc["last_ts"] == "2025-11-24T16:00:30Z" and inc["technique_ids"]
    page = api.get(f"/api/v1/incidents/{inc['incident_id']}/alerts").json()
    assert {a["alert_id"] for a in page["items"]} == {a["alert_id"] for a in alerts}
    assert all(a["incident_id"] == inc["incident_id"] for a in page["items"])
    # a repeated post (the fog retrying) changes nothing: incidents are as idempotent as alerts
    assert api.post(alerts[0]).status_code == 200
    assert _incidents(api)[0]["alert_count"] == 6


def test_gap_rule_other_actor_other_family_and_site_scope_split_incidents(api):
    posts = [_scan_at("10.0.0.21", T0), _scan_at("10.0.0.22", T0 + GAP_S - 5),           # same incident (gap < 300 s)
             _scan_at("10.0.0.23", T0 + 3 * GAP_S),                                       # after a long pause: new
             _scan_at("10.0.0.21", T0 + 10, scanner="10.0.0.77"),                         # another scanner: new
             fog_alert(ts=T0 + 15, attack_class="flood", technique_ids=["T1498"], evidence=_scan_at("x", 0)["evidence"]),
             _scan_at("10.0.0.21", T0 + 20, site="site_b")]                               # private actor, other site
    for a in posts:
        assert api.post(a).status_code == 201
    got = sorted((i["attack_class"], i["actor"], tuple(i["site_ids"]), i["alert_count"]) for i in _incidents(api))
    assert got == [("flood", SCANNER, ("site_a",), 1), ("scan", SCANNER, ("site_a",), 1),
                   ("scan", SCANNER, ("site_a",), 2), ("scan", SCANNER, ("site_b",), 1),
                   ("scan", "10.0.0.77", ("site_a",), 1)]


def test_public_actor_spans_sites_and_spoofed_sources_group_by_victim(api):
    attacker = "8.8.4.4"  # a public (global) address: one host wherever it is seen
    for site in ("site_a", "site_b"):
        assert api.post(_scan_at("10.0.0.21", T0, scanner=attacker, site=site)).status_code == 201
    (inc,) = _incidents(api)
    assert inc["site_ids"] == ["site_a", "site_b"] and inc["alert_count"] == 2
    spoofed = [fog_alert(ts=T0 + 100 + 5 * i, attack_class="flood", technique_ids=["T1498"], device_id="10.0.0.5",
                         evidence=_scan_at("x", 0, scanner=f"1.2.3.{i}", packets=SPOOFED_MAX_PACKETS - 1)["evidence"])
               for i in range(4)]
    for a in spoofed:
        assert api.post(a).status_code == 201
    (flood,) = _incidents(api, attack_class="flood")
    assert flood["actor"] == "many sources → 10.0.0.5" and flood["alert_count"] == 4


def test_filters_paging_and_triage_of_an_incident_applies_to_its_alerts(api):
    for i in range(3):  # three scanners: three incidents
        assert api.post(_scan_at("10.0.0.21", T0 + i, scanner=f"10.0.0.{100 + i}")).status_code == 201
        assert api.post(_scan_at("10.0.0.22", T0 + i + 5, scanner=f"10.0.0.{100 + i}")).status_code == 201
    first = api.get("/api/v1/incidents", limit=2).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = api.get("/api/v1/incidents", limit=2, cursor=first["next_cursor"]).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert len(_incidents(api, device_id="10.0.0.22")) == 3 and _incidents(api, site_id="nowhere") == []
    inc = first["items"][0]
    r = api.client.patch(f"/api/v1/incidents/{inc['incident_id']}", json={"status": "false_positive",
                                                                       "note": "the inventory scanner"},
                         headers=api.analyst)
    assert r.status_code == 200 and r.json()["status"] == "false_positive"
    alerts = api.get(f"/api/v1/incidents/{inc['incident_id']}/alerts").json()["items"]
    assert len(alerts) == 2 and {a["status"] for a in alerts} == {"false_positive"}
    assert len(_incidents(api, status="false_positive")) == 1
    # a closed incident takes no new alerts: the same scanner again opens a new one
    assert api.post(_scan_at("10.0.0.23", T0 + 12, scanner=inc["actor"])).status_code == 201
    assert len(_incidents(api)) == 4
    assert api.get("/api/v1/incidents/" + "0" * 32).status_code == 404
    assert api.get("/api/v1/incidents/not-an-id").status_code == 422
    assert api.client.get("/api/v1/incidents", headers=api.ingest).status_code == 403


@pytest.mark.parametrize("peers, actor, role", [
    ([], "10.0.0.7", "device"),
    ([{"address": "10.0.0.66", "port": 22, "direction": "in", "packets": 500, "bytes": 1}], "10.0.0.66", "peer"),
    ([{"address": "10.0.0.66", "port": 22, "direction": "out", "packets": 500, "bytes": 1}], "10.0.0.7", "device"),
])
def test_actor_rule(peers, actor, role):
    key, got_actor, got_role = incident_key({"attack_class": "scan", "site_id": "s", "device_id": "10.0.0.7",
                                             "evidence": {"peers": peers}})
    assert (got_actor, got_role) == (actor, role) and key == f"scan|s|{actor}"
