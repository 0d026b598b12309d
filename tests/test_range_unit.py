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
#: The technique library of the first two sites (site_a/site_b and their training days cover it).
CLASSIC_TECHNIQUES = {"nmap_syn_scan", "nmap_udp_scan", "nmap_version_scan", "hping3_syn_flood", "hping3_udp_flood",
                      "hping3_icmp_flood", "hydra_ssh_bruteforce", "slowloris", "mqtt_connect_flood",
                      "mqtt_publish_flood", "coap_request_flood", "arp_spoof"}
#: The diverse sites of issue 15 (training/evaluation sites, data/captures/sites/); the last four carry benign
#: bulk transfers and late-joining devices after the grace period.
SITES = ["flat_consumer", "warehouse", "office_small", "clinic", "farm", "factory_floor", "hotel", "campus_lab",
         "retail_store", "home_cameras", "shop_backoffice", "lab_greenhouse", "flat_setup"]
FAMILIES = {"T1046": "scan", "T1498": "flood", "T1110": "brute_force", "T1499": "app_dos", "T1557": "arp_spoof"}


def _family(technique: str) -> str:
    return FAMILIES[TECHNIQUES[technique].technique_id.split(".")[0]]


def _ci_raw() -> dict:
    return yaml.safe_load((SCEN_DIR / "ci_short.yaml").read_text())


@pytest.mark.parametrize("name", ["site_a", "site_b", "ci_short", "site_a_train", "site_b_train", *SITES])
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
    assert {x.technique for x in a.attacks} | {x.technique for x in b.attacks} == CLASSIC_TECHNIQUES
    assert load_scenario("ci_short").duration_s <= 60
    every = {x.technique for p in SCEN_DIR.glob("*.yaml") for x in load_scenario(p).attacks}
    assert every == set(TECHNIQUES), f"techniques no bundled scenario runs: {set(TECHNIQUES) - every}"


@pytest.mark.parametrize("site", ["site_a", "site_b"])
def test_training_day_extends_its_site(site):
    base, train = load_scenario(site), load_scenario(f"{site}_train")
    assert train.devices == base.devices and train.subnet == base.subnet
    assert train.seed != base.seed and train.attacks != base.attacks
    assert {x.technique for x in train.attacks} == CLASSIC_TECHNIQUES


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


def _mutate(path: str, value, raw: dict | None = None):
    raw = _ci_raw() if raw is None else raw
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
    with pytest.raises(FileNotFoundError, match="bundled: campus_lab, ci_short, clinic, factory_floor, farm, flat_consumer, flat_setup, "
                                                "home_cameras, hotel, lab_greenhouse, office_small, retail_store, "
                                                "shop_backoffice, site_a, site_a_train, site_b, site_b_train, "
                                                "warehouse"):
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
    # the count bound appears in the command (or in the wordlist it reads, or the addresses it sweeps)
    assert str(count) in cmd or "{wordlist}" in t.command or "{sweep}" in t.command
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


# ---- the diverse sites (issue 15) ---------------------------------------------------------------

def test_sites_vary_network_devices_and_services():
    scens = [load_scenario(n) for n in SITES]
    assert len(scens) >= 8
    assert len({s.subnet for s in scens}) == len(scens)
    firsts = {str(s.subnet).split(".")[0] for s in scens}
    assert {"10", "172", "192"} <= firsts  # 10/8, 172.16/12 and 192.168/16 all present
    assert all(4 <= len(s.devices) <= 14 for s in scens)
    assert len({len(s.devices) for s in scens}) >= 5
    assert len({s.ip(s.attacker_host) for s in scens}) == len(scens)
    assert len({s.attacker_host for s in scens}) >= 10  # the attacker is not always the same host number
    periods = [t.period_s for s in scens for d in s.devices for t in d.telemetry]
    assert min(periods) <= 0.5 and max(periods) >= 60
    assert len({s.dhcp_lease_s for s in scens if s.uses_dhcp}) >= 3
    for key in ("dhcp", "ntp", "mdns", "ssdp", "tls", "ipv6", "telnet_server", "web_admin"):
        users = [s.site for s in scens if any(getattr(d, key) for d in s.devices)]
        assert len(users) >= 3, f"{key} used only by {users}"
    assert sum(bool(s.ipv6_prefix) for s in scens) >= 2


