"""``/api/v1/suppressions`` (issue "Analyst experience", item 6): create, list, read, change, revoke, audit
(with the key's name and the time), validation, the fog's view (``/active``) and its hit reports (``/hits``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.cloud.conftest import fog_alert

BASE = "/api/v1/suppressions"


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _soon(**delta: float) -> str:
    return _iso(datetime.now(UTC) + timedelta(**delta))


def _create(api, **body):
    body.setdefault("reason", "known inventory scanner")
    return api.client.post(BASE, json=body, headers=api.analyst)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_create_read_list_update_revoke_and_audit(api):
    alert = fog_alert()
    assert api.post(alert).status_code == 201
    t0 = datetime.now(UTC)
    r = _create(api, site_id="site_a", device_id="10.0.0.7", peer="10.0.0.66",
                technique_id="T1046", expires_at=_soon(hours=24), source_alert_id=alert["alert_id"])
    assert r.status_code == 201, r.text
    s = r.json()
    sid = s["suppression_id"]
    assert len(sid) == 32 and int(sid, 16) >= 0
    assert (s["site_id"], s["device_id"], s["peer"], s["technique_id"]) == ("site_a", "10.0.0.7", "10.0.0.66", "T1046")
    assert s["created_by"] == "test-analyst" and s["active"] is True and s["hit_count"] == 0
    assert s["last_hit_at"] is None and s["revoked_at"] is None and s["source_alert_id"] == alert["alert_id"]
    assert abs((_parse(s["created_at"]) - t0).total_seconds()) < 5
    assert api.get(f"{BASE}/{sid}").json() == s

    page = api.get(BASE).json()
    assert [i["suppression_id"] for i in page["items"]] == [sid] and page["next_cursor"] is None
    assert api.get(BASE, device_id="10.0.0.7").json()["items"][0]["suppression_id"] == sid
    assert api.get(BASE, device_id="10.9.9.9").json()["items"] == []

    new_exp = _soon(days=7)
    r = api.client.patch(f"{BASE}/{sid}", json={"reason": "scanner, ticket 42", "expires_at": new_exp},
                         headers=api.analyst)
    assert r.status_code == 200, r.text
    assert r.json()["reason"] == "scanner, ticket 42" and _parse(r.json()["expires_at"]) == _parse(new_exp)
    r = api.client.patch(f"{BASE}/{sid}", json={"expires_at": None}, headers=api.analyst)
    assert r.status_code == 200 and r.json()["expires_at"] is None

    r = api.client.delete(f"{BASE}/{sid}", headers=api.analyst)
    assert r.status_code == 200, r.text
    rev = r.json()
    assert rev["active"] is False and rev["revoked_by"] == "test-analyst" and rev["revoked_at"] is not None
    assert api.client.delete(f"{BASE}/{sid}", headers=api.analyst).json()["revoked_at"] == rev["revoked_at"]
    assert api.client.patch(f"{BASE}/{sid}", json={"reason": "x"}, headers=api.analyst).status_code == 409
    assert api.get(BASE).json()["items"] == []
    assert [i["suppression_id"] for i in api.get(BASE, state="all").json()["items"]] == [sid]

    audit = api.get(f"{BASE}/{sid}/audit").json()
    assert [e["action"] for e in audit["items"]] == ["created", "updated", "updated", "revoked"]
    assert {e["key_name"] for e in audit["items"]} == {"test-analyst"}
    assert all(abs((_parse(e["at"]) - t0).total_seconds()) < 10 for e in audit["items"])
    created = audit["items"][0]["detail"]
    assert created["peer"] == "10.0.0.66" and created["reason"] == "known inventory scanner"
    assert audit["items"][1]["detail"]["before"]["reason"] == "known inventory scanner"
    assert audit["items"][1]["detail"]["after"]["reason"] == "scanner, ticket 42"
    assert audit["items"][2]["detail"]["after"] == {"expires_at": None}
    # paging through the audit
    first = api.get(f"{BASE}/{sid}/audit", limit=3).json()
    rest = api.get(f"{BASE}/{sid}/audit", limit=3, cursor=first["next_cursor"]).json()
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in audit["items"]]
    assert rest["next_cursor"] is None


def test_list_pages_newest_first(api):
    ids = [_create(api, device_id=f"10.0.0.{i}").json()["suppression_id"] for i in range(5)]
    p1 = api.get(BASE, limit=3).json()
    p2 = api.get(BASE, limit=3, cursor=p1["next_cursor"]).json()
    got = [i["suppression_id"] for i in p1["items"] + p2["items"]]
    assert sorted(got) == sorted(ids) and len(p1["items"]) == 3 and p2["next_cursor"] is None


@pytest.mark.parametrize(("body", "where", "text"), [
    ({"reason": "x"}, "body", "at least one of 'device_id', 'peer' or 'technique_id'"),
    ({"site_id": "site_a", "reason": "x"}, "body", "at least one of"),
    ({"technique_id": "T9999", "reason": "x"}, "technique_id", "T9999"),
    ({"technique_id": "t1046", "reason": "x"}, "technique_id", "pattern"),
    ({"peer": "not-an-address", "reason": "x"}, "peer", "IP or MAC"),
    ({"peer": "10.0.0.300", "reason": "x"}, "peer", "IP or MAC"),
    ({"device_id": "d", "reason": "x", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "future"),
    ({"device_id": "d", "reason": "x", "expires_at": 4102444800}, "expires_at", "ISO 8601"),
    ({"device_id": "d", "reason": "x", "expires_at": "4102444800"}, "expires_at", "ISO 8601"),
    ({"device_id": "d", "reason": "x", "expires_at": "2099-01-01T00:00:00"}, "expires_at", "timezone"),
    ({"device_id": "d", "reason": ""}, "reason", "at least 1"),
    ({"device_id": "d", "reason": "r" * 501}, "reason", "at most 500"),
    ({"device_id": "d"}, "reason", "required"),
    ({"device_id": "d", "reason": "x", "action": "drop"}, "action", "Extra inputs"),
    ({"device_id": "d", "reason": "a\x00b"}, "reason", "NUL"),
    ({"device_id": "d", "reason": "\ud800"}, "reason", "Unicode"),
    ({"device_id": "bad id with spaces", "reason": "x"}, "device_id", "pattern"),
    ({"device_id": "d", "reason": "x", "source_alert_id": "<script>"}, "source_alert_id", "pattern"),
])
def test_invalid_suppressions_are_refused_with_422(api, body, where, text):
    r = api.client.post(BASE, content=json.dumps(body), headers={**api.analyst, "Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any((where == "body" or where in e["loc"]) and text in e["msg"] for e in detail), detail
    assert api.get(BASE, state="all").json()["items"] == []


def test_peer_addresses_are_canonical_and_hostile_text_is_stored_verbatim(api):
    r = _create(api, peer="2001:DB8:0:0:0:0:0:1", reason="x")
    assert r.json()["peer"] == "2001:db8::1"
    assert _create(api, peer="AA:BB:CC:00:11:22", reason="x").json()["peer"] == "aa:bb:cc:00:11:22"
    hostile = '<img src=x onerror="alert(1)">\'; DROP TABLE suppressions; -- {{7*7}} ${jndi:ldap://x} \u202e'
    r = _create(api, device_id="10.0.0.7", reason=hostile)
    assert r.status_code == 201 and r.json()["reason"] == hostile
    sid = r.json()["suppression_id"]
    assert api.get(f"{BASE}/{sid}").json()["reason"] == hostile
    assert api.get(f"{BASE}/{sid}/audit").json()["items"][0]["detail"]["reason"] == hostile
    assert len(api.get(BASE).json()["items"]) == 3


def test_update_validation(api):
    sid = _create(api, device_id="d").json()["suppression_id"]
    for body in ({}, {"reason": None}, {"reason": ""}, {"expires_at": "2001-01-01T00:00:00Z"}, {"note": "x"}):
        assert api.client.patch(f"{BASE}/{sid}", json=body, headers=api.analyst).status_code == 422, body
    assert api.client.patch(f"{BASE}/{'0' * 32}", json={"reason": "x"}, headers=api.analyst).status_code == 404
    assert api.get(f"{BASE}/{'0' * 32}").status_code == 404
    assert api.get(f"{BASE}/{'0' * 32}/audit").status_code == 404
    assert api.client.delete(f"{BASE}/{'0' * 32}", headers=api.analyst).status_code == 404
    assert api.get(f"{BASE}/NOT-HEX").status_code == 422
    # nothing changed: no audit row for a refused or empty change
    assert [e["action"] for e in api.get(f"{BASE}/{sid}/audit").json()["items"]] == ["created"]


def test_roles_active_rules_and_hits(api):
    """The ingest key reads the active rules and reports hits but cannot create, change or list rules."""
    keep = _create(api, device_id="10.0.0.7", technique_id="T1046").json()["suppression_id"]
    gone = _create(api, peer="10.0.0.66").json()["suppression_id"]
    soon = _create(api, device_id="10.0.0.8", expires_at=_soon(seconds=1.5)).json()["suppression_id"]
    assert api.client.delete(f"{BASE}/{gone}", headers=api.analyst).status_code == 200

    assert api.client.post(BASE, json={"device_id": "d", "reason": "x"}, headers=api.ingest).status_code == 403
    assert api.client.get(BASE, headers=api.ingest).status_code == 403
    assert api.client.patch(f"{BASE}/{keep}", json={"reason": "x"}, headers=api.ingest).status_code == 403
    assert api.client.delete(f"{BASE}/{keep}", headers=api.ingest).status_code == 403
    assert api.client.get(f"{BASE}/{keep}/audit", headers=api.ingest).status_code == 403
    assert api.client.post(f"{BASE}/hits", json={"counts": {keep: 1}}, headers=api.analyst).status_code == 403
    assert api.client.get(f"{BASE}/active").status_code == 401

    active = api.client.get(f"{BASE}/active", headers=api.ingest)
    assert active.status_code == 200, active.text
    rules = {r["suppression_id"]: r for r in active.json()["items"]}
    assert set(rules) == {keep, soon} and active.json()["truncated"] is False
    assert rules[keep] == {"suppression_id": keep, "site_id": None, "device_id": "10.0.0.7", "peer": None,
                           "technique_id": "T1046", "expires_at": None}
    assert api.client.get(f"{BASE}/active", headers=api.analyst).status_code == 200
    import time

    time.sleep(1.6)
    assert [r["suppression_id"] for r in api.client.get(f"{BASE}/active", headers=api.ingest).json()["items"]] == [keep]
    assert api.get(f"{BASE}/{soon}").json()["active"] is False
    assert {i["suppression_id"] for i in api.get(BASE).json()["items"]} == {keep}

    unknown = "f" * 32
    r = api.client.post(f"{BASE}/hits", json={"counts": {keep: 3, gone: 1, unknown: 2}}, headers=api.ingest)
    assert r.status_code == 200, r.text
    assert r.json() == {"counted": sorted([keep, gone]), "unknown": [unknown]}
    r = api.client.post(f"{BASE}/hits", json={"counts": {keep: 2}}, headers=api.ingest)
    s = api.get(f"{BASE}/{keep}").json()
    assert s["hit_count"] == 5 and s["last_hit_at"] is not None
    assert api.get(f"{BASE}/{gone}").json()["hit_count"] == 1
    hits = [e for e in api.get(f"{BASE}/{keep}/audit").json()["items"] if e["action"] == "hits"]
    assert [(e["key_name"], e["detail"]) for e in hits] == [("test-fog", {"count": 3}), ("test-fog", {"count": 2})]
    for body in ({"counts": {keep: 0}}, {"counts": {keep: -1}}, {"counts": {keep: 1.5}}, {"counts": {"xyz": 1}},
                 {"counts": {keep: 1}, "extra": 1}, {}, {"counts": {f"{i:032x}": 1 for i in range(1001)}}):
        assert api.client.post(f"{BASE}/hits", json=body, headers=api.ingest).status_code == 422, str(body)[:80]
    assert api.get(f"{BASE}/{keep}").json()["hit_count"] == 5


def test_cookie_changes_need_the_csrf_header(api):
    sid = _create(api, device_id="d").json()["suppression_id"]
    api.client.cookies.set("marlids_key", api.analyst_key)
    try:
        assert api.client.delete(f"{BASE}/{sid}").status_code == 403
        assert api.client.post(BASE, json={"device_id": "d", "reason": "x"}).status_code == 403
        r = api.client.post(BASE, json={"device_id": "d", "reason": "x"}, headers={"X-Requested-With": "marlids"})
        assert r.status_code == 201
        assert api.client.delete(f"{BASE}/{sid}", headers={"X-Requested-With": "marlids"}).status_code == 200
    finally:
        api.client.cookies.clear()
