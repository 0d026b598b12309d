"""Attack-schedule generator for range scenarios: seeded rules (default) or any OpenAI-compatible LLM.

Whatever proposes a schedule, every entry passes the same gate before it can reach the range:

1. it is a mapping with the keys ``technique, target, start_s, duration_s`` (and optional ``intensity``);
2. the technique is in the range's recorded library (:data:`training.range.techniques.TECHNIQUES`) and
   its ATT&CK ID exists in the real MITRE ATT&CK STIX data (``../shared/data/attack``);
3. the scenario parser accepts it: the target is a device, ``subnet``, ``gateway`` or an address of the
   site's own private subnet and runs the service the technique needs; the attack lies inside
   ``[warmup_s, duration_s]``; the intensity is bounded;
4. it does not overlap an accepted attack (one attack at a time, so the ground truth stays exact);
5. the tactic order is plausible: an *impact* or *credential-access* technique only after a *discovery*
   one (an attacker maps the network before hitting a service), so the schedule opens with discovery.

Rejected entries are reported with the reason; LLM output is data, never instructions.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.paths import ATTACK_STIX

log = logging.getLogger(__name__)

DEFAULT_STIX = ATTACK_STIX
ENTRY_KEYS = {"technique", "target", "start_s", "duration_s", "intensity"}
#: Tactics that need a prior discovery step to be plausible.
LATE_TACTICS = {"impact", "credential-access", "collection", "lateral-movement"}
EARLY_TACTICS = {"discovery", "reconnaissance"}


class ScenarioGenError(RuntimeError):
    """The generator could not produce a schedule (missing ATT&CK data, LLM unreachable or useless)."""


def load_attack_tactics(stix_path: str | Path = DEFAULT_STIX) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Technique ID → (name, tactics) from a MITRE ATT&CK STIX 2.1 bundle.

    Raises
    ------
    ScenarioGenError
        If the file is missing or not a STIX bundle.
    """
    p = Path(stix_path)
    try:
        bundle = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioGenError(f"ATT&CK STIX data not readable at {p} ({exc}); pass --attack-stix") from exc
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for obj in bundle.get("objects", []):
        if obj.get("type") != "attack-pattern" or obj.get("revoked") or obj.get("x_mitre_deprecated"):
            continue
        ext = next((r.get("external_id") for r in obj.get("external_references", [])
                    if r.get("source_name") == "mitre-attack"), None)
        if ext:
            tactics = tuple(k["phase_name"] for k in obj.get("kill_chain_phases", [])
                            if k.get("kill_chain_name") == "mitre-attack")
            out[ext] = (obj.get("name", ""), tactics)
    if not out:
        raise ScenarioGenError(f"{p}: no ATT&CK attack-pattern objects found")
    return out


@dataclass
class ScheduleResult:
    """A validated schedule: ``accepted`` entries (dicts), ``rejected`` (entry, reason) pairs, ``source``."""

    accepted: list[dict] = field(default_factory=list)
    rejected: list[tuple[Any, str]] = field(default_factory=list)
    source: str = "rules"


