"""Build the compact ATT&CK technique table shipped with the cloud service.

Reads MITRE's STIX 2.1 bundles (Enterprise attack-patterns and ATT&CK for ICS) and writes one JSON
document with, per technique: ID, name, tactics (short names and display names), URL, STIX id,
domain and the STIX ``created``/``modified`` times (so exports can reference MITRE's objects exactly). Revoked and deprecated objects are left out. MITRE's ``LICENSE.txt`` is copied next to the
table, and the table's header repeats the copyright designation, as the licence requires.

Run it with ``marlids cloud build-attack-table`` or ``python -m cloud.scripts.build_attack_table``.

References
----------
MITRE ATT&CK, https://attack.mitre.org/ — STIX data from https://github.com/mitre/cti
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from edge.paths import ATTACK_STIX_DIR, ATTACK_TABLE

log = logging.getLogger(__name__)

#: Bundle file name → ATT&CK domain.
BUNDLES = {"enterprise-attack-patterns.json": "enterprise-attack", "ics-attack.json": "ics-attack"}
COPYRIGHT = ("© 2025 The MITRE Corporation. This work is reproduced and distributed with the "
             "permission of The MITRE Corporation.")
DEFAULT_SOURCE = ATTACK_STIX_DIR
DEFAULT_OUT = ATTACK_TABLE
#: Release of the bundles in ../shared/data/attack (their README; the trimmed bundles carry no
#: x-mitre-collection object that would state it).
DEFAULT_VERSION = "18.1"


def _mitre_ref(obj: dict[str, Any]) -> dict[str, Any] | None:
    for ref in obj.get("external_references", []):
        if ref.get("source_name") == "mitre-attack" and ref.get("external_id"):
            return ref
    return None


def _live(obj: dict[str, Any]) -> bool:
    return not obj.get("revoked", False) and not obj.get("x_mitre_deprecated", False)


def build_table(source: Path, attack_version: str = DEFAULT_VERSION) -> dict[str, Any]:
    """Turn the STIX bundles in ``source`` into the compact table.

    Parameters
    ----------
    source : Path
        Folder holding ``enterprise-attack-patterns.json`` and ``ics-attack.json``.
    attack_version : str
        ATT&CK release, used when the bundles carry no ``x-mitre-collection`` saying it.

    Returns
    -------
    dict
        ``{"attack_version", "copyright", "license_file", "tactics": {TA id: {...}},
        "techniques": {id: {"id", "name", "tactics", "url", "stix_id", "domain", "created",
        "modified"}}}``.

    Raises
    ------
    FileNotFoundError
        When a bundle is missing.
    ValueError
        When two live techniques share one ID.
    """
    tactics: dict[str, dict[str, Any]] = {}
    techniques: dict[str, dict[str, Any]] = {}
    versions: set[str] = set()
    for name, domain in BUNDLES.items():
        path = source / name
        if not path.is_file():
            raise FileNotFoundError(f"ATT&CK bundle not found: {path}")
        objects = json.loads(path.read_text(encoding="utf-8"))["objects"]
        local: dict[str, dict[str, Any]] = {}  # tactic short names repeat across domains
        for obj in objects:
            if obj["type"] == "x-mitre-collection" and obj.get("x_mitre_version"):
                versions.add(obj["x_mitre_version"])
            if obj["type"] != "x-mitre-tactic" or not _live(obj):
                continue
            ref = _mitre_ref(obj)
            tactic = {"id": ref["external_id"], "shortname": obj["x_mitre_shortname"], "name": obj["name"],
                      "domain": domain, "url": ref.get("url")}
            local[tactic["shortname"]] = tactic
            tactics[tactic["id"]] = tactic
        for obj in objects:
            if obj["type"] != "attack-pattern" or not _live(obj):
                continue
            ref = _mitre_ref(obj)
            if ref is None:
                continue
            tid = ref["external_id"]
            phases = [p["phase_name"] for p in obj.get("kill_chain_phases", [])
                      if p.get("kill_chain_name", "").startswith("mitre-")]
            if tid in techniques:
                raise ValueError(f"duplicate live technique id {tid!r} in {name}")
            techniques[tid] = {
                "id": tid,
                "name": obj["name"],
                "tactics": [{"shortname": p, "name": local.get(p, {}).get("name", p),
                             "id": local.get(p, {}).get("id")} for p in phases],
                "url": ref.get("url"),
                "stix_id": obj["id"],
                "domain": domain,
                "created": obj["created"],
                "modified": obj["modified"],
            }
    return {
        "attack_version": ", ".join(sorted(versions)) or attack_version,
        "source": "MITRE ATT&CK STIX 2.1 data (github.com/mitre/cti): " + ", ".join(BUNDLES),
        "copyright": COPYRIGHT,
        "license_file": "LICENSE.txt",
        "tactics": dict(sorted(tactics.items())),
        "techniques": dict(sorted(techniques.items())),
    }


def write_table(source: Path = DEFAULT_SOURCE, out: Path = DEFAULT_OUT,
                attack_version: str = DEFAULT_VERSION) -> Path:
    """Build the table from ``source`` and write it (and MITRE's licence) beside ``out``.

    Returns
    -------
    Path
        The written table.

    Raises
    ------
    FileNotFoundError
        When a bundle or MITRE's ``LICENSE.txt`` is missing from ``source``.
    """
    source = Path(source)
    licence = source / "LICENSE.txt"
    if not licence.is_file():
        raise FileNotFoundError(f"MITRE licence not found: {licence} (it must be copied with the table)")
    table = build_table(source, attack_version)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8")
    shutil.copyfile(licence, out.parent / "LICENSE.txt")
    log.info("wrote %d techniques and %d tactics to %s", len(table["techniques"]), len(table["tactics"]), out)
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (``python -m cloud.scripts.build_attack_table``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder with the STIX bundles")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="table to write")
    parser.add_argument("--attack-version", default=DEFAULT_VERSION, help="ATT&CK release of the bundles")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_table(args.source, args.out, args.attack_version)


if __name__ == "__main__":
    main()
