"""The bundled ATT&CK table (rebuilt from MITRE's STIX data in ../shared) and the alert → technique mapper."""

from __future__ import annotations

import json

import pytest

from cloud.scripts.build_attack_table import build_table, write_table
from cloud.services.attack import CLASS_TECHNIQUES, TABLE_PATH, AttackTable, UnknownTechniqueError
from tests.conftest import SHARED_DATA

ATTACK = SHARED_DATA / "attack"
COPYRIGHT = ("© 2025 The MITRE Corporation. This work is reproduced and distributed with the permission of "
             "The MITRE Corporation.")


@pytest.fixture(scope="module")
def table() -> AttackTable:
    return AttackTable()


@pytest.mark.needs_shared
def test_committed_table_is_what_the_script_builds_from_stix(tmp_path):
    if not (ATTACK / "enterprise-attack-patterns.json").is_file():
        pytest.skip(f"ATT&CK STIX data not found at {ATTACK} (../shared/data is absent)")
    out = write_table(ATTACK, tmp_path / "attack_techniques.json")
    assert json.loads(out.read_text()) == json.loads(TABLE_PATH.read_text())
    assert (tmp_path / "LICENSE.txt").read_bytes() == (ATTACK / "LICENSE.txt").read_bytes()
    # the table holds live techniques only, with MITRE's ids
    stix = json.loads((ATTACK / "enterprise-attack-patterns.json").read_text())["objects"]
    revoked = {r["external_id"] for o in stix if o["type"] == "attack-pattern" and o.get("revoked")
               for r in o["external_references"] if r.get("source_name") == "mitre-attack"}
    techniques = json.loads(out.read_text())["techniques"]
    assert revoked and not revoked & set(techniques)


def test_build_errors_name_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="ATT&CK bundle not found: .*enterprise-attack-patterns.json"):
        build_table(tmp_path)
    with pytest.raises(FileNotFoundError, match="MITRE licence not found"):
        write_table(tmp_path, tmp_path / "out.json")


def test_table_ships_with_mitre_copyright_and_licence(table):
    assert table.copyright == COPYRIGHT and table.version == "18.1"
    licence = (TABLE_PATH.parent / "LICENSE.txt").read_text()
    assert COPYRIGHT in licence and "non-exclusive, royalty-free license to use ATT&CK" in licence
    assert len(table.techniques) > 700


@pytest.mark.parametrize(("tid", "name", "tactics", "domain"), [
    ("T1046", "Network Service Discovery", ["Discovery"], "enterprise-attack"),
    ("T1498.001", "Direct Network Flood", ["Impact"], "enterprise-attack"),
    ("T1110.001", "Password Guessing", ["Credential Access"], "enterprise-attack"),
    ("T1557.002", "ARP Cache Poisoning", ["Credential Access", "Collection"], "enterprise-attack"),
    ("T0814", "Denial of Service", ["Inhibit Response Function"], "ics-attack"),
])
def test_table_entries(table, tid, name, tactics, domain):
    t = table.get(tid)
    assert (t["name"], [x["name"] for x in t["tactics"]], t["domain"]) == (name, tactics, domain)
    assert t["url"].startswith("https://attack.mitre.org/techniques/") and t["stix_id"].startswith("attack-pattern--")


@pytest.mark.parametrize("cls", sorted(CLASS_TECHNIQUES))
def test_every_class_maps_to_known_techniques(table, cls):
    ids, tactics = table.map_alert(cls, [], {})
    assert list(ids) == list(CLASS_TECHNIQUES[cls])
    assert all(tid in table for tid in ids)
    assert {t["technique_id"] for t in tactics} == set(ids)


def test_classes_match_the_fog(table):
    from cloud.schemas import ATTACK_CLASSES as CLOUD_CLASSES
    from fog.attacks import ATTACK_CLASSES

    assert tuple(CLOUD_CLASSES) == tuple(ATTACK_CLASSES) and set(CLASS_TECHNIQUES) == set(ATTACK_CLASSES)


def _feature(name: str, z: float | None) -> dict:
    return {"name": name, "value": 50.0, "baseline": 1.0, "z": z}


@pytest.mark.parametrize(("cls", "sent", "evidence", "expected"), [
    ("flood", ["T1498"], {}, ["T1498.001"]),                         # the fog's parent ID → the sub-technique
    ("brute_force", ["T1110"], {}, ["T1110.001"]),
    ("app_dos", ["T1499"], {}, ["T1499.002"]),
    ("other", ["T1595"], {}, ["T1595"]),                             # only what the fog sent
    ("benign", [], {}, []),
    ("scan", [], {"top_features": [_feature("out_distinct_dst_addrs", 8.0)]}, ["T1046", "T1018"]),
    ("scan", [], {"top_features": [_feature("out_distinct_dst_addrs", 1.0)]}, ["T1046"]),   # too small
    ("scan", [], {"top_features": [_feature("icmp_pkt_fraction", None)]}, ["T1046", "T1018"]),  # value > baseline
    ("flood", [], {"top_features": [_feature("app_dns_pkt_fraction", 6.0)]}, ["T1498.001", "T1498.002"]),
    ("flood", [], {"protocol_summary": "UDP in: thousands of packets, modbus"}, ["T1498.001", "T0814"]),
    ("scan", ["T1046"], {}, ["T1046"]),                              # no duplicate
])
def test_mapper_rules(table, cls, sent, evidence, expected):
    ids, tactics = table.map_alert(cls, sent, evidence)
    assert ids == expected
    assert [t["technique_id"] for t in tactics] == [tid for tid in ids for _ in table.get(tid)["tactics"]]


def test_unknown_id_raises_with_a_clear_message(table):
    with pytest.raises(UnknownTechniqueError, match="unknown ATT&CK technique id 'T1046.999'.*T1498.001"):
        table.map_alert("scan", ["T1046.999"], {})