def validate_schedule(scenario_raw: dict, entries: Any, attack: dict[str, tuple[str, tuple[str, ...]]]
                      ) -> ScheduleResult:
    """Gate proposed attack entries (module docstring); return accepted and rejected ones.

    Parameters
    ----------
    scenario_raw : dict
        The site scenario as loaded from YAML (its own ``attacks`` are ignored).
    entries : Any
        Proposed entries (normally a list of mappings; anything else is rejected).
    attack : dict
        :func:`load_attack_tactics` output.
    """
    from training.range.scenario import parse_scenario
    from training.range.techniques import TECHNIQUES

    res = ScheduleResult()
    if not isinstance(entries, list):
        res.rejected.append((entries, "the schedule must be a list of attack entries"))
        return res
    base = {k: v for k, v in scenario_raw.items() if k != "attacks"}
    seen_discovery = False
    clean = []
    for e in entries:
        if not isinstance(e, dict):
            res.rejected.append((e, "entry is not a mapping"))
            continue
        extra = set(e) - ENTRY_KEYS
        missing = {"technique", "target", "start_s", "duration_s"} - set(e)
        if extra or missing:
            res.rejected.append((e, f"keys: unexpected {sorted(extra)}, missing {sorted(missing)}"))
            continue
        clean.append(e)
    for e in sorted(clean, key=lambda x: (float(x["start_s"]) if isinstance(x["start_s"], (int, float)) else 0.0)):
        tech = TECHNIQUES.get(str(e["technique"]))
        if tech is None:
            res.rejected.append((e, f"technique {str(e['technique'])[:60]!r} is not in the recorded library"))
            continue
        if tech.technique_id not in attack:
            res.rejected.append((e, f"{tech.technique_id} is not in the ATT&CK data"))
            continue
        try:
            parse_scenario({**base, "attacks": [*res.accepted, e]}, source="generated")
        except (ValueError, TypeError) as exc:
            res.rejected.append((e, str(exc)[:200]))
            continue
        start, end = float(e["start_s"]), float(e["start_s"]) + float(e["duration_s"])
        if any(start < float(a["start_s"]) + float(a["duration_s"]) and float(a["start_s"]) < end
               for a in res.accepted):
            res.rejected.append((e, "overlaps an accepted attack"))
            continue
        tactics = set(attack[tech.technique_id][1])
        if tactics & LATE_TACTICS and not tactics & EARLY_TACTICS and not seen_discovery:
            res.rejected.append((e, f"tactic order: {sorted(tactics)} before any discovery"))
            continue
        seen_discovery |= bool(tactics & EARLY_TACTICS)
        res.accepted.append({k: e[k] for k in ("technique", "target", "start_s", "duration_s", "intensity") if k in e})
    return res


def rule_schedule(scenario_raw: dict, *, seed: int, n_attacks: int = 6) -> list[dict]:
    """A seeded, plausible schedule: a subnet scan first, then varied techniques on valid targets.

    Candidate (technique, target) pairs are those the scenario parser accepts; attacks are spread over
    ``[warmup_s, duration_s]`` with gaps, without overlap.

    Raises
    ------
    ValueError
        For ``n_attacks`` < 1.
    """
    from training.range.scenario import parse_scenario
    from training.range.techniques import TECHNIQUES

    if n_attacks < 1:
        raise ValueError(f"n_attacks must be ≥ 1, got {n_attacks!r}")
    rng = np.random.default_rng(seed)
    scen = parse_scenario({k: v for k, v in scenario_raw.items() if k != "attacks"})
    targets = ["subnet", "gateway", *(d.name for d in scen.devices)]
    t0, t1 = scen.warmup_s, scen.duration_s
    slot = (t1 - t0) / n_attacks
    base = {k: v for k, v in scenario_raw.items() if k != "attacks"}
    chosen: list[dict] = []
    names = sorted(TECHNIQUES)
    for i in range(n_attacks):
        start = round(t0 + i * slot + 2.0, 1)
        dur = round(max(5.0, min(slot - 6.0, 20.0)), 1)
        if i == 0:
            pool = [(n, "subnet") for n in names if TECHNIQUES[n].technique_id == "T1046"]
        else:
            pool = [(n, t) for n in names for t in targets]
        order = rng.permutation(len(pool))
        for k in order:
            n, t = pool[int(k)]
            if any(c["technique"] == n for c in chosen) and len(chosen) < len(names):
                continue
            cand = {"technique": n, "target": t, "start_s": start, "duration_s": dur, "intensity": 1.0}
            try:
                parse_scenario({**base, "attacks": [*chosen, cand]})
            except ValueError:
                continue
            chosen.append(cand)
            break
    return chosen


