"""Cyber range: scenario validation, technique bounds, ground-truth format and the labeling rule.

No root and no tools needed.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from training.range.groundtruth import (
    GROUND_TRUTH_COLUMNS,
    GroundTruthRow,
    read_ground_truth,
    write_ground_truth,
)
from training.range.label import label_windows
from training.range.scenario import load_scenario, parse_scenario
from training.range.techniques import TECHNIQUES, get_technique

SCEN_DIR = Path(__file__).resolve().parents[1] / "training" / "range" / "scenarios"


def _ci_raw() -> dict:
    return yaml.safe_load((SCEN_DIR / "ci_short.yaml").read_text())


@pytest.mark.parametrize("name", ["site_a", "site_b", "ci_short", "site_a_train", "site_b_train"])
def test_bundled_scenarios_load(name):
    s = load_scenario(SCEN_DIR / f"{name}.yaml")
    assert s.site == name.removesuffix("_train") and s.attacks and s.devices
    assert all(s.warmup_s <= a.start_s and a.start_s + a.duration_s <= s.duration_s for a in s.attacks)


def test_bundled_name_resolves_without_path():
    assert load_scenario("site_a").site == "site_a"


def test_sites_differ_and_cover_every_technique():
    a, b = load_scenario("site_a"), load_scenario("site_b")
    assert a.subnet != b.subnet
    assert [d.name for d in a.devices] != [d.name for d in b.devices]
    assert {x.technique for x in a.attacks} | {x.technique for x in b.attacks} == set(TECHNIQUES)
    assert load_scenario("ci_short").duration_s <= 60


@pytest.mark.parametrize("site", ["site_a", "site_b"])
def test_training_day_extends_its_site(site):
    base, train = load_scenario(site), load_scenario(f"{site}_train")
    assert train.devices == base.devices and train.subnet == base.subnet
    assert train.seed != base.seed and train.attacks != base.attacks
    assert {x.technique for x in train.attacks} == set(TECHNIQUES)


def test_extends_errors_name_the_problem(tmp_path):
    (tmp_path / "base.yaml").write_text((SCEN_DIR / "ci_short.yaml").read_text())
    (tmp_path / "day2.yaml").write_text("extends: base\nseed: 5\n")
    day2 = load_scenario(tmp_path / "day2.yaml")
    assert day2.seed == 5 and day2.attacks == load_scenario(tmp_path / "base.yaml").attacks
    (tmp_path / "bad.yaml").write_text("extends: nothing-here\n")
    with pytest.raises(ValueError, match=r"extends='nothing-here'; expected the name of another scenario file.*base"):
        load_scenario(tmp_path / "bad.yaml")
    (tmp_path / "day3.yaml").write_text("extends: day2\n")
    with pytest.raises(ValueError, match="one level only"):
        load_scenario(tmp_path / "day3.yaml")


def _mutate(path: str, value):
    raw = _ci_raw()
    cur = raw
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[int(k)] if k.isdigit() else cur[k]
    last = keys[-1]
    if value is KeyError:
        del cur[last]
    else:
        cur[int(last) if last.isdigit() else last] = value
    return raw


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("attacks.0.technique", "nmap_xmas_scan", r"unknown technique 'nmap_xmas_scan'; allowed: .*nmap_syn_scan"),
        ("attacks.0.target", "fridge", r"target='fridge'; allowed: 'subnet', 'gateway'"),
        ("attacks.2.target", "plug-1", r"hydra_ssh_bruteforce needs a target running 'ssh'"),
        ("attacks.1.target", "subnet", r"needs one host, not a subnet"),
        ("attacks.4.target", "gateway", r"arp_spoof impersonates the gateway"),
        ("attacks.0.start_s", 2, r"must lie within \[warmup_s=6"),
        ("attacks.0.duration_s", 500, r"must lie within"),
        ("attacks.0.intensity", -1, r"intensity=-1; expected > 0"),
        ("subnet", "8.8.8.0/24", r"subnet='8.8.8.0/24'; expected a private IPv4 network"),
        ("subnet", "10.0.0.0/8", r"prefix /16 to /28"),
        ("subnet", "banana", r"subnet='banana'"),
        ("seed", "x", r"seed='x'; expected an integer"),
        ("devices.1.host", 11, r"host=11 of 'camera-1' already used by 'sensor-1'"),
        ("devices.0.name", "Sensor 1", r"devices\[0\].name='Sensor 1'"),
        ("devices.0.colour", "red", r"devices\[0\]: unknown key\(s\) \['colour'\]"),
        ("devices.3.poll", {"period_s": 3, "coap": ["plug-1"]}, r"polls coap on 'plug-1', which has coap_server: false"),
        ("warmup_s", 100, r"warmup_s=100.0; expected < duration_s"),
        ("duration_s", KeyError, r"missing required key\(s\) \['duration_s'\]"),
    ],
)
def test_scenario_validation_names_key_value_and_allowed(path, value, match):
    with pytest.raises(ValueError, match=match):
        parse_scenario(_mutate(path, value))


def test_missing_scenario_file_lists_bundled(tmp_path):
    with pytest.raises(FileNotFoundError, match="bundled: ci_short, site_a, site_a_train, site_b, site_b_train"):
        load_scenario(tmp_path / "nope.yaml")


def test_get_technique_unknown():
    with pytest.raises(ValueError, match="unknown technique 'x'; allowed: arp_spoof, coap_request_flood"):
        get_technique("x")


@pytest.mark.parametrize("name", sorted(TECHNIQUES))
def test_every_technique_renders_bounded(name):
    t = TECHNIQUES[name]
    assert t.technique_id.startswith("T1") and t.tool
    cmd, count = t.render(target="10.79.3.12", duration_s=10, intensity=0.5, gateway="10.79.3.1",
                          wordlist="/tmp/w", python="python3")
    assert not re.search(r"\{[a-z_]+\}", cmd), cmd  # every placeholder filled
    assert count == max(1, round(t.default_count * 0.5))
    # the count bound appears in the command (or in the wordlist it reads)
    assert str(count) in cmd or "{wordlist}" in t.command
    with pytest.raises(ValueError, match="duration_s=0"):
        t.render(target="10.0.0.2", duration_s=0, gateway="10.0.0.1")
    with pytest.raises(ValueError, match="intensity=0"):
        t.render(target="10.0.0.2", duration_s=1, intensity=0, gateway="10.0.0.1")


def test_ground_truth_roundtrip_and_validation(tmp_path):
    rows = [GroundTruthRow(20.5, 30.25, "10.0.0.66", "10.0.0.0/24", "nmap_syn_scan", "T1046", "nmap -sS x"),
            GroundTruthRow(10.0, 12.0, "10.0.0.66", "10.0.0.5", "arp_spoof", "T1557.002", "python -m y")]
    p = write_ground_truth(rows, tmp_path / "x.groundtruth.csv")
    assert p.read_text().splitlines()[0] == ",".join(GROUND_TRUTH_COLUMNS)
    df = read_ground_truth(p)
    assert list(df.columns) == list(GROUND_TRUTH_COLUMNS)
    assert df["attack"].tolist() == ["arp_spoof", "nmap_syn_scan"]  # sorted by start
    assert df["start_ts"].dtype == float
    bad = tmp_path / "bad.csv"
    bad.write_text("start,end\n1,2\n")
    with pytest.raises(ValueError, match="expected exactly"):
        read_ground_truth(bad)
    bad.write_text(",".join(GROUND_TRUTH_COLUMNS) + "\n5,4,10.0.0.1,10.0.0.2,a,T1,c\n")
    with pytest.raises(ValueError, match="end_ts < start_ts"):
        read_ground_truth(bad)
    bad.write_text(",".join(GROUND_TRUTH_COLUMNS) + "\n1,4,attacker,10.0.0.2,a,T1,c\n")
    with pytest.raises(ValueError, match="attacker_ip='attacker'"):
        read_ground_truth(bad)


def _windows(rows):
    return pd.DataFrame(rows, columns=["site_id", "device_id", "t_start", "t_end", "capture", "x_pkts", "peers"])


def test_labeler_rule_on_hand_made_ground_truth():
    A, V, W, G = "10.0.0.66", "10.0.0.5", "10.0.0.7", "10.0.0.1"
    gt = pd.DataFrame([
        {"start_ts": 12.0, "end_ts": 18.0, "attacker_ip": A, "victim_ip": V, "attack": "hping3_syn_flood",
             "mitre_technique": "T1498.001", "tool_command": "hping3"},
        {"start_ts": 30.0, "end_ts": 31.0, "attacker_ip": A, "victim_ip": "10.0.0.0/24", "attack": "nmap_syn_scan",
             "mitre_technique": "T1046", "tool_command": "nmap"},
    ])
    w = _windows([
        ("s", A, 10.0, 15.0, "c", 1.0, [V]),          # attacker, during flood            -> 1
        ("s", V, 15.0, 20.0, "c", 1.0, [A, G]),       # victim talks to attacker, during  -> 1
        ("s", W, 15.0, 20.0, "c", 1.0, [G]),          # bystander during flood            -> 0
        ("s", V, 20.0, 25.0, "c", 1.0, [A]),          # after the flood (t_start > end)   -> 0
        ("s", V, 5.0, 12.0, "c", 1.0, [A]),           # ends exactly at start_ts: [5,12)  -> 0
        ("s", A, 18.0, 23.0, "c", 1.0, [G]),          # starts exactly at end_ts          -> 1
        ("s", W, 30.0, 35.0, "c", 1.0, [A]),          # scanned during sweep              -> 1
        ("s", A, 40.0, 45.0, "c", 1.0, [G]),          # attacker's benign DNS later       -> 0
        ("s", "02:aa:bb:cc:dd:ee", 12.0, 17.0, "c", 1.0, []),  # MAC-only device           -> 0
    ])
    out = label_windows(w, gt, site="site_x")
    assert out["label"].tolist() == [1, 1, 0, 0, 0, 1, 1, 0, 0]
    assert out["attack"].tolist() == ["hping3_syn_flood", "hping3_syn_flood", "benign", "benign", "benign",
                                      "hping3_syn_flood", "nmap_syn_scan", "benign", "benign"]
    assert out.loc[out.label == 0, "technique_id"].eq("").all()
    assert set(out["site"]) == {"site_x"}
    assert list(out.columns[: len(w.columns)]) == list(w.columns)  # window columns kept, labels appended
    assert out["label"].dtype.kind == "i"


def test_labeler_picks_longest_overlap_and_needs_columns():
    A = "10.0.0.66"
    gt = pd.DataFrame([
        {"start_ts": 0.0, "end_ts": 11.0, "attacker_ip": A, "victim_ip": "10.0.0.5", "attack": "first", "mitre_technique": "T1",
             "tool_command": ""},
        {"start_ts": 11.0, "end_ts": 30.0, "attacker_ip": A, "victim_ip": "10.0.0.5", "attack": "second", "mitre_technique": "T2",
             "tool_command": ""},
    ])
    out = label_windows(_windows([("s", A, 10.0, 15.0, "c", 0.0, [])]), gt)
    assert out["attack"].tolist() == ["second"] and out["technique_id"].tolist() == ["T2"]
    assert out["site"].tolist() == ["s"]  # from site_id when no site is given
    with pytest.raises(ValueError, match=r"windows lack column\(s\) \['peers'\]"):
        label_windows(_windows([("s", A, 10.0, 15.0, "c", 0.0, [])]).drop(columns="peers"), gt)


def _main(argv, monkeypatch, capsys) -> tuple[int, str]:
    """Run the ``marlids`` console entry point in-process; return (exit code, stdout + stderr)."""
    import sys

    from marlids.cli import main

    monkeypatch.setattr(sys, "argv", ["marlids", *argv])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out + out.err


def test_cli_record_requires_root_one_line(monkeypatch, capsys):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    code, out = _main(["range", "record", "ci_short", "--out", "/tmp/never"], monkeypatch, capsys)
    assert code == 2
    assert out.strip() == ("marlids: error: `marlids range record` needs root (it creates network namespaces); "
                           "run it with sudo")


def test_cli_validate_bad_technique_one_line(tmp_path, monkeypatch, capsys):
    raw = _ci_raw()
    raw["attacks"][0]["technique"] = "teardrop"
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(copy.deepcopy(raw)))
    code, out = _main(["range", "validate", str(p)], monkeypatch, capsys)
    assert code == 2 and "unknown technique 'teardrop'" in out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out
    code, out = _main(["range", "validate", "site_b"], monkeypatch, capsys)
    assert code == 0 and "site_b: 6 devices, 9 attacks" in out


def test_cli_label_missing_capture_one_line(tmp_path, monkeypatch, capsys):
    code, out = _main(["range", "label", str(tmp_path / "x.pcap"), "--out", str(tmp_path / "o.parquet")],
                      monkeypatch, capsys)
    assert code == 2 and out.strip().startswith("marlids: error:") and len(out.strip().splitlines()) == 1


@pytest.mark.parametrize(("name", "gt"), [("site_a.pcap", "site_a.groundtruth.csv"),
                                          ("amp.dns.RRSIG.fragmented__x__s1.pcap",
                                           "amp.dns.RRSIG.fragmented__x__s1.groundtruth.csv"),
                                          ("b.pcapng", "b.groundtruth.csv")])
def test_default_ground_truth_path(name, gt):
    from training.range.label import default_ground_truth

    assert default_ground_truth(Path("/d") / name) == Path("/d") / gt
