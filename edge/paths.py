"""The repository's paths and bundled assets, named once.

Every module that needs the bundled policy, the bundled captures, the edge's ONNX models, the range's
scenarios, the ATT&CK table or the shared public data imports the name from here. Nothing is read at
import time; these are plain :class:`pathlib.Path` values (the folders may be absent in a trimmed install:
the code that reads them says so with a clear error). It lives on the ground floor (``edge/``, which imports
no other part) so that every part may import it without an arrow running back up.
"""

from __future__ import annotations

from pathlib import Path

#: The repository (or installed source tree) root: the folder holding ``edge/``, ``fog/``, ``cloud/`` ….
REPO = Path(__file__).resolve().parents[1]
#: The bundled exported defender policy (``actor.json``, ``actor.pt``, ``fusion.json``, the scorer); made by
#: ``marlids train mappo`` as ``models/README.md`` records. The edge's default fusion pipeline too.
BUNDLED_POLICY = REPO / "models" / "defender"
#: The edge's ONNX models (int8 MiniLM, the scorer), written by ``scripts/setup.sh`` /
#: ``marlids edge export-onnx`` (override: ``$MARLIDS_EDGE_MODELS``).
EDGE_MODELS = REPO / "models" / "edge"
#: The bundled labeled range captures (``site_*.pcap`` + ``site_*.groundtruth.csv``).
BUNDLED_CAPTURES = REPO / "data" / "captures"
#: The cyber range's site scenarios (YAML).
SCENARIOS = REPO / "training" / "range" / "scenarios"
#: The ATT&CK technique table the cloud maps alerts with (built from the STIX bundles).
ATTACK_TABLE = REPO / "cloud" / "data" / "attack_techniques.json"
#: Experiment outputs (tables, figures, JSON).
RESULTS = REPO / "results"
#: Public data kept beside the repository (``../shared/data``: captures, MITRE ATT&CK STIX; see its README).
SHARED_DATA = REPO.parent / "shared" / "data"
#: Public pcaps (IoT Sentinel, O'Connor, Kitsune, attack captures).
SHARED_PCAPS = SHARED_DATA / "pcaps"
#: MITRE ATT&CK STIX bundles and their licence.
ATTACK_STIX_DIR = SHARED_DATA / "attack"
#: The enterprise techniques bundle the scenario generator validates against.
ATTACK_STIX = ATTACK_STIX_DIR / "enterprise-attack-patterns.json"