_SYSTEM = (
    "You plan attack schedules for an isolated IoT cyber range used to train an intrusion detector. "
    "Answer with JSON only: {\"attacks\": [{\"technique\": str, \"target\": str, \"start_s\": number, "
    "\"duration_s\": number, \"intensity\": number}]}. Use only technique names and targets listed by the user, "
    "start with a discovery technique, keep attacks within the time bounds and never overlapping."
)


def _extract_json(text: str) -> Any:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    body = m.group(1) if m else text
    start = min([i for i in (body.find("{"), body.find("[")) if i >= 0], default=-1)
    if start < 0:
        raise ValueError("no JSON object in the answer")
    return json.JSONDecoder().raw_decode(body[start:])[0]


def llm_schedule(scenario_raw: dict, *, base_url: str, model: str, timeout_s: float = 30.0,
                 api_key: str | None = None, n_attacks: int = 6) -> Any:
    """Ask an OpenAI-compatible chat-completions server for a schedule; returns the parsed JSON (unvalidated).

    Raises
    ------
    ScenarioGenError
        On a connection error, timeout, HTTP error or an answer without JSON.
    """
    import openai

    from training.range.scenario import parse_scenario
    from training.range.techniques import TECHNIQUES

    scen = parse_scenario({k: v for k, v in scenario_raw.items() if k != "attacks"})
    lib = [{"technique": t.name, "attack_id": t.technique_id, "target": t.target, "needs_service": t.service}
           for t in TECHNIQUES.values()]
    devices = [{"name": d.name, "services": list(d.services)} for d in scen.devices]
    user = json.dumps({"site": scen.site, "warmup_s": scen.warmup_s, "duration_s": scen.duration_s,
                       "targets": ["subnet", "gateway", *(d["name"] for d in devices)], "devices": devices,
                       "techniques": lib, "n_attacks": n_attacks})
    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s, max_retries=0)
    try:
        resp = client.chat.completions.create(model=model, temperature=0.0,
                                              messages=[{"role": "system", "content": _SYSTEM},
                                                        {"role": "user", "content": user}])
        text = resp.choices[0].message.content or ""
    except (openai.APIError, openai.APITimeoutError, IndexError, AttributeError) as exc:
        raise ScenarioGenError(f"LLM at {base_url} gave no usable answer ({type(exc).__name__}: {exc})") from exc
    try:
        data = _extract_json(text)
    except ValueError as exc:
        raise ScenarioGenError(f"LLM answer is not JSON ({exc}): {text[:120]!r}") from exc
    return data.get("attacks", data) if isinstance(data, dict) else data


def generate(scenario_raw: dict, *, seed: int = 0, n_attacks: int = 6, stix_path: str | Path = DEFAULT_STIX,
             base_url: str | None = None, model: str | None = None, timeout_s: float = 30.0,
             api_key: str | None = None) -> ScheduleResult:
    """Rule-based schedule by default; with ``base_url`` and ``model``, the LLM's, gated.

    Raises
    ------
    ScenarioGenError
        If the ATT&CK data is missing, the LLM fails, or none of its entries passes the gate.
    """
    attack = load_attack_tactics(stix_path)
    if base_url and model:
        proposed = llm_schedule(scenario_raw, base_url=base_url, model=model, timeout_s=timeout_s,
                                api_key=api_key, n_attacks=n_attacks)
        res = validate_schedule(scenario_raw, proposed, attack)
        res.source = f"llm:{model}"
        if not res.accepted:
            raise ScenarioGenError(f"none of the LLM's {len(res.rejected)} entries passed validation: "
                                   + "; ".join(r for _, r in res.rejected[:3]))
        return res
    res = validate_schedule(scenario_raw, rule_schedule(scenario_raw, seed=seed, n_attacks=n_attacks), attack)
    res.source = "rules"
    return res


def with_schedule(scenario_raw: dict, result: ScheduleResult) -> dict:
    """A copy of the scenario with its attacks replaced by the accepted schedule."""
    out = copy.deepcopy(scenario_raw)
    out["attacks"] = result.accepted
    return out