@pytest.mark.parametrize("name", SITES)
def test_site_schedule_rules(name):
    s = load_scenario(name)
    assert 240 <= s.duration_s <= 330
    assert len({_family(a.technique) for a in s.attacks}) >= 4
    for a, b in zip(s.attacks, s.attacks[1:], strict=False):
        assert b.start_s - (a.start_s + a.duration_s) >= 5, f"{a.technique} and {b.technique} closer than 5 s"
    first = s.attacks[0]
    if first.start_s < 60:  # inside the detector's 60 s grace period: only a scan, 10-30 s in
        assert _family(first.technique) == "scan" and 10 <= first.start_s <= 30
        assert s.attacks[1].start_s >= 70
    else:
        assert first.start_s >= 70


def test_sites_family_coverage_and_early_scans():
    scens = [load_scenario(n) for n in SITES]
    for fam in FAMILIES.values():
        n = sum(any(_family(a.technique) == fam for a in s.attacks) for s in scens)
        assert n >= 5, f"family {fam} only in {n} sites (leave-technique-out needs 5)"
    early = [s.site for s in scens if s.attacks[0].start_s < 60]
    assert len(early) == 2, early


# ---- new scenario keys -------------------------------------------------------------------------

def _site(**over) -> dict:
    raw = _ci_raw()
    raw.update(over)
    return raw


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        ("dhcp", {"lease_s": 60}, r"dhcp.lease_s=60; expected an integer in 120..86400 \(dnsmasq never leases"),
        ("dhcp", {"lease": 300}, r"dhcp: unknown key\(s\) \['lease'\]; allowed: \['lease_s'\]"),
        ("ipv6", {"prefix": "2001:db8::/64"}, r"ipv6.prefix='2001:db8::/64'; expected a unique-local"),
        ("ipv6", {"prefix": "fd00::/48"}, r"expected a unique-local \(fc00::/7\) /64 prefix"),
        ("ipv6", {"prefix": "fd00::/64", "ra_interval_s": 1}, r"ipv6.ra_interval_s=1; expected 4..1800"),
        ("cloud", {"host": 11}, r"cloud.host=11 already used by 'sensor-1'"),
        ("cloud", {"host": 400}, r"cloud.host=400; allowed 2..254"),
        ("devices.0.dhcp", "yes", r"devices\[0\].dhcp='yes'; expected true or false"),
        ("devices.0.telnet_server", 1, r"devices\[0\].telnet_server=1; expected true or false"),
        ("devices.0.ntp", {"period_s": 1}, r"devices\[0\].ntp.period_s=1; expected >= 4"),
        ("devices.0.mdns", {"publish": ["http:80"]}, r"devices\[0\].mdns.publish\[0\]='http:80'; expected a DNS-SD"),
        ("devices.0.mdns", {"publish": ["_http._tcp:99999"]}, r"port 1..65535"),
        ("devices.0.mdns", {"resolve": ["plug-1"]}, r"device 'sensor-1' mdns.resolve names 'plug-1', which has no mdns"),
        ("devices.0.mdns", {"resolve": ["fridge"]}, r"mdns.resolve names 'fridge'; allowed: \['sensor-1'"),
        ("devices.0.ssdp", {"notify_interval_s": 30}, r"devices\[0\].ssdp=.*expected announce: true and/or search_period_s"),
        ("devices.0.ssdp", {"announce": True, "notify_interval_s": 2}, r"notify_interval_s=2; expected >= 10"),
        ("devices.0.tls", {"period_s": 5, "protocol": "quic"}, r"devices\[0\].tls\[0\].protocol='quic'; allowed: https, mqtts"),
        ("devices.0.tls", {"protocol": "https"}, r"devices\[0\].tls\[0\]: missing required key\(s\) \['period_s'\]"),
        ("devices.0.ipv6", {"ping": ["plug-1"]}, r"ipv6.ping names 'plug-1', which has no ipv6"),
        ("devices.0.ipv6", {"ping": ["nas"]}, r"ipv6.ping names 'nas'; allowed: .* or 'gateway'"),
        ("devices.3.poll", {"period_s": 3, "telnet": ["camera-1"]}, r"polls telnet on 'camera-1', which has telnet_server: false"),
        ("devices.3.poll", {"period_s": 3, "admin": ["camera-1"]}, r"polls admin on 'camera-1', which has web_admin: false"),
        ("attacks.2.technique", "hydra_telnet_bruteforce", r"hydra_telnet_bruteforce needs a target running 'telnet'"),
        ("attacks.0.port", 80, r"attacks\[0\].port: nmap_syn_scan takes no port; techniques with one: .*hping3_syn_flood"),
        ("attacks.1.port", 70000, r"attacks\[1\].port=70000; expected an integer in 1..65535"),
        ("attacks.1.payload_bytes", 10, r"hping3_syn_flood takes no payload size; techniques with one: .*hping3_udp_flood"),
        ("attacks.1.target", "cloud", r"target='cloud'; allowed: 'subnet', 'gateway', a device name"),
    ],
)
def test_new_keys_validation_names_key_value_and_allowed(path, value, match):
    raw = _ci_raw()
    if path == "cloud" or path == "attacks.1.target":
        for d in raw["devices"]:
            d.pop("tls", None)  # no TLS anywhere: no cloud namespace unless asked for
    with pytest.raises(ValueError, match=match):
        parse_scenario(_mutate(path, value, raw))


