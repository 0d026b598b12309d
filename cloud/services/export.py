"""Exports: ECS-style JSON lines (Elastic Common Schema 8.x field names) and a STIX 2.1 bundle.

STIX: one ``identity`` for marlids, one ``identity`` (class ``system``) per site, the ATT&CK
``attack-pattern`` objects the alerts reference (with MITRE's own STIX IDs, so they join with the
ATT&CK bundles), and one ``sighting`` per alert × technique. IDs are deterministic (UUIDv5), so
re-exporting the same alerts yields the same objects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from cloud.services.attack import AttackTable
from cloud.services.convert import us_to_dt

NAMESPACE = uuid.UUID("6f1c7a53-6c55-4e55-9d5e-6d61726c6964")  # fixed: deterministic STIX ids
MARLIDS_IDENTITY = f"identity--{uuid.uuid5(NAMESPACE, 'marlids')}"


def _iso(us: int) -> str:
    return us_to_dt(us).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def to_ecs(row: dict[str, Any], table: AttackTable, explanation: dict[str, Any] | None = None) -> dict[str, Any]:
    """One stored alert as an ECS-style document.

    ``event.severity`` is the alert level (0–4), ``event.risk_score`` the confidence × 100, ATT&CK
    under ``threat.*``; fields ECS has no name for live under ``marlids.*``.
    """
    techs = [table.get(t) for t in row["technique_ids"]]
    doc: dict[str, Any] = {
        "@timestamp": _iso(row["ts_us"]),
        "ecs": {"version": "8.11.0"},
        "event": {"kind": "alert", "category": ["network", "intrusion_detection"], "type": ["info"],
                  "id": row["alert_id"], "dataset": "marlids.alert", "module": "marlids",
                  "severity": row["level"], "risk_score": round(row["confidence"] * 100, 2),
                  "created": _iso(row["received_at_us"])},
        "observer": {"name": row["site_id"], "type": "ids", "vendor": "marlids", "product": "marlids"},
        "host": {"name": row["device_id"]},
        "rule": {"name": row["attack_class"], "version": row["policy_version"]},
        "threat": {"framework": "MITRE ATT&CK",
                   "technique": {"id": [t["id"] for t in techs], "name": [t["name"] for t in techs],
                                 "reference": [t["url"] for t in techs]},
                   "tactic": {"id": list(dict.fromkeys(x["id"] for x in row["tactics"])),
                              "name": list(dict.fromkeys(x["name"] for x in row["tactics"]))}},
        "labels": {"site_id": row["site_id"], "triage_status": row["status"]},
        "marlids": {"level": row["level"], "confidence": row["confidence"], "evidence": row["evidence"],
                    "note": row["note"]},
    }
    if explanation is not None:
        doc["message"] = explanation.get("summary")
        doc["marlids"]["explanation_source"] = explanation.get("source")
    return doc


def ecs_lines(rows: Iterable[dict[str, Any]], table: AttackTable,
              explanations: dict[str, dict[str, Any]] | None = None) -> Iterator[str]:
    """JSON lines (one ECS document per alert, newline-terminated)."""
    explanations = explanations or {}
    for row in rows:
        yield json.dumps(to_ecs(row, table, explanations.get(row["alert_id"])), ensure_ascii=False) + "\n"


def stix_bundle(rows: Iterable[dict[str, Any]], table: AttackTable) -> dict[str, Any]:
    """A STIX 2.1 bundle of sightings of ATT&CK attack-patterns, one per alert × technique."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    objects: dict[str, dict[str, Any]] = {
        MARLIDS_IDENTITY: {"type": "identity", "spec_version": "2.1", "id": MARLIDS_IDENTITY,
                           "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
                           "name": "marlids", "identity_class": "system",
                           "description": "marlids multi-agent RL intrusion detection for IoT"}}
    sightings: list[dict[str, Any]] = []
    for row in rows:
        site_ref = f"identity--{uuid.uuid5(NAMESPACE, 'site:' + row['site_id'])}"
        objects.setdefault(site_ref, {"type": "identity", "spec_version": "2.1", "id": site_ref,
                                      "created": "2026-01-01T00:00:00.000Z", "modified": "2026-01-01T00:00:00.000Z",
                                      "name": f"site {row['site_id']}", "identity_class": "system",
                                      "created_by_ref": MARLIDS_IDENTITY})
        ts = _iso(row["ts_us"])
        for tid in row["technique_ids"]:
            tech = table.get(tid)
            objects.setdefault(tech["stix_id"], {  # MITRE's own object (id, created, modified) re-stated
                "type": "attack-pattern", "spec_version": "2.1", "id": tech["stix_id"],
                "created": tech["created"], "modified": tech["modified"], "name": tech["name"],
                "external_references": [{"source_name": "mitre-attack", "external_id": tid, "url": tech["url"]}],
                "kill_chain_phases": [{"kill_chain_name": "mitre-ics-attack" if tech["domain"] == "ics-attack"
                                       else "mitre-attack", "phase_name": t["shortname"]} for t in tech["tactics"]]})
            sid = f"sighting--{uuid.uuid5(NAMESPACE, row['alert_id'] + '|' + tid)}"
            sightings.append({
                "type": "sighting", "spec_version": "2.1", "id": sid, "created": _iso(row["received_at_us"]),
                "modified": _iso(row["updated_at_us"]), "created_by_ref": MARLIDS_IDENTITY,
                "sighting_of_ref": tech["stix_id"], "first_seen": ts, "last_seen": ts, "count": 1,
                "where_sighted_refs": [site_ref], "confidence": round(row["confidence"] * 100),
                "description": f"marlids alert {row['alert_id']}: level {row['level']} {row['attack_class']} "
                               f"on device {row['device_id']}",
                "external_references": [{"source_name": "marlids", "external_id": row["alert_id"]}],
                "x_marlids_level": row["level"], "x_marlids_device_id": row["device_id"],
                "x_marlids_triage_status": row["status"]})
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": [*objects.values(), *sightings],
            "x_marlids_generated": now}


