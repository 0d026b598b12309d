"""End to end: cloud + fog + two edge daemons (real processes) on the bundled range captures.

Asserts against the captures' ground truth, not against figures the demo prints: every scheduled attack
raises alerts of its ATT&CK technique family, benign windows raise nothing above
level 2, every alert maps to a real window, and all processes and ports are released afterwards.
"""

from __future__ import annotations

import os
import socket

import pandas as pd
import pytest
from rich.console import Console

from tests.conftest import BUNDLED, REPO

pytestmark = pytest.mark.slow


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from marlids.demo import run_demo

    out = tmp_path_factory.mktemp("demo")
    result = run_demo(sorted(BUNDLED.glob("*.pcap")), REPO / "models" / "defender", out,
                      console=Console(file=(out / "console.txt").open("w")))
    return result, out


def test_services_and_ports_are_released(demo_run):
    result, _ = demo_run
    assert {s.name for s in result.services} == {"cloud", "fog", "edge_site_a", "edge_site_b"}
    for s in result.services:
        assert s.proc.poll() is not None, f"{s.name} still running"
    port = int(result.dashboard_url.split(":")[2].split("/")[0])
    assert not _listening(port)


def test_alerts_match_ground_truth(demo_run):
    from fog.alerts import alert_id
    from marlids.demo import _grace_windows
    from training.range.label import label_capture

    result, out = demo_run
    by_id = {a["alert_id"]: a for a in result.alerts}
    assert by_id, "no alert at all"
    grace = _grace_windows(out / "decisions.jsonl")
    matched = 0
    for site in ("site_a", "site_b"):
        frame = label_capture(BUNDLED / f"{site}.pcap")
        # the demo labels the windows its edges metered (--windows-out): the same windows as offline extraction
        m = result.metrics[site]
        assert m["windows"] + m["grace_windows"] == len(frame) and m["malicious"] <= int(frame["label"].sum())
        keys = [alert_id(s, d, t) for s, d, t in zip(frame["site_id"], frame["device_id"], frame["t_start"])]
        in_grace = [k in grace[site] for k in keys]
        t0 = frame["t_start"].min()
        assert all((t - t0 < 60) == g for t, g in zip(frame["t_start"], in_grace)), "the first 60 s learn the baseline"
        # nothing alerts while a site learns its baseline
        assert not any(k in by_id for k, g in zip(keys, in_grace) if g)
        frame = frame[[not g for g in in_grace]]
        attackers = set(pd.read_csv(BUNDLED / f"{site}.groundtruth.csv")["attacker_ip"].astype(str))
        named: list[bool] = []  # per alerted attack window: the attacker is the device or one of its top peers
        hits: dict[str, list[bool]] = {}    # technique family → per alerted window: right family?
        per_attack: dict[str, list[bool]] = {a: [] for a in frame.loc[frame["label"] == 1, "attack"].unique()}
        for w in frame.itertuples():
            a = by_id.get(alert_id(w.site_id, w.device_id, w.t_start))
            if a is None:
                continue
            matched += 1
            assert a["explanation"] and a["explanation"]["evidence_refs"], "alert stored without explanation"
            if w.label == 0:
                assert a["level"] <= 2, f"benign window {w.device_id}@{w.t_start} raised level {a['level']}"
                continue
            peers = a["evidence"].get("peers") or []
            named.append(w.device_id in attackers or any(p["address"] in attackers for p in peers))
            if peers and peers[0]["direction"] == "in" and peers[0]["address"] in attackers:
                assert f"Likely attacker: {peers[0]['address']}" in a["explanation"]["summary"]
            family = str(w.technique_id).split(".")[0]
            right = any(t.split(".")[0] == family for t in a["technique_ids"])
            hits.setdefault(family, []).append(right)
            per_attack[w.attack].append(right)
        # Every scheduled attack after the grace period (each ground-truth interval: scans T1046, SSH brute
        # force T1110, network floods T1498, app-layer DoS T1499, ARP spoofing T1557) raised at least one
        # alert of its own technique family, and most alerts of each family name it.
        for attack, right in per_attack.items():
            assert any(right), f"{site}: scheduled {attack} raised no alert of its technique family"
        assert set(hits) == {"T1046", "T1110", "T1498", "T1499", "T1557"}, f"{site}: families alerted {sorted(hits)}"
        for family, right in hits.items():
            assert sum(right) / len(right) > 0.5, f"{site}: {family} alerts mostly of another family"
        # attribution (evidence.peers): nearly every attack alert names the recorded attacker
        assert named and sum(named) / len(named) >= 0.9, f"{site}: attacker named in {sum(named)}/{len(named)} alerts"
        m = result.metrics[site]
        assert m["fpr"] <= 0.02
        assert m["recall"] >= 0.5
    assert matched == len(result.alerts), "an alert that matches no window of the captures"
    assert all(a["attack_class"] != "benign" and a["level"] >= 2 for a in result.alerts), "an alert names an attack"


def test_incidents_group_every_alert(demo_run):
    """Every stored alert belongs to exactly one incident; the incidents cover every family alerted and are
    far fewer than the alerts (one sweep, one incident)."""
    result, _ = demo_run
    incidents = result.incidents
    assert sum(i["alert_count"] for i in incidents) == len(result.alerts)
    assert {a["incident_id"] for a in result.alerts} == {i["incident_id"] for i in incidents}
    assert {i["attack_class"] for i in incidents} == {a["attack_class"] for a in result.alerts}
    assert len(incidents) <= len(result.alerts) / 3


def test_missing_inputs_are_one_line_errors(tmp_path):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "marlids", "demo", "--out", str(tmp_path / "o"), *args],
                              capture_output=True, text=True, timeout=120, cwd=REPO)

    r = run("--captures", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().startswith("marlids: error:") and "no .pcap" in r.stderr
    (tmp_path / "x.pcap").write_bytes((BUNDLED / "site_a.pcap").read_bytes()[:4096])
    r = run("--captures", str(tmp_path))
    assert r.returncode == 2 and "ground truth" in r.stderr and "Traceback" not in r.stderr
    r = run("--policy", str(tmp_path))
    assert r.returncode == 2 and "actor.pt" in r.stderr


def test_incidents_table_shows_every_family_first_with_dates_in_100_columns():
    from marlids.cli import incidents_table

    fams = ["scan"] * 8 + ["flood", "brute_force", "arp_spoof", "app_dos"]
    incidents = [{"incident_id": f"{i:032x}", "attack_class": f, "actor": "192.168.100.200", "max_level": 4 if f == "scan" else 2,
                  "alert_count": 30 - i, "first_ts": "2026-11-24T13:22:25Z", "last_ts": "2026-11-24T13:23:45Z",
                  "device_ids": ["192.168.50.120", "192.168.50.121", "192.168.50.122"]} for i, f in enumerate(fams)]
    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(incidents_table(incidents, 200, show=5))
    text = console.export_text()
    assert all(f in text for f in set(fams)) and "2026-11-24 13:22:25" in text and "80 s" in text
    assert max(len(line) for line in text.splitlines()) <= 100