def test_ipv6_prefix_needs_an_ipv6_device():
    raw = _ci_raw()
    for d in raw["devices"]:
        d.pop("ipv6", None)
        d.get("mdns", {}).pop("resolve", None)
    with pytest.raises(ValueError, match="ipv6.prefix is set but no device has ipv6"):
        parse_scenario(raw)


def test_new_keys_parse_into_the_scenario():
    s = load_scenario("ci_short")
    assert s.uses_dhcp and s.uses_ntp and s.uses_ipv6 and s.dhcp_lease_s == 120
    assert str(s.ipv6_prefix) == "fd79:3::/64" and s.ra_interval_s == 10
    assert s.cloud_host == 254 and s.cloud_ip == "10.79.3.254"  # default: the highest free host
    assert s.resolve_target("cloud") == ("10.79.3.254", ("https", "mqtts"))
    plug, cam, sensor = s.device("plug-1"), s.device("camera-1"), s.device("sensor-1")
    assert plug.dhcp and plug.services == ("telnet",)
    assert cam.services == ("http", "ssh", "upnp") and cam.tls[0].protocol == "https"
    assert sensor.mdns.publish == (("_coap._udp", 5683),) and sensor.ipv6.ping == ("gateway", "hub")
    assert s.device("hub").ipv6 is not None and s.device("hub").ipv6.ping == ()
    raw = _ci_raw()
    raw["attacks"][1].update(technique="hping3_udp_flood", port=1883, payload_bytes=200)
    a = parse_scenario(raw).attacks[1]
    assert (a.port, a.payload_bytes) == (1883, 200)


# ---- new techniques and recorder pieces --------------------------------------------------------

def test_port_and_payload_render_and_defaults_keep_old_commands():
    syn = TECHNIQUES["hping3_syn_flood"]
    assert syn.render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1")[0].startswith("hping3 -q -S -p 8080 ")
    assert " -p 1883 " in syn.render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1", port=1883)[0]
    udp, _ = TECHNIQUES["hping3_udp_flood"].render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1")
    assert "--udp -p 5683 -d 64 " in udp
    ack, _ = TECHNIQUES["hping3_ack_flood"].render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1",
                                                   port=80, data=100)
    assert ack.startswith("hping3 -q -A -p 80 -d 100 -c 2500 ")
    with pytest.raises(ValueError, match="port=0 for 'hping3_syn_flood'; expected 1..65535"):
        syn.render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1", port=0)


