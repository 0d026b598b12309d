"""``marlids fog detect`` on a capture: the runtime path (edge metering and embedder, site baselines, the
fog's decision rule), alerts as strict JSON lines, no labels read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_a_capture_shorter_than_the_grace_period_says_nothing_was_decided(tmp_path):
    """Every window of a 1,500-packet cut of site_b falls in the 60 s grace period: no alert, no metric that
    reads like a result (F1 0.0), and a note saying why and what to do."""
    from scapy.utils import rdpcap, wrpcap

    from edge.baseline import grace_notice
    from marlids.cli import app
    from training.evaluate import score

    cut = tmp_path / "short.pcap"
    wrpcap(str(cut), rdpcap(str(REPO / "data/captures/site_b.pcap"), count=1500))
    out = tmp_path / "alerts.jsonl"
    r = CliRunner().invoke(app, ["fog", "detect", str(cut), "--out", str(out)], terminal_width=200)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())  # rich wraps to the terminal's width
    assert "nothing was decided" in text and "fell in their site's grace period" in text
    assert out.read_text() == ""

    assert grace_notice(3, 12) is None and grace_notice(0, 0) is None
    assert "30 s" in grace_notice(0, 7, 30.0) and "at least 12 windows" in grace_notice(0, 7, 30.0)
    assert "the policy's grace period" in grace_notice(0, 7)  # its own length, not a guess
    frame = pd.DataFrame({"label": [0, 1, 0], "technique_id": ["", "T1046", ""]})
    res = score("MAPPO", frame, np.array([False, True, False]), scored=np.zeros(3, dtype=bool))
    d = res.to_dict()
    assert (d["windows"], d["grace_windows"]) == (0, 3)
    assert all(d[k] is None for k in ("precision", "recall", "f1", "fpr", "mcc"))
    d = score("MAPPO", frame, np.array([False, True, False])).to_dict()
    assert d["f1"] == 1.0 and d["fpr"] == 0.0


def test_a_file_that_is_neither_a_capture_nor_a_window_file_gets_both_reasons(tmp_path):
    from marlids.cli import app

    short = tmp_path / "cut.pcap"
    short.write_bytes(b"\xd4\xc3")  # the start of a pcap magic number, nothing else
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)))
    for f, reason in ((short, "only 2 bytes"), (junk, "starts with 0x00010203")):
        r = CliRunner().invoke(app, ["fog", "detect", str(f)])
        assert r.exit_code != 0
        assert isinstance(r.exception, ValueError)  # `marlids` prints it as "marlids: error: …" and exits 2
        text = " ".join(str(r.exception).split())
        assert "neither a capture nor a window file" in text and reason in text and "not a Parquet file" in text
