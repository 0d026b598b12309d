"""Attack classes the defenders name, and the MITRE ATT&CK techniques each one covers.

The class is what a defender predicts; the technique IDs come from the range's technique library
(``training/range/techniques.py``) and the ground truth of public mixes.
"""

from __future__ import annotations

#: Classes in action order: index 0 is benign.
ATTACK_CLASSES: tuple[str, ...] = ("benign", "scan", "flood", "brute_force", "app_dos", "arp_spoof", "other")

#: ATT&CK technique (without sub-technique) → class.
TECHNIQUE_CLASS: dict[str, str] = {
    "T1046": "scan",          # Network Service Discovery
    "T1595": "scan",          # Active Scanning
    "T1498": "flood",         # Network Denial of Service (.001 direct flood, .002 reflection amplification)
    "T1110": "brute_force",   # Brute Force (.001 password guessing)
    "T1499": "app_dos",       # Endpoint Denial of Service (.002 service exhaustion flood)
    "T1557": "arp_spoof",     # Adversary-in-the-Middle (.002 ARP cache poisoning)
}


def technique_class(technique_id: str | None) -> int:
    """Index in :data:`ATTACK_CLASSES` of a technique ID (``"T1498.001"`` → flood); ``""``/None → benign.

    Unknown technique IDs map to ``"other"`` (they are still attacks).
    """
    if not technique_id:
        return 0
    base = str(technique_id).split(".", 1)[0].upper()
    return ATTACK_CLASSES.index(TECHNIQUE_CLASS.get(base, "other"))


#: Representative ATT&CK technique reported for each detected class (the cloud refines the mapping).
CLASS_TECHNIQUE: dict[str, str] = {"scan": "T1046", "flood": "T1498", "brute_force": "T1110",
                                   "app_dos": "T1499", "arp_spoof": "T1557.002"}
