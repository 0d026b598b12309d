"""MITRE ATT&CK mapping: the bundled technique table and the attack-class → technique rules.

The table (``cloud/data/attack_techniques.json``, ATT&CK v18.1, built by
``cloud/scripts/build_attack_table.py``) ships with MITRE's licence (``cloud/data/LICENSE.txt``):
© 2025 The MITRE Corporation. This work is reproduced and distributed with the permission of The
MITRE Corporation.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from edge.paths import ATTACK_TABLE

TABLE_PATH = ATTACK_TABLE

#: The one place that says which technique each detector attack class means (classes: fog/attacks.py).
CLASS_TECHNIQUES: dict[str, tuple[str, ...]] = {
    "benign": (),
    "scan": ("T1046",),            # Network Service Discovery
    "flood": ("T1498.001",),       # Network Denial of Service: Direct Network Flood
    "brute_force": ("T1110.001",),  # Brute Force: Password Guessing
    "app_dos": ("T1499.002",),     # Endpoint Denial of Service: Service Exhaustion Flood
    "arp_spoof": ("T1557.002",),   # Adversary-in-the-Middle: ARP Cache Poisoning
    "other": (),                   # only the IDs the fog sent
}

#: Evidence rules: (attack class, feature name, minimum z) → extra technique. A feature counts when it
#: is among the alert's top deviating features with ``z`` at least the minimum (or, without z, above
#: its baseline). Feature names are the edge's (edge/features.py).
EVIDENCE_RULES: tuple[tuple[str, str, float, str], ...] = (
    # many destination addresses / ICMP: host discovery besides port discovery
    ("scan", "out_distinct_dst_addrs", 3.0, "T1018"),   # Remote System Discovery
    ("scan", "icmp_pkt_fraction", 3.0, "T1018"),
    # UDP service answers (DNS, SSDP/mDNS) swamping the device: reflection amplification
    ("flood", "app_dns_pkt_fraction", 3.0, "T1498.002"),  # Network DoS: Reflection Amplification
    ("flood", "app_discovery_pkt_fraction", 3.0, "T1498.002"),
)

#: Industrial protocols in the protocol summary → the ATT&CK for ICS technique that a class also means.
ICS_PROTOCOLS = re.compile(r"\b(modbus|dnp3|s7comm|iec104|enip|bacnet|opcua)\b", re.IGNORECASE)
ICS_CLASS_TECHNIQUES: dict[str, tuple[str, ...]] = {
    "scan": ("T0846",),        # Remote System Discovery (ICS)
    "flood": ("T0814",),       # Denial of Service (ICS)
    "app_dos": ("T0814",),
    "brute_force": ("T0859",),  # Valid Accounts (ICS) — attempts on them
}


class UnknownTechniqueError(ValueError):
    """An ATT&CK technique ID that is not in the bundled table."""

    def __init__(self, technique_id: str) -> None:
        super().__init__(f"unknown ATT&CK technique id {technique_id!r}: not in the bundled ATT&CK table "
                         f"(v18.1, enterprise + ICS); IDs look like T1046 or T1498.001")
        self.technique_id = technique_id


class AttackTable:
    """Read-only view of the bundled technique table.

    Parameters
    ----------
    path : Path
        The JSON table written by ``build_attack_table``.
    """

    def __init__(self, path: Path = TABLE_PATH) -> None:
        self.path = Path(path)
        data = json.loads(self.path.read_text(encoding="utf-8"))
        self.version: str = data["attack_version"]
        self.copyright: str = data["copyright"]
        self.techniques: dict[str, dict[str, Any]] = data["techniques"]

    def __contains__(self, technique_id: object) -> bool:
        return technique_id in self.techniques

    def get(self, technique_id: str) -> dict[str, Any]:
        """The entry for ``technique_id``.

        Raises
        ------
        UnknownTechniqueError
            When the ID is not in the table.
        """
        try:
            return self.techniques[technique_id]
        except KeyError:
            raise UnknownTechniqueError(technique_id) from None

    def tactics_of(self, technique_ids: list[str]) -> list[dict[str, str]]:
        """``{"id", "name", "technique_id"}`` for every tactic of every technique, in order."""
        return [{"id": tac["id"], "name": tac["name"], "technique_id": tid}
                for tid in technique_ids for tac in self.get(tid)["tactics"]]

    def map_alert(self, attack_class: str, technique_ids: list[str],
                  evidence: dict[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
        """Technique IDs and tactics for an alert.

        Order: the class mapping (:data:`CLASS_TECHNIQUES`), the evidence rules
        (:data:`EVIDENCE_RULES`), the IDs the fog sent, then ATT&CK for ICS techniques when the protocol
        summary names an industrial protocol. A parent technique is dropped when one of its
        sub-techniques is present (the fog sends ``T1498``, the class says ``T1498.001``: the alert
        keeps ``T1498.001``; the technique filter of the API matches parents by prefix).

        Parameters
        ----------
        attack_class : str
            One of the detector's classes (unknown classes map to no technique of their own).
        technique_ids : list of str
            IDs sent with the alert; each must be in the table.
        evidence : dict
            The alert's evidence (``top_features``, ``protocol_summary`` are used).

        Returns
        -------
        (technique_ids, tactics)
            Ordered unique IDs, and ``{"id", "name", "technique_id"}`` per tactic reached.

        Raises
        ------
        UnknownTechniqueError
            When a sent ID is not in the table.
        """
        ids: list[str] = list(CLASS_TECHNIQUES.get(attack_class, ()))
        feats = {f["name"]: f for f in evidence.get("top_features") or []}
        for cls, name, min_z, tid in EVIDENCE_RULES:
            f = feats.get(name)
            if cls != attack_class or f is None:
                continue
            z = f.get("z")
            if (z is not None and z >= min_z) or (z is None and f["value"] > f["baseline"]):
                ids.append(tid)
        for tid in technique_ids:
            self.get(tid)
            ids.append(tid)
        if ICS_PROTOCOLS.search(evidence.get("protocol_summary") or ""):
            ids.extend(ICS_CLASS_TECHNIQUES.get(attack_class, ()))
        ids = list(dict.fromkeys(ids))
        ids = [t for t in ids if "." in t or not any(o.startswith(t + ".") for o in ids)]
        return ids, self.tactics_of(ids)


@lru_cache
def get_attack_table() -> AttackTable:
    """The bundled table, loaded on first use."""
    return AttackTable()