def test_ping_sweep_is_bounded_by_count():
    from training.range.techniques import sweep_targets

    t = TECHNIQUES["nmap_ping_sweep"]
    cmd, count = t.render(target="172.22.0.0/16", duration_s=10, intensity=1.2, gateway="172.22.0.1", hosts=12)
    assert count == 305 and cmd.endswith(" 172.22.0.1-255 172.22.1.0-49")
    assert "--max-rate 34 " in cmd  # 305 addresses over 9 s, whatever the live hosts
    assert sweep_targets("10.1.2.0/26", 500) == "10.1.2.1-62"
    assert sweep_targets("10.1.2.9", 5) == "10.1.2.9"


@pytest.mark.parametrize("name", ["hydra_telnet_bruteforce", "hydra_http_basic_bruteforce"])
def test_new_brute_force_techniques(name):
    t = TECHNIQUES[name]
    assert t.technique_id == "T1110.001" and t.tool == "hydra" and t.service in ("telnet", "admin")
    cmd, _ = t.render(target="10.0.0.5", duration_s=10, gateway="10.0.0.1", wordlist="w.txt")
    assert cmd.startswith("hydra -I -q -l admin -P w.txt ") and "10.0.0.5" in cmd


def test_site_password_never_in_attack_wordlists(tmp_path):
    from training.range.recorder import _telnet_login, _wordlist, site_secret

    for name in SITES:
        s = load_scenario(name)
        secret = site_secret(s)
        assert secret == site_secret(s) and secret.startswith("Lab-")  # seeded
        for i in range(len(s.attacks)):
            words = _wordlist(tmp_path / "w.txt", 400, s.seed + i).read_text().split()
            assert secret not in words
    script = _telnet_login(load_scenario("ci_short").device("plug-1"), "Lab-x'y")
    assert "plug-1" in script and "'Lab-x'\"'\"'y'" in script and "Login incorrect" in script


def test_eui64_and_dnsmasq_arguments():
    from types import SimpleNamespace

    from training.range.recorder import _dnsmasq_args, eui64_address

    assert eui64_address("fd79:3::/64", "02:4d:4c:4f:03:0d") == "fd79:3::4d:4cff:fe4f:30d"
    s = load_scenario("ci_short")
    nodes = {f"d{i}": SimpleNamespace(mac=f"02:4d:4c:4f:03:{d.host:02x}") for i, d in enumerate(s.devices)}
    args = _dnsmasq_args(SimpleNamespace(nodes=nodes), s, Path("/w"))
    assert "--dhcp-range=10.79.3.0,static,255.255.255.0,120" in args
    assert "--dhcp-option=3" in args  # no router option: DHCP clients get no route
    assert "--dhcp-host=02:4d:4c:4f:03:0d,10.79.3.13,plug-1" in args
    assert "--dhcp-option=42,10.79.3.1" in args  # NTP server option
    assert "--ra-param=eth0,10,0" in args  # router lifetime 0: never a default router
    assert "--address=/cloud.lan/10.79.3.254" in args
    old = _dnsmasq_args(SimpleNamespace(nodes={}), load_scenario("site_a"), Path("/w"))
    assert not [a for a in old if a.startswith(("--dhcp", "--enable-ra", "--interface"))]  # old sites unchanged


def test_ssdp_client_checks_its_arguments():
    from training.range.ssdp import SEARCH_TARGETS, m_search

    with pytest.raises(ValueError, match=r"mx=9; expected 1..5"):
        m_search("10.0.0.1", mx=9)
    assert "ssdp:all" in SEARCH_TARGETS


def test_missing_tools_names_busybox_applets(monkeypatch):
    from training.range import recorder

    monkeypatch.setattr(recorder, "_busybox_applets", lambda: {"nslookup", "udhcpc", "ping6"})
    miss = recorder.missing_tools(load_scenario("ci_short"))
    assert "busybox telnetd" in miss and "busybox udhcpc" not in miss


