"""Incidents: the alerts of one attack, grouped as they arrive.

One nmap sweep raises an alert per device and per 5-second window; an analyst triages the sweep. An
**incident** is the set of alerts with

* the same **technique family** (the alert's ``attack_class``: scan, flood, brute_force, app_dos,
  arp_spoof, other),
* the same **actor** — the likely attacker, from the alert's top peer (``evidence.peers[0]``): the peer's
  address when it initiated the traffic towards the device (the alert is seen at a victim), else the
  alerting device itself (it initiated the traffic: it is the source, its peers the targets). When the
  top inbound peer sent fewer than :data:`SPOOFED_MAX_PACKETS` packets in the window (a spoofed flood's
  one-off sources), the actor is "many sources" and the alerts group by victim instead. An alert without
  peers (an older fog) groups by its device;
* the same **scope**: a public actor address (a host on the Internet) groups across sites; a private,
  link-local or unique-local one — and a device id — groups within its site only (10.0.0.5 at two sites is
  two hosts);
* **time**: an alert joins an open incident (status ``new`` or ``acknowledged``) of its key when its window
  end lies within :data:`GAP_S` seconds of the incident's span (gap rule); otherwise — the attack paused
  for longer, or the analyst closed the incident as ``resolved`` / ``false_positive`` — it opens a new
  incident.

Incidents are written by the cloud's single writer in the same transaction as their alerts, only for
newly stored alerts, so they are as durable and idempotent as the alerts: a repeated post changes nothing.
Triage set on an incident applies to all its alerts (``PATCH /api/v1/incidents/{id}``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection

from cloud.models import AlertRow, IncidentRow

#: Largest gap (seconds of window time) between an alert and the span of the incident it joins.
GAP_S = 300.0
#: An inbound top peer with fewer packets in the window is taken for one of many (spoofed) sources.
SPOOFED_MAX_PACKETS = 20
#: Devices and sites listed per incident (the alerts hold them all).
MAX_LISTED = 200
#: Incident statuses that new alerts may join.
OPEN_STATUSES = ("new", "acknowledged")
#: Columns an alert joining a stored incident changes.
_UPDATED = ("first_ts_us", "last_ts_us", "alert_count", "max_level", "site_ids", "device_ids", "technique_ids",
            "updated_at_us")


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def actor_of(alert: dict[str, Any]) -> tuple[str, str]:
    """``(actor, role)`` of a stored alert row (module docstring): role ``"peer"`` (the top inbound peer),
    ``"device"`` (the alerting device initiated the traffic, or no peers are known) or ``"many sources"``."""
    peers = (alert.get("evidence") or {}).get("peers") or []
    top = peers[0] if peers and isinstance(peers[0], dict) else None
    if top is not None and top.get("direction") == "in":
        if int(top.get("packets") or 0) >= SPOOFED_MAX_PACKETS:
            return str(top["address"]), "peer"
        return f"many sources → {alert['device_id']}", "many sources"
    return str(alert["device_id"]), "device"


def incident_key(alert: dict[str, Any]) -> tuple[str, str, str]:
    """``(key, actor, role)``: alerts with the same key may share an incident (family | scope | actor)."""
    actor, role = actor_of(alert)
    scope = "*" if role == "peer" and _is_public(actor) else str(alert["site_id"])
    return f"{alert['attack_class']}|{scope}|{actor}"[:400], actor[:200], role


def _incident_id(key: str, ts_us: int) -> str:
    return hashlib.sha256(f"{key}\x1f{ts_us}".encode()).hexdigest()[:32]


def _merge(listed: list[str], value: str) -> list[str]:
    return listed if value in listed or len(listed) >= MAX_LISTED else [*listed, value]


def assign_incidents(conn: Connection, alerts: list[dict[str, Any]]) -> dict[str, str]:
    """Group newly stored alerts into incidents on ``conn`` (inside the writer's transaction).

    Parameters
    ----------
    conn : Connection
        The transaction's connection.
    alerts : list of dict
        Alert rows just inserted (columns of :class:`cloud.models.AlertRow`); each gets its incident.

    Returns
    -------
    dict
        ``alert_id → incident_id``; the ``incident_id`` column of those alerts is set too.
    """
    gap_us = int(GAP_S * 1e6)
    now = int(time.time() * 1e6)
    inc = IncidentRow.__table__
    touched: dict[str, dict[str, Any]] = {}  # incident_id → row (new or updated), written once at the end
    new_ids: set[str] = set()
    by_key: dict[str, list[str]] = {}  # key → incidents of this batch
    out: dict[str, str] = {}
    ordered = sorted(alerts, key=lambda r: (r["ts_us"], r["alert_id"]))
    keyed = [(a, *incident_key(a)) for a in ordered]
    # one query for the batch: the open incidents of its keys whose span may take one of its alerts, newest
    # first per key (what a query per alert would find, as none of this batch's changes is written yet)
    stored: dict[str, list[dict[str, Any]]] = {}
    if keyed:
        lo, hi = int(ordered[0]["ts_us"]), int(ordered[-1]["ts_us"])
        keys = sorted({k for _, k, _, _ in keyed})
        for i in range(0, len(keys), 500):  # bounded IN lists
            for row in conn.execute(select(inc).where(inc.c.key.in_(keys[i:i + 500]), inc.c.status.in_(OPEN_STATUSES),
                                                      inc.c.first_ts_us - gap_us <= hi, inc.c.last_ts_us + gap_us >= lo)
                                    .order_by(inc.c.last_ts_us.desc())):
                stored.setdefault(row.key, []).append(dict(row._mapping))
    for a, key, actor, role in keyed:
        ts = int(a["ts_us"])
        found = None
        for iid in by_key.get(key, []):
            r = touched[iid]
            if r["status"] in OPEN_STATUSES and r["first_ts_us"] - gap_us <= ts <= r["last_ts_us"] + gap_us:
                found = r
                break
        if found is None:
            row = next((r for r in stored.get(key, ()) if r["incident_id"] not in touched
                        and r["first_ts_us"] - gap_us <= ts <= r["last_ts_us"] + gap_us), None)
            if row is not None:
                found = touched[row["incident_id"]] = dict(row)
                by_key.setdefault(key, []).append(row["incident_id"])
        if found is None:
            iid = _incident_id(key, ts)
            found = touched[iid] = {
                "incident_id": iid, "key": key, "attack_class": a["attack_class"], "actor": actor, "actor_role": role,
                "site_ids": [], "device_ids": [], "technique_ids": [], "first_ts_us": ts, "last_ts_us": ts,
                "alert_count": 0, "max_level": 0, "status": "new", "note": None, "created_at_us": now,
                "updated_at_us": now}
            new_ids.add(iid)
            by_key.setdefault(key, []).append(iid)
        found["first_ts_us"] = min(found["first_ts_us"], ts)
        found["last_ts_us"] = max(found["last_ts_us"], ts)
        found["alert_count"] += 1
        found["max_level"] = max(found["max_level"], int(a["level"]))
        found["site_ids"] = _merge(list(found["site_ids"]), str(a["site_id"]))
        found["device_ids"] = _merge(list(found["device_ids"]), str(a["device_id"]))
        for t in a.get("technique_ids") or []:
            found["technique_ids"] = _merge(list(found["technique_ids"]), str(t))
        found["updated_at_us"] = now
        out[a["alert_id"]] = found["incident_id"]
    if new_ids:
        conn.execute(insert(inc), [touched[i] for i in touched if i in new_ids])
    changed = [{"b_id": iid, **{f"b_{k}": r[k] for k in _UPDATED}} for iid, r in touched.items() if iid not in new_ids]
    if changed:  # one executemany for the batch (bound names differ from the columns', as SQLAlchemy requires)
        conn.execute(update(inc).where(inc.c.incident_id == bindparam("b_id"))
                     .values({k: bindparam(f"b_{k}") for k in _UPDATED}), changed)
    alerts_t = AlertRow.__table__
    if out:
        conn.execute(update(alerts_t).where(alerts_t.c.alert_id == bindparam("b_aid"))
                     .values(incident_id=bindparam("b_iid")), [{"b_aid": a, "b_iid": i} for a, i in out.items()])
    return out