#: ATT&CK Navigator versions the layer is written for (layer format 4.5, Navigator 5.x).
NAVIGATOR_LAYER_VERSION = "4.5"
NAVIGATOR_VERSION = "5.1.0"
NAVIGATOR_DOMAINS = ("enterprise-attack", "ics-attack")


def navigator_layer(rows: Iterable[dict[str, Any]], table: AttackTable, *, domain: str = "enterprise-attack",
                    name: str = "marlids alerts") -> dict[str, Any]:
    """An ATT&CK Navigator layer (format 4.5) of the techniques the alerts ``rows`` carry, in one domain.

    Each technique seen is scored with its number of alerts (the colour gradient runs from 1 to the most),
    and commented with its highest level, its sites and its first and last alert time (ISO 8601, UTC).
    Techniques of the other domain are left out (a Navigator layer holds one domain).

    Raises
    ------
    ValueError
        For a domain other than :data:`NAVIGATOR_DOMAINS`.
    """
    if domain not in NAVIGATOR_DOMAINS:
        raise ValueError(f"domain {domain!r}: expected one of {', '.join(NAVIGATOR_DOMAINS)}")
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        for tid in row["technique_ids"]:
            if tid not in table or table.get(tid)["domain"] != domain:
                continue
            s = seen.setdefault(tid, {"n": 0, "level": 0, "sites": set(), "first": row["ts_us"], "last": row["ts_us"]})
            s["n"] += 1
            s["level"] = max(s["level"], int(row["level"]))
            s["sites"].add(str(row["site_id"]))
            s["first"] = min(s["first"], row["ts_us"])
            s["last"] = max(s["last"], row["ts_us"])
    techniques = [{
        "techniqueID": tid, "score": s["n"], "enabled": True, "showSubtechniques": True,
        "comment": (f"{s['n']} alert(s), highest level {s['level']}, sites {', '.join(sorted(s['sites']))}, "
                    f"{_iso(s['first'])} … {_iso(s['last'])}"),
    } for tid, s in sorted(seen.items())]
    top = max((t["score"] for t in techniques), default=1)
    return {
        "name": name, "domain": domain,
        "versions": {"attack": table.version.split(".")[0], "navigator": NAVIGATOR_VERSION,
                     "layer": NAVIGATOR_LAYER_VERSION},
        "description": "Techniques of the alerts stored by marlids (score = number of alerts).",
        "sorting": 3, "hideDisabled": False, "techniques": techniques,
        "gradient": {"colors": ["#fff3b0", "#e63946"], "minValue": 1, "maxValue": max(top, 2)},
        "legendItems": [], "showTacticRowBackground": False, "selectTechniquesAcrossTactics": True,
        "metadata": [{"name": "generator", "value": "marlids"}],
    }
