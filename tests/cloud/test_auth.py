"""API keys (hashed at rest, roles), the one open endpoint, CORS off by default, the dashboard cookie."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat

import pytest

from cloud.services.keys import bootstrap_keys, list_keys, register_key, revoke_key, validate_key
from tests.cloud.conftest import fog_alert

ALERTS = "/api/v1/alerts"


def _routes(app) -> list[tuple[str, str]]:
    """Every operation of the OpenAPI document, plus the document itself (not listed in it)."""
    out = [("GET", "/api/v1/openapi.json")]
    for path, ops in app.openapi()["paths"].items():
        for method in ops:
            out.append((method.upper(), path.replace("{alert_id}", "0" * 32).replace("{technique_id}", "T1046")))
    return out


def test_nothing_but_healthz_is_open(api):
    routes = _routes(api.app)
    assert len(routes) >= 12
    for method, path in routes:
        r = api.client.request(method, path, follow_redirects=False)
        if path == "/healthz":
            assert r.status_code == 200
        elif path == "/dashboard":
            assert r.status_code == 401 and "Analyst API key" in r.text  # the login form, no data
        elif path == "/dashboard/session":
            assert r.status_code == 401  # a login attempt without a key
        elif path == "/dashboard/logout":
            assert r.status_code == 303 and "marlids_key=" in r.headers["set-cookie"]  # forgets, reveals nothing
        else:
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_roles_ingest_posts_analyst_reads(api, header):
    def h(key: str) -> dict[str, str]:
        return {header: f"Bearer {key}" if header == "Authorization" else key}

    alert = fog_alert()
    r = api.client.post(ALERTS, json=alert, headers=h(api.analyst_key))
    assert r.status_code == 403 and "needs a key with role 'ingest'" in r.json()["detail"]
    assert api.client.post(ALERTS, json=alert, headers=h(api.ingest_key)).status_code == 201
    r = api.client.get(ALERTS, headers=h(api.ingest_key))
    assert r.status_code == 403 and "role 'analyst'" in r.json()["detail"]
    assert api.client.patch(f"{ALERTS}/{alert['alert_id']}", json={"status": "resolved"},
                            headers=h(api.ingest_key)).status_code == 403
    assert api.client.get(ALERTS, headers=h(api.analyst_key)).status_code == 200


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer mk_not_a_key"}, {"X-API-Key": "x" * 300},
                                     {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}])
def test_bad_keys_are_401(api, headers):
    r = api.client.get(ALERTS, headers=headers)
    assert r.status_code == 401


def test_keys_are_hashed_at_rest(api):
    db = api.app.state.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT key_hash, role FROM api_keys ORDER BY id").fetchall()
        dump = "\n".join(con.iterdump())
    assert rows == [(hashlib.sha256(api.ingest_key.encode()).hexdigest(), "ingest"),
                    (hashlib.sha256(api.analyst_key.encode()).hexdigest(), "analyst")]
    assert api.ingest_key not in dump and api.analyst_key not in dump
    with open(db, "rb") as fh:
        raw = fh.read()
    assert api.ingest_key.encode() not in raw and api.analyst_key.encode() not in raw


def test_revoked_key_is_refused(api):
    factory = api.app.state.session_factory
    key_id, key = register_key(factory, "to-revoke", "analyst")
    assert api.client.get(ALERTS, headers={"X-API-Key": key}).status_code == 200
    revoke_key(factory, key_id)
    assert api.client.get(ALERTS, headers={"X-API-Key": key}).status_code == 401  # key_cache_s=0 in tests
    assert [k.revoked for k in list_keys(factory) if k.id == key_id] == [True]
    with pytest.raises(ValueError, match="no API key with id 9999"):
        revoke_key(factory, 9999)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"role": "admin"}, "role='admin'; allowed: ingest, analyst"),
    ({"name": "bad name!"}, "name='bad name!'"),
    ({"key": "short"}, "24–256 characters"),
    ({"key": "x" * 30 + " spaces"}, "may only contain"),
])
def test_register_key_argument_errors(api, kwargs, message):
    args = {"name": "k", "role": "ingest"} | kwargs
    with pytest.raises(ValueError, match=message):
        register_key(api.app.state.session_factory, args["name"], args["role"], args.get("key"))


def test_one_key_one_role(api):
    with pytest.raises(ValueError, match="already registered with role 'ingest'"):
        register_key(api.app.state.session_factory, "again", "analyst", api.ingest_key)
    assert register_key(api.app.state.session_factory, "again", "ingest", api.ingest_key)[1] == api.ingest_key


def test_bootstrap_file_created_0600_then_reused(tmp_path, make_api):
    path = tmp_path / "keys" / "cloud-keys.json"
    api = make_api(bootstrap_keys_file=path)
    keys = api.app.state.bootstrap_keys
    assert set(keys) == {"ingest", "analyst"} and all(validate_key(k) for k in keys.values())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text()) == keys
    assert api.client.post(ALERTS, json=fog_alert(), headers={"Authorization": f"Bearer {keys['ingest']}"}
                           ).status_code == 201
    again = bootstrap_keys(api.app.state.session_factory, path)  # existing file: same keys, no new rows
    assert again == keys and len(list_keys(api.app.state.session_factory)) == 4


def test_bad_bootstrap_file_is_a_clear_error(tmp_path, api):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"ingest": "x" * 30}))
    with pytest.raises(ValueError, match="string fields 'ingest', 'analyst'"):
        bootstrap_keys(api.app.state.session_factory, path)


def test_keys_from_the_environment(monkeypatch, make_api):
    ingest, analyst = "fog-shared-ingest-key-0123456789", "analyst-shared-key-0123456789"
    monkeypatch.setenv("MARLIDS_INGEST_KEY", ingest)
    monkeypatch.setenv("MARLIDS_ANALYST_KEY", analyst)
    api = make_api()
    assert api.client.post(ALERTS, json=fog_alert(), headers={"Authorization": f"Bearer {ingest}"}).status_code == 201
    assert api.client.get(ALERTS, headers={"X-API-Key": analyst}).status_code == 200


def test_cors_is_off_by_default(api):
    origin = {"Origin": "https://evil.example"}
    pre = api.client.options(ALERTS, headers=origin | {"Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers
    r = api.client.get(ALERTS, headers=api.analyst | origin)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_cors_only_for_configured_origins(make_api):
    api = make_api(cors_origins=["https://soc.example"])
    ok = api.client.options(ALERTS, headers={"Origin": "https://soc.example", "Access-Control-Request-Method": "GET"})
    assert ok.headers["access-control-allow-origin"] == "https://soc.example"
    bad = api.client.options(ALERTS, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in bad.headers


def test_dashboard_cookie_login_and_csrf_header(api):
    r = api.client.post("/dashboard/session", data={"key": api.ingest_key}, follow_redirects=False)
    assert r.status_code == 401 and "Not a valid analyst key" in r.text
    r = api.client.post("/dashboard/session", data={"key": api.analyst_key}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    alert = fog_alert()
    api.post(alert)
    page = api.client.get("/dashboard")  # the TestClient keeps the cookie
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert api.client.get(ALERTS).status_code == 200
    url = f"{ALERTS}/{alert['alert_id']}"
    refused = api.client.patch(url, json={"status": "resolved"})
    assert refused.status_code == 403 and "X-Requested-With" in refused.json()["detail"]
    assert api.client.patch(url, json={"status": "resolved"}, headers={"X-Requested-With": "marlids"}).status_code == 200


def test_cookie_is_not_secure_over_plain_http_and_logout_clears_it(api):
    r = api.client.post("/dashboard/session", data={"key": api.analyst_key}, follow_redirects=False)
    assert "secure" not in r.headers["set-cookie"].lower()
    assert api.client.get("/dashboard").status_code == 200
    out = api.client.post("/dashboard/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/dashboard"
    cleared = out.headers["set-cookie"]
    assert cleared.startswith('marlids_key=""') and "Max-Age=0" in cleared and "HttpOnly" in cleared
    assert api.client.get("/dashboard").status_code == 401  # back to the login form
    assert api.client.get(ALERTS).status_code == 401


def test_cookie_is_secure_under_tls(make_api):
    """Behind a TLS proxy (forced by the setting) and over HTTPS (the request's scheme) the cookie is Secure."""
    from fastapi.testclient import TestClient

    forced = make_api(cookie_secure=True)
    r = forced.client.post("/dashboard/session", data={"key": forced.analyst_key}, follow_redirects=False)
    assert "; secure" in r.headers["set-cookie"].lower()
    plain = make_api()
    with TestClient(plain.app, base_url="https://testserver") as tls_client:
        r = tls_client.post("/dashboard/session", data={"key": plain.analyst_key}, follow_redirects=False)
        assert "; secure" in r.headers["set-cookie"].lower()
        assert "; secure" in tls_client.post("/dashboard/logout", follow_redirects=False).headers["set-cookie"].lower()
