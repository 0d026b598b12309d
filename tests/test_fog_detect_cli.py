"""``marlids fog detect`` on a capture: the runtime path (edge metering and embedder, site baselines, the
fog's decision rule), alerts as strict JSON lines, no labels read."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


def test_fog_detect_writes_alerts_of_the_decision_rule(tmp_path):
    from marlids.cli import app

    out = tmp_path / "alerts.jsonl"
    r = CliRunner().invoke(app, ["fog", "detect", str(REPO / "data/captures/site_b.pcap"), "--out", str(out),
                                 "--top", "3"])
    assert r.exit_code == 0, r.output
    assert "marlids train eval" in r.output
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert alerts, "no alert on a capture with nine scheduled attacks"
    t0 = min(a["ts"] for a in alerts)
    for a in alerts:
        assert a["attack_class"] != "benign" and 2 <= a["level"] <= 4 and a["confidence"] >= 0.5
        assert a["site_id"] == "site_b" and a["technique_ids"] and a["evidence"]["protocol_summary"]
    assert not any(a["learning"] for a in alerts)
    assert t0 >= 1e9  # epoch seconds
