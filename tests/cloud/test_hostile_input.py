"""Hostile input never breaks the API (issue 17): text that is not valid Unicode and non-finite numbers are
refused with a 422 that renders, nothing is stored when the answer is not 2xx, timestamps are epoch
seconds in a bounded range, and whatever the store holds — even rows written around the API — can be
listed, read and exported."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.cloud.conftest import fog_alert

ALERTS = "/api/v1/alerts"
SURROGATE = "\ud800"


def _post_raw(api, text: str):
    return api.client.post(ALERTS, content=text.encode("utf-8"), headers=api.ingest | {"Content-Type": "application/json"})


def _stored_ids(api) -> set[str]:
    db = api.app.state.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        return {r[0] for r in con.execute("SELECT alert_id FROM alerts")}


def _with(path: tuple, value):
    alert = fog_alert()
    target = alert
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return alert


STRING_FIELDS = [("site_id",), ("device_id",), ("policy_version",), ("attack_class",), ("alert_id",),
                 ("evidence", "protocol_summary"), ("evidence", "baseline_scope")]
LIST_FIELDS = [("technique_ids",), ("evidence", "payload_snippets"), ("evidence", "mqtt_topics"),
               ("evidence", "hostnames"), ("evidence", "user_agents"), ("evidence", "dns_names")]


@pytest.mark.parametrize("path", STRING_FIELDS + LIST_FIELDS + [("evidence", "top_features", 0, "name")],
                         ids=lambda p: ".".join(map(str, p)))
def test_lone_surrogates_in_any_string_are_422_and_nothing_is_stored(api, path):
    value = "ok " + SURROGATE + " text"
    alert = _with(path, [value] if path in LIST_FIELDS else value)
    r = _post_raw(api, json.dumps(alert))  # json.dumps writes the surrogate as the escape \ud800
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]  # the answer itself is valid JSON
    assert any(path[0] in map(str, d["loc"]) for d in detail), detail
    assert _stored_ids(api) == set()
    assert api.get(ALERTS).status_code == 200


def test_the_surrogate_error_names_the_field_and_item(api):
    alert = fog_alert()
    alert["evidence"]["hostnames"] = ["fine.local", SURROGATE]
    (d,) = _post_raw(api, json.dumps(alert)).json()["detail"]
    assert d["loc"] == ["body", "evidence", "hostnames"]
    assert "not valid Unicode" in d["msg"] and "item 1" in d["msg"]
    assert d["input"] == ["fine.local", "\\ud800"]


def test_a_valid_surrogate_pair_is_just_text(api):
    alert = fog_alert()
    alert["evidence"]["hostnames"] = ["\U0001f600.local"]
    r = _post_raw(api, json.dumps(alert))  # written as the pair \ud83d\ude00
    assert r.status_code == 201 and r.json()["evidence"]["hostnames"] == ["\U0001f600.local"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400", "-1e999"])
@pytest.mark.parametrize("field", ["confidence", "level", "ts", "feature_value", "extra"])
def test_non_finite_numbers_are_422_that_renders(api, literal, field):
    alert = fog_alert()
    marker = 0.123456789
    if field == "feature_value":
        alert["evidence"]["top_features"][0]["value"] = marker
    elif field == "extra":
        alert["surplus"] = marker
    else:
        alert[field] = marker
    r = _post_raw(api, json.dumps(alert).replace(repr(marker), literal, 1))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["type"] == "json_invalid"
    assert "finite" in detail[0]["ctx"]["error"] or "too large" in detail[0]["ctx"]["error"]
    assert _stored_ids(api) == set()


def test_a_non_finite_value_that_reaches_validation_still_renders():
    """FastAPI echoes the input in a 422; a NaN or a surrogate there used to make the answer itself fail."""
    import asyncio

    from fastapi.exceptions import RequestValidationError

    from cloud.api.errors import validation_error_handler

    exc = RequestValidationError([{"type": "finite_number", "loc": ("body", "confidence"), "msg": "not finite",
                                   "input": float("nan")},
                                  {"type": "x", "loc": ("body", "site_id"), "msg": "bad", "input": SURROGATE,
                                   "ctx": {"limit": float("-inf")}}])
    resp = asyncio.run(validation_error_handler(None, exc))
    body = json.loads(resp.body)
    assert resp.status_code == 422
    assert body["detail"][0]["input"] == "NaN" and body["detail"][1]["input"] == "\\ud800"
    assert body["detail"][1]["ctx"]["limit"] == "-Infinity"


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": ' + b"1" * 5000 + b"}", b"[" * 5000 + b"]" * 5000])
def test_bodies_json_cannot_hold_are_422(api, body):
    r = api.client.post(ALERTS, content=body, headers=api.ingest | {"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(("ts", "iso"), [(0, "1970-01-01T00:00:00Z"), (1764000005.25, "2025-11-24T16:00:05.250000Z"),
                                         (253402300799, "9999-12-31T23:59:59Z")])
def test_ts_is_epoch_seconds_never_milliseconds(api, ts, iso):
    r = api.post(fog_alert(ts=ts))
    assert r.status_code == 201, r.text
    assert r.json()["ts"] == iso


@pytest.mark.parametrize("ts", [-1, 253402300800, 1764000005000, "1764000005", "2025-11-24T16:00:05Z", True, None])
def test_ts_outside_the_range_or_not_a_number_is_422(api, ts):
    r = api.post(fog_alert(ts=ts))
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "ts"], r.text
    assert _stored_ids(api) == set()


def test_since_and_until_are_iso_8601_never_a_guessed_number(api):
    for i in range(3):
        api.post(fog_alert(ts=1764000000.0 + 10 * i))
    got = api.get(ALERTS, since="2025-11-24T16:00:10Z", until="2025-11-24T16:00:20").json()["items"]
    assert [a["ts"] for a in got] == ["2025-11-24T16:00:10Z"]
    for number in ("1764000010", "253402300799", "1.7e9"):
        r = api.get(ALERTS, since=number)
        assert r.status_code == 422 and "give an ISO 8601 time" in r.json()["detail"][0]["msg"], r.text
        assert api.get("/api/v1/export/ecs", until=number).status_code == 422


def test_a_query_parameter_given_twice_is_422_not_the_last_value(api):
    """FastAPI would keep the last of ``site_id=a&site_id=b``; the API takes one value per parameter and says
    so instead of guessing which filter was meant."""
    api.post(fog_alert())
    r = api.client.get(ALERTS, params=[("site_id", "site_a"), ("site_id", "site_b"), ("limit", "5")],
                       headers=api.analyst)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["query", "site_id"] and "given 2 times" in r.json()["detail"][0]["msg"]
    assert api.get(ALERTS, site_id="site_a").status_code == 200


def test_other_bodies_refuse_surrogates_too(api):
    alert = fog_alert()
    api.post(alert)
    url = f"{ALERTS}/{alert['alert_id']}"
    r = api.client.patch(url, content=json.dumps({"note": "a" + SURROGATE}),
                         headers=api.analyst | {"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "note"]
    assert api.get(url).json()["note"] is None
    r = api.client.put("/api/v1/sites/site_a", content=json.dumps({"state": SURROGATE}),
                       headers=api.ingest | {"Content-Type": "application/json"})
    assert r.status_code == 422
    assert api.get("/api/v1/sites").json() == []


def _insert_raw_row(db: str, alert_id: str, evidence_json: str) -> None:
    """Write an alert around the API, as an old version or a hand-edit could have."""
    with sqlite3.connect(db) as con:
        con.execute("INSERT INTO alerts (alert_id, ts_us, site_id, device_id, level, attack_class, confidence, "
                    "technique_ids, tactics, evidence, policy_version, status, note, received_at_us, updated_at_us) "
                    "VALUES (?, 1764000005000000, 'site_a', '10.0.0.9', 3, 'scan', 0.9, '[\"T1046\"]', '[]', ?, "
                    "'p1', 'new', CAST(X'6261642028ff29206e6f7465' AS TEXT), 1764000006000000, 1764000006000000)",
                    (alert_id, evidence_json))
        con.execute("INSERT INTO alert_techniques VALUES (?, 'T1046')", (alert_id,))


def test_reads_never_fail_on_what_the_store_holds(make_api):
    """A lone surrogate and NaN in the stored evidence JSON, invalid UTF-8 in a text column: listing, reading,
    exporting (ECS and STIX) and explaining still work, with U+FFFD / null in place of the bad values."""
    api = make_api()
    good = fog_alert(ts=1764000001.0)
    assert api.post(good).status_code == 201
    db = api.app.state.settings.database_url.removeprefix("sqlite:///")
    bad_id = "b" * 32
    _insert_raw_row(db, bad_id, '{"hostnames": ["evil\\ud800host"], "protocol_summary": "\\udfff", '
                                '"top_features": [{"name": "pkts", "value": NaN, "baseline": 1.0}]}')
    _insert_raw_row(db, "c" * 32, '{"hostnames": ["x\\udc00"], "mqtt_topics": ["ok"]}')
    page = api.get(ALERTS)
    assert page.status_code == 200, page.text
    items = {a["alert_id"]: a for a in page.json()["items"]}
    assert set(items) == {good["alert_id"], bad_id, "c" * 32}
    assert items["c" * 32]["evidence"]["hostnames"] == ["x\ufffd"]
    assert items[bad_id]["note"] == "bad (\ufffd) note"
    one = api.get(f"{ALERTS}/{bad_id}")
    assert one.status_code == 200 and one.json()["evidence"]["top_features"] == []  # NaN evidence: shown empty
    ecs = api.get("/api/v1/export/ecs")
    assert ecs.status_code == 200
    docs = [json.loads(line) for line in ecs.text.splitlines()]
    assert len(docs) == 3
    bad_doc = next(d for d in docs if d["event"]["id"] == bad_id)
    assert bad_doc["marlids"]["evidence"]["hostnames"] == ["evil\ufffdhost"]
    assert bad_doc["marlids"]["evidence"]["top_features"][0]["value"] is None
    assert api.get("/api/v1/export/stix").status_code == 200
    api.app.state.worker.enqueue([bad_id, "c" * 32])
    api.wait_explained()
    assert api.get(f"{ALERTS}/{'c' * 32}").json()["explanation_status"] == "ready"


def test_openapi_declares_the_error_answers(api):
    spec = api.get("/api/v1/openapi.json").json()
    open_ops = {("get", "/healthz"), ("get", "/dashboard"), ("post", "/dashboard/session"),
                ("post", "/dashboard/logout")}
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if (method, path) not in open_ops:
                assert {"401", "403"} <= codes, (method, path, codes)
            if "requestBody" in op:
                assert {"413", "422"} <= codes, (method, path, codes)
            if op.get("parameters"):
                assert "422" in codes, (method, path, codes)
    ts = spec["components"]["schemas"]["AlertCreate"]["properties"]["ts"]
    assert ts["type"] == "number" and ts["maximum"] == 253402300799 and "epoch seconds" in ts["description"]