def test_bulk_upload_and_start_s_render_and_old_sessions_keep_their_scripts(tmp_path):
    """A camera-like device: quiet until start_s, then uploads a clip of random bytes over MQTT/TLS."""
    import random

    from training.range.recorder import _tls_script
    from training.range.scenario import INLINE_PAYLOAD_MAX

    def script(scen, name, k):
        return _tls_script(scen.device(name), k, scen, Path("/ca.pem"), 7, random.Random(1), tmp_path)

    raw = _ci_raw()
    cam = next(d for d in raw["devices"] if d.get("tls"))
    name = cam["name"]
    old = script(parse_scenario(raw), name, 0)
    cam["tls"] = [cam["tls"], {"period_s": 90, "protocol": "mqtts", "payload_bytes": 2_000_000, "start_s": 75}]
    s = parse_scenario(raw)
    first, clip = s.device(name).tls
    assert (clip.start_s, clip.payload_bytes) == (75.0, 2_000_000) and first.start_s is None
    bulk = script(s, name, 1)
    assert f"-f {tmp_path / 'clip1.bin'}" in bulk and "head -c $(( 1500000 + " in bulk and "/dev/urandom" in bulk
    assert "\nsleep 75.000\n" in bulk  # quiet until start_s
    assert script(s, name, 0) == old  # the session that was there renders exactly as before
    cam["tls"][1]["payload_bytes"] = INLINE_PAYLOAD_MAX
    inline = script(parse_scenario(raw), name, 1)
    assert " -m " in inline and " -f " not in inline
    for bad, match in (({"payload_bytes": 30_000_000}, r"payload_bytes=30000000"), ({"start_s": -1}, r"start_s=-1"),
                       ({"protocol": "https", "payload_bytes": 2_000_000}, r"payload_bytes=2000000")):
        r = copy.deepcopy(raw)
        next(d for d in r["devices"] if d.get("tls"))["tls"][1].update(bad)
        with pytest.raises(ValueError, match=match):
            parse_scenario(r)


def test_join_s_delays_every_behaviour_loop_of_that_device_only(tmp_path):
    """A device set up late (join_s): each of its loops starts after join_s; other devices' scripts are unchanged."""
    from types import SimpleNamespace

    from training.range.recorder import _start_benign

    def scripts(scen):
        nodes = {f"d{i}": SimpleNamespace(ns=f"ns{i}", ip=scen.ip(d.host), mac=f"02:00:00:00:00:{i:02x}")
                 for i, d in enumerate(scen.devices)}
        nodes["atk"] = SimpleNamespace(ns="atk", ip="10.0.0.66", mac="02:00:00:00:00:ff")
        nodes["gw"] = SimpleNamespace(ns="gw", ip=scen.gateway_ip, mac="02:00:00:00:00:fe")
        started = []
        fake = SimpleNamespace(nodes=nodes, popen=lambda ns, argv, log_path=None: started.append(argv[-1]))
        n = _start_benign(fake, scen, tmp_path, Path("/ca.pem"))
        assert n == len(started)
        return {p: Path(p).read_text() for p in started}

    raw = _ci_raw()
    before = scripts(parse_scenario(raw))
    dev = next(i for i, d in enumerate(raw["devices"]) if d.get("telemetry"))
    raw["devices"][dev]["join_s"] = 30
    s = parse_scenario(raw)
    assert s.devices[dev].join_s == 30.0
    after = scripts(s)
    mine = [p for p in after if f"/d{dev}/" in p]
    assert mine
    for p in after:
        if p in mine:
            assert after[p].startswith("sleep 30.000\n") and after[p].endswith(before[p])
        else:
            assert after[p] == before[p]
    raw["devices"][dev]["join_s"] = -5
    with pytest.raises(ValueError, match=r"join_s=-5"):
        parse_scenario(raw)
    raw["devices"][dev]["join_s"] = raw["duration_s"]
    with pytest.raises(ValueError, match=r"join_s=55 must be below duration_s=55 .* would never join"):
        parse_scenario(raw)
