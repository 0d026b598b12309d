"""The dashboard in headless Chromium (Debian's ``chromium``, driven by Playwright) against a real uvicorn
server: log in, list alerts, read an explanation and the evidence charts, triage, take a screenshot; an
XSS payload in the evidence stays text; a suppression is made from an alert, listed, audited and revoked."""

from __future__ import annotations

import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.cloud.conftest import cloud_settings, fog_alert

CHROMIUM = os.environ.get("MARLIDS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
XSS = '<img src=x onerror="window.__xss=1">'
expect = None  # playwright.sync_api.expect, bound by the browser fixture (playwright is optional)


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    if not CHROMIUM:
        pytest.skip("no Chromium executable: install the Debian package 'chromium' (scripts/setup.sh does) "
                    "or set MARLIDS_CHROMIUM")
    global expect
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_dashboard_lists_explains_charts_and_triages(tmp_path: Path, browser):
    from cloud.api.main import BackgroundServer

    settings = cloud_settings(tmp_path / "cloud.db", port=0, bootstrap_keys_file=tmp_path / "keys.json")
    with BackgroundServer(settings) as srv:
        keys = srv.keys
        alerts = [
            fog_alert(ts=1764000000.0, level=2, attack_class="brute_force", technique_ids=["T1110"]),
            fog_alert(ts=1764000010.0, level=4, attack_class="flood", technique_ids=["T1498"]),
            fog_alert(ts=1764000020.0, level=3, evidence=fog_alert()["evidence"] | {
                "hostnames": [XSS], "mqtt_topics": ["<script>x</script>"],
                "peers": [{"address": "10.0.0.66", "port": 22, "direction": "in", "packets": 1800, "bytes": 240000}]}),
        ]
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {keys['ingest']}"}) as c:
            assert [c.post("/api/v1/alerts", json=a).status_code for a in alerts] == [201] * 3
            # the fog reports each site's baseline state: one still in its grace period, one detecting
            for site, st in (("site_a", {"state": "learning", "grace_elapsed_s": 35.0, "grace_s": 60.0}),
                             ("site_b", {"state": "detecting", "grace_s": 60.0, "devices_own": 7})):
                assert c.put(f"/api/v1/sites/{site}", json=st).status_code == 200
        assert srv.app.state.worker.wait_idle(30)

        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        r = page.goto(f"{srv.url}/dashboard")
        assert r.status == 401 and page.locator("#key").is_visible()
        page.fill("#key", keys["analyst"])
        page.click("#login")
        rows = page.locator("#alerts tr")
        expect(rows).to_have_count(3)  # locator waits: the page's CSP forbids eval, so no wait_for_function
        expect(page.locator("#sites [data-site='site_a']")).to_have_text("site_a: learning baseline 35/60 s")
        expect(page.locator("#sites [data-site='site_b']")).to_have_text(
            "site_b: detecting (7 devices with their own baseline)")
        # newest first, with level, technique and the explanation
        assert rows.nth(0).get_attribute("data-id") == alerts[2]["alert_id"]
        assert rows.nth(1).locator(".lvl").inner_text() == "4"
        assert "T1498.001" in rows.nth(1).inner_text()
        link = rows.nth(1).locator("a", has_text="T1498.001")
        assert link.get_attribute("href") == "https://attack.mitre.org/techniques/T1498/001"
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$", rows.nth(1).locator("td").nth(0).inner_text())
        layer = page.request.get(f"{srv.url}{page.locator('#navigator').get_attribute('href')}")
        assert layer.ok and {t["techniqueID"] for t in layer.json()["techniques"]} >= {"T1498.001"}
        assert rows.nth(1).locator("td.ex").inner_text().startswith("Level 4 alert")

        rows.nth(0).click()
        page.locator("#summary").wait_for()
        assert page.locator("#summary").inner_text().startswith("Level 3 alert")
        assert page.locator("#feature-chart rect").count() == 2 * 3    # value + baseline per feature
        assert page.locator("#attention-chart rect").count() == 5      # the attention series
        assert page.locator("#attention-chart rect[fill='#dc2626']").count() == 1   # the peak, in red
        # who: the top peer, inbound, is shown as the likely attacker
        peers = page.locator("#peers tbody tr")
        expect(peers).to_have_count(1)
        assert "10.0.0.66" in peers.nth(0).inner_text() and "likely attacker" in peers.nth(0).inner_text()
        assert "Likely attacker: 10.0.0.66" in page.locator("#summary").inner_text()
        # attacker-controlled strings are shown, as text only
        assert XSS in page.locator("#untrusted").inner_text()
        assert page.locator("#detail img").count() == 0 and page.locator("#detail script").count() == 0
        assert page.evaluate("() => window.__xss") is None

        # incidents: the three alerts of device 10.0.0.7 make incidents; selecting one lists only its alerts,
        # and triage on it applies to all of them
        incident_rows = page.locator("#incidents tr")
        expect(incident_rows).to_have_count(3)  # scan by 10.0.0.7, flood by 10.0.0.7, scan by 10.0.0.66
        attacker_row = page.locator("#incidents tr", has_text="10.0.0.66")
        attacker_row.click()
        expect(rows).to_have_count(1)
        assert rows.nth(0).get_attribute("data-id") == alerts[2]["alert_id"]
        page.locator(".inc-triage[data-status='acknowledged']").click()
        expect(page.locator("#incidents tr", has_text="10.0.0.66").locator("td.st")).to_have_text("acknowledged")
        page.click("#inc-clear")
        expect(rows).to_have_count(3)
        rows.nth(0).click()
        page.locator("#summary").wait_for()

        # alerts over time, filters and search (the API's), paging control hidden when everything is listed
        assert page.locator("#timeline-chart rect").count() >= 1
        assert not page.locator("#more").is_visible()
        page.fill("#f-technique", "t1498")
        page.locator("#f-technique").dispatch_event("change")
        expect(rows).to_have_count(1)
        page.fill("#f-technique", "")
        page.fill("#f-q", "FLOOD")
        page.locator("#f-q").dispatch_event("change")
        expect(rows).to_have_count(1)
        page.fill("#f-q", "")
        page.locator("#f-q").dispatch_event("change")
        expect(rows).to_have_count(3)
        page.select_option("#f-sort", "level")
        expect(rows.nth(0).locator(".lvl")).to_have_text("4")
        page.select_option("#f-sort", "time")
        expect(rows.nth(0)).to_have_attribute("data-id", alerts[2]["alert_id"])
        rows.nth(0).click()
        page.locator("#summary").wait_for()
        # the severity rule is explained in the page's help
        page.click("#help summary")
        assert "at most 2 when no statistic of the window deviates by 3 robust" in page.locator("#help").inner_text()
        # the per-device page: its site's baseline state, its incidents, its alerts listed
        rows.nth(0).locator(".device-link").click()
        expect(page.locator("#device-page h2")).to_have_text("Device 10.0.0.7")
        expect(page.locator("#device-incidents li")).to_have_count(3)
        assert "site_a is learning its baseline (35/60 s)" in page.locator("#device-baseline").inner_text()
        expect(rows).to_have_count(3)
        assert page.input_value("#f-device") == "10.0.0.7"
        rows.nth(0).click()
        page.locator("#summary").wait_for()
        # at 1024 px the detail pane fits the window (it goes below the table instead of off the right edge)
        page.set_viewport_size({"width": 1024, "height": 900})
        box = page.locator("#detail").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 1024
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 1024

        page.fill("#note", "checked the switch port; scanner is the new inventory tool")
        page.click("#btn-fp")
        expect(page.locator("#status")).to_have_text("false_positive")
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 20_000
        if os.environ.get("MARLIDS_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["MARLIDS_KEEP_SCREENSHOT"])

        with httpx.Client(base_url=srv.url, headers={"X-API-Key": keys["analyst"]}) as c:
            stored = c.get(f"/api/v1/alerts/{alerts[2]['alert_id']}").json()
        assert stored["status"] == "false_positive"
        assert stored["note"] == "checked the switch port; scanner is the new inventory tool"

        # suppressions: made from the alert's detail pane (device, first technique, ticked top peer, an expiry,
        # a reason), listed with who made it, audited, revoked
        supp_rows = page.locator("#suppressions tr")
        expect(supp_rows).to_have_count(0)
        page.click("#btn-suppress")
        page.locator("#suppress-form").wait_for()
        page.check("#supp-peer")
        page.select_option("#supp-expiry", "604800")
        page.click("#supp-submit")
        expect(page.locator("#supp-msg")).to_have_text(" give a reason")  # a reason is required
        reason = "inventory scanner <b>ticket 42</b>"
        page.fill("#supp-reason", reason)
        page.click("#supp-submit")
        expect(page.locator("#supp-msg")).to_contain_text("suppression created")
        expect(supp_rows).to_have_count(1)
        row = supp_rows.nth(0)
        expect(row.locator(".supp-reason")).to_have_text(reason)   # attacker-style markup stays text
        assert page.locator("#supp-panel b").count() == 0
        assert "site_a / 10.0.0.7" in row.inner_text() and "10.0.0.66" in row.inner_text()
        assert row.locator(".supp-by").inner_text() == "bootstrap-analyst"
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": keys["analyst"]}) as c:
            (rule,) = c.get("/api/v1/suppressions").json()["items"]
        assert (rule["site_id"], rule["device_id"], rule["peer"]) == ("site_a", "10.0.0.7", "10.0.0.66")
        assert rule["technique_id"] == stored["technique_ids"][0] and rule["source_alert_id"] == alerts[2]["alert_id"]
        assert rule["technique_id"] in row.inner_text()
        assert 6.9 * 86400 < (datetime.fromisoformat(rule["expires_at"].replace("Z", "+00:00"))
                              - datetime.now(UTC)).total_seconds() <= 7 * 86400
        row.locator(".supp-audit-btn").click()
        expect(page.locator("#supp-audit-list li")).to_have_count(1)
        assert "created by bootstrap-analyst" in page.locator("#supp-audit-list li").nth(0).inner_text()
        row.locator(".supp-revoke").click()
        expect(supp_rows).to_have_count(0)
        expect(page.locator("#supp-audit-list li")).to_have_count(2)
        assert "revoked by bootstrap-analyst" in page.locator("#supp-audit-list li").nth(1).inner_text()
        with httpx.Client(base_url=srv.url, headers={"X-API-Key": keys["analyst"]}) as c:
            revoked = c.get(f"/api/v1/suppressions/{rule['suppression_id']}").json()
        assert revoked["active"] is False and revoked["revoked_by"] == "bootstrap-analyst"
        assert "Suppressions:" in page.locator("#help").inner_text()
        assert errors == []
