"""Decisions and alerts: one rule from the actor's output to (level, class, confidence), one alert builder.

No RL library and no training code: the fog coordinator (:mod:`fog.coordinator`), ``marlids fog detect``
(:mod:`fog.detect`), evaluation and the training environment all import the decision constants and rule
from here, so an alert means the same thing on every path.

Decision rule
-------------
The shared defender actor outputs, per Observation, a categorical distribution over alert levels 0–4
``p(level)`` and logits over the attack classes of :data:`fog.attacks.ATTACK_CLASSES` (index 0 = benign).

* ``P(alert) = p(2) + p(3) + p(4)``; the actor **flags** a window when ``P(alert) ≥ 0.5``
  (:data:`ALERT_THRESHOLD` = 2 is the lowest alert level, as in the training rewards, which pay the same for
  levels 2, 3 and 4).
* **Evidence gate.** A flagged window **alerts** only when at least one of its statistics deviates by
  :data:`ALERT_EVIDENCE_Z` = 5 robust σ or more from its site baseline (the Observation's ``stats_z``,
  :mod:`edge.observation`); a flagged window without that evidence is level 1 (worth a look, never posted).
  The policy names *what* an anomaly is; it may not call a window that is ordinary *for its own site* an
  attack — a hybrid of misuse and anomaly detection, as Kitsune's grace period makes every detection
  relative to the network's own traffic. Chosen on the bundled defender's training data (range networks and
  public benign captures): it kept 99.2 % of the true alerts and 39 % of the false ones on public benign
  captures. On networks never trained on (``marlids experiment generalization``, 2 seeds, run of
  2026-12-01 with the bundled training recipe): FPR 0.0049 → 0.0017, public benign captures 0.21 % → 0.16 %
  of windows (sites at ≤ 0.5 %: 21 → 22 of 27), recall 0.937 → 0.922 (slow application-layer DoS
  0.942 → 0.893), F1 0.955 → 0.955.
* **confidence** is ``P(alert)`` for an alert and ``1 − P(alert)`` otherwise: the probability the actor
  gives to the decision that was taken (a scorer alert's: its calibrated score, below).
* **Scorer alerts** (measured, not deployed: :meth:`fog.policy.DefenderActor.decide_all` ``scorer_alerts``):
  a window the actor does not flag is flagged when the temporal scorer's calibrated score reaches the
  scorer's own alert quantile ``1 − q``; the evidence gate applies to it as well, and such an alert is level
  2 with the actor's likeliest attack class and the calibrated score as its confidence. On networks never
  trained on it lowered F1 (0.952 vs 0.955, 2 seeds) and raised the public benign alert rate (0.27 % vs
  0.16 %); ``marlids experiment generalization`` reports it as "MAPPO ∨ scorer".
* An alert's **level** follows its confidence (:data:`LEVEL_CONFIDENCE`): 4 from ``P(alert) ≥ 0.95``, 3 from
  0.80, else 2 — so among corroborated alerts a more certain one is never a lower level. A non-alert is
  level 1 when ``P(alert) ≥ 0.25`` (worth a look, never posted), else 0; a window the evidence gate stopped
  is level 1.
* **Corroboration.** An alert is above level 2 only when the temporal scorer — an anomaly detector
  trained apart from the policy, scoring the device's last windows against its own site baseline — agrees:
  the window's calibrated score reaches the scorer's alert quantile ``1 − q``
  (:attr:`fog.policy.DefenderActor.anomaly_threshold`, read from the scorer saved with the policy); a
  window without a score (too little history) is not corroborated. Two detectors of different kinds
  agreeing is what makes an alert urgent; the policy alone makes it worth a look. On networks never trained
  on (``marlids experiment generalization``, 2 seeds, the bundled recipe, run of 2026-12-02) the scorer
  agreed with 61 % of the policy's true alerts and with none of its false ones (0 / 23): 57 % of the true
  alerts are level 3–4 (83 % of the attacks reach level 3 in some window), every false one is level 2, and
  the public benign captures' alerts at level ≥ 3 fell from 29 to 8. An actor without a known scorer
  (:attr:`~fog.policy.DefenderActor.anomaly_threshold` None) is not capped.
* An alert's **class** is the most probable class *other than benign* — an alert never has class
  ``"benign"``; a non-alert's class is ``"benign"``.
* **Severity** (:func:`severity`, applied by :func:`make_alert` to every alert, on every path): the level
  from the confidence is then capped by the evidence and the class — at most 2 when no statistic of the
  window deviates by :data:`EVIDENCE_Z` = 8 robust σ or more from the site baseline (a confident policy
  without a strongly deviating statistic is worth a look, not an emergency), and at most
  :data:`CLASS_MAX_LEVEL` for classes without an impact of their own (a scan is reconnaissance, ATT&CK
  tactic Discovery: 3; ``other``: 3). Caps never take an alert below level 2.

The alert's ATT&CK technique is :data:`fog.attacks.CLASS_TECHNIQUE` of its class.

Alert evidence
--------------
:func:`window_evidence` builds the ``evidence`` of every alert from the window's raw statistics, their
standardised values against the site baseline (which rank them), the baseline's normal values and
spreads, the scorer's attention and the protocol sentence.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from edge.features import FEATURE_NAMES
from fog.attacks import ATTACK_CLASSES, CLASS_TECHNIQUE

#: Alert levels 0–4 (the actor's first action head).
ALERT_LEVELS = 5
#: Lowest level that is an alert (levels 0–1 are "no alert").
ALERT_THRESHOLD = 2
#: ``P(alert)`` from which an alert is level 3 and level 4; a non-alert from which it is level 1.
LEVEL_CONFIDENCE = {3: 0.80, 4: 0.95}
LEVEL_1_FROM = 0.25
#: Deviation (robust σ of the site baseline) one window statistic must reach for a flagged window to alert.
ALERT_EVIDENCE_Z = 5.0
#: Deviation (robust σ of the site baseline) one window statistic must reach for an alert above level 2.
EVIDENCE_Z = 8.0
#: Highest level of an alert of these classes (reconnaissance and the catch-all class).
CLASS_MAX_LEVEL = {"scan": 3, "other": 3}
#: Top deviating features attached to an alert as evidence.
EVIDENCE_FEATURES = 5
#: Attention peaks (most attended windows of the scorer's sequence) attached to an alert.
ATTENTION_PEAKS = 3
#: Peers attached to an alert (``evidence.peers``), and the longest address kept (an IPv6 address has at
#: most 45 characters, a MAC 17).
EVIDENCE_PEERS = 5
PEER_ADDRESS_MAX_CHARS = 64


def decide(level_probs: np.ndarray, class_logits: np.ndarray, max_abs_z: np.ndarray | None = None,
           anomaly_score: np.ndarray | None = None, anomaly_threshold: float = 1.0, *,
           scorer_alerts: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Apply the decision rule (module docstring) to a batch of actor outputs.

    Parameters
    ----------
    level_probs : ndarray, shape (n, 5)
        ``p(level)``, rows summing to 1.
    class_logits : ndarray, shape (n, C)
        Logits (or probabilities) of the attack classes, index 0 = benign.
    max_abs_z : ndarray, shape (n,), optional
        Largest |z| (robust σ) of each window's statistics against its site baseline (NaN counts as 0): the
        evidence gate (:data:`ALERT_EVIDENCE_Z`). None: no gate (the actor's flag alone decides).
    anomaly_score : ndarray, shape (n,), optional
        The temporal scorer's calibrated anomaly probability of each window (NaN: not available). An alert
        of the actor is above level 2 only where it reaches ``anomaly_threshold`` (module docstring,
        "Corroboration"). None: no scorer known, levels from the confidence alone.
    anomaly_threshold : float
        The scorer's own alert quantile ``1 − q`` (:meth:`edge.observation.FusionPipeline.alert_quantile`).
    scorer_alerts : bool
        Also flag, with ``anomaly_score``, a window the actor does not flag when its score reaches
        ``anomaly_threshold`` (module docstring, "Scorer alerts"; measured, not deployed).

    Returns
    -------
    level : ndarray of int64, shape (n,)
    attack_class : ndarray of int64, shape (n,)
        Index in :data:`ATTACK_CLASSES`; 0 exactly when not alerting.
    confidence : ndarray of float32, shape (n,)
    alert : ndarray of bool, shape (n,)

    Raises
    ------
    ValueError
        For arrays of the wrong shape.
    """
    p = np.asarray(level_probs, dtype=np.float64)
    c = np.asarray(class_logits, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != ALERT_LEVELS or c.ndim != 2 or c.shape[0] != p.shape[0] or c.shape[1] < 2:
        raise ValueError(f"expected level_probs (n, {ALERT_LEVELS}) and class_logits (n, C >= 2), got {p.shape} "
                         f"and {c.shape}")
    p_alert = p[:, ALERT_THRESHOLD:].sum(axis=1)
    flag = p_alert >= 0.5
    anomalous = np.zeros_like(flag)
    corroborated = np.ones_like(flag)
    a = np.full(p.shape[0], np.nan)
    if anomaly_score is not None:
        a = np.asarray(anomaly_score, dtype=np.float64).reshape(-1)
        if a.shape != (p.shape[0],):
            raise ValueError(f"expected anomaly_score ({p.shape[0]},), got {a.shape}")
        corroborated = np.nan_to_num(a, nan=-np.inf) >= anomaly_threshold
        if scorer_alerts:
            anomalous = ~flag & corroborated
    alert = flag | anomalous
    if max_abs_z is not None:
        z = np.nan_to_num(np.asarray(max_abs_z, dtype=np.float64).reshape(-1), nan=0.0)
        if z.shape != (p.shape[0],):
            raise ValueError(f"expected max_abs_z ({p.shape[0]},), got {z.shape}")
        alert &= z >= ALERT_EVIDENCE_Z
    above = corroborated * ((p_alert >= LEVEL_CONFIDENCE[3]).astype(np.int64) + (p_alert >= LEVEL_CONFIDENCE[4]))
    level = np.where(alert & flag, ALERT_THRESHOLD + above,
                     np.where(alert, ALERT_THRESHOLD,
                              np.where(flag | anomalous, 1, (p_alert >= LEVEL_1_FROM).astype(np.int64))))
    cls = np.where(alert, 1 + c[:, 1:].argmax(axis=1), 0)
    conf = np.where(alert & flag, p_alert, np.where(alert, a, 1.0 - p_alert)).astype(np.float32)
    return level.astype(np.int64), cls.astype(np.int64), conf, alert


def severity(level, attack_class, max_abs_z):
    """The alert level after the evidence and class caps (module docstring, "Severity").

    Parameters
    ----------
    level : int or ndarray of int, shape (n,)
        Levels of :func:`decide` (0–4; levels below 2 are not alerts and pass unchanged).
    attack_class : int or ndarray of int, shape (n,)
        Indices in :data:`ATTACK_CLASSES`.
    max_abs_z : float or ndarray, shape (n,)
        Largest |z| of the window's statistics against the site baseline (NaN counts as 0).

    Returns
    -------
    int or ndarray of int64
        Same shape as ``level``.
    """
    lv = np.asarray(level, dtype=np.int64)
    cls = np.asarray(attack_class, dtype=np.int64)
    z = np.nan_to_num(np.asarray(max_abs_z, dtype=np.float64), nan=0.0)
    cap = np.full(lv.shape, ALERT_LEVELS - 1, dtype=np.int64)
    for name, most in CLASS_MAX_LEVEL.items():
        cap = np.where(cls == ATTACK_CLASSES.index(name), np.minimum(cap, most), cap)
    cap = np.where(z < EVIDENCE_Z, np.minimum(cap, ALERT_THRESHOLD), cap)
    out = np.where(lv >= ALERT_THRESHOLD, np.maximum(ALERT_THRESHOLD, np.minimum(lv, cap)), lv)
    return int(out) if out.ndim == 0 else out


_SURROGATES = re.compile("[\ud800-\udfff]")


def json_safe(value):
    """``value`` (alerts, evidence, decision rows: dicts, lists, numbers, numpy scalars) with every non-finite
    number replaced by None, numpy scalars made Python numbers and lone UTF-16 surrogates in text replaced
    by U+FFFD, so ``json.dumps(..., allow_nan=False)`` never fails, the fog never writes ``NaN``/``Infinity``
    (not JSON, RFC 8259), and the cloud — which refuses unencodable text with 422 — never refuses an alert
    for the attacker-controlled strings in its evidence."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if np.isfinite(v) else None
    return value


def dumps(value, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(value)`` with ``allow_nan=False``: strict JSON, always."""
    return json.dumps(json_safe(value), allow_nan=False, **kwargs)


def alert_id(site_id: str, device_id: str, t_start: float) -> str:
    """Deterministic alert id from the window key, so a retried post never duplicates an alert.

    The first 32 hex digits of SHA-256 over ``site_id ␟ device_id ␟ t_start`` (t_start in epoch
    seconds, rounded to the millisecond).
    """
    key = f"{site_id}\x1f{device_id}\x1f{t_start:.3f}".encode()
    return hashlib.sha256(key).hexdigest()[:32]


def policy_version_of(policy_dir: str | Path) -> str:
    """Version string of an exported policy: ``<run or folder name>@<first 12 hex of SHA-256(actor.pt)>``.

    Two exports with the same weights get the same version; retraining changes it.

    Raises
    ------
    FileNotFoundError
        If ``actor.pt`` is missing.
    """
    d = Path(policy_dir)
    digest = hashlib.sha256((d / "actor.pt").read_bytes()).hexdigest()[:12]
    name = d.resolve().name
    try:
        meta = json.loads((d / "actor.json").read_text()).get("meta") or {}
        name = str(meta.get("run") or name)
    except (OSError, json.JSONDecodeError):
        pass
    return f"{name[:100]}@{digest}"


def feature_evidence(x: np.ndarray, z: np.ndarray, baseline: np.ndarray, spread: np.ndarray, *,
                     names: tuple[str, ...] = FEATURE_NAMES, k: int = EVIDENCE_FEATURES) -> list[dict]:
    """The ``k`` statistics of one window that deviate most from the site baseline.

    Parameters
    ----------
    x : ndarray, shape (F,)
        Raw window statistics (units in the names).
    z : ndarray, shape (F,)
        Their standardised values against the site baseline (:mod:`edge.baseline`), which the policy saw;
        they rank the features.
    baseline : ndarray, shape (F,)
        The baseline's normal value of each statistic, in its own unit.
    spread : ndarray, shape (F,)
        Half-width of the baseline's normal range, in the statistic's own unit.
    names : tuple of str
    k : int

    Returns
    -------
    list of dict
        ``{"name", "value", "baseline", "baseline_std", "z"}`` in decreasing ``|z|`` order (to 0.001; ties in
        feature order); ``z`` is the
        standardised value (robust deviations on the log-compressed scale), ``baseline_std`` the spread.
        Non-finite numbers are left out (``None``).
    """
    zz = np.nan_to_num(np.asarray(z, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    # rank by |z| to 1e-3 (ties: feature order), so float rounding never reorders equally deviating features
    order = np.argsort(-np.round(np.abs(zz), 3), kind="stable")[:k]

    def fin(v) -> float | None:
        v = float(v)
        return v if np.isfinite(v) else None

    out = []
    for j in order:
        out.append({"name": names[j], "value": fin(x[j]) or 0.0, "baseline": fin(baseline[j]) or 0.0,
                    "baseline_std": None if fin(spread[j]) is None else max(0.0, float(spread[j])),
                    "z": fin(zz[j])})
    return out


def attention_evidence(attention: np.ndarray | None, attention_t: np.ndarray | None,
                       n_peaks: int = ATTENTION_PEAKS) -> tuple[list[dict], list[dict]]:
    """Attention peaks and the full series of one scored window.

    Parameters
    ----------
    attention : ndarray, shape (T,), optional
        Head-averaged attention over the device's last T windows, oldest first.
    attention_t : ndarray, shape (T,), optional
        ``t_start`` (epoch s) of those windows.
    n_peaks : int
        Peaks kept.

    Returns
    -------
    (peaks, series)
        Lists of ``{"t", "weight"}``; peaks in decreasing weight order. Both empty without attention.
        Padded positions (a device seen for fewer than T windows) repeat its first window and are
        merged into one point, their weights summed.
    """
    if attention is None or attention_t is None or len(attention) == 0:
        return [], []
    a = np.nan_to_num(np.asarray(attention, dtype=np.float64), nan=0.0)
    a = a / a.sum() if a.sum() > 0 else a
    merged: dict[float, float] = {}
    for t, w in zip(np.asarray(attention_t, dtype=np.float64), a):
        if np.isfinite(t):
            merged[float(t)] = merged.get(float(t), 0.0) + float(w)
    series = [{"t": t, "weight": min(1.0, max(0.0, w))} for t, w in merged.items()]
    peaks = sorted(series, key=lambda p: -p["weight"])[:n_peaks]
    return peaks, series


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def _is_address(text: str) -> bool:
    """An IP (v4/v6) or MAC address: what the cloud accepts as a peer address."""
    import ipaddress

    if _MAC.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def peer_evidence(peers) -> list[dict]:
    """``evidence.peers``: the window's top peers (:mod:`edge.windows` ``top_peers``), bounded and typed.

    Parameters
    ----------
    peers : iterable of dict, or None
        ``{"address", "port", "direction", "packets", "bytes"[, "ports"]}`` from the edge (attacker-controlled
        addresses: kept as data, never interpreted).

    Returns
    -------
    list of dict
        At most :data:`EVIDENCE_PEERS` entries ``{"address" (str, ≤ 64 characters), "port" (0–65535),
        "direction" ("in": the peer initiated; "out": the device did), "packets", "bytes", "ports"}`` (counts
        ≥ 0), in the edge's order — most packets first, except that a peer which forged an ARP binding
        against the device comes first (:meth:`edge.windows.WindowBuilder.add_scan`): the incident's actor and the
        explanation's likely attacker are the first peer; malformed entries (an address that is not an IP or
        MAC address included) are left out.
    """
    out = []
    for p in list(peers if peers is not None else [])[: 4 * EVIDENCE_PEERS]:
        try:
            addr = str(p["address"])[:PEER_ADDRESS_MAX_CHARS]
            entry = {"address": addr, "port": int(p["port"]), "direction": str(p["direction"]),
                     "packets": int(p["packets"]), "bytes": int(p["bytes"]), "ports": int(p.get("ports", 0))}
        except (KeyError, TypeError, ValueError, OverflowError):
            continue
        if (not _is_address(addr) or not 0 <= entry["port"] <= 65535 or entry["direction"] not in ("in", "out")
                or min(entry["packets"], entry["bytes"], entry["ports"]) < 0):
            continue
        out.append(entry)
    return out[:EVIDENCE_PEERS]


def window_evidence(*, x: np.ndarray, z: np.ndarray, baseline: np.ndarray, spread: np.ndarray,
                    attention: np.ndarray | None, attention_t: np.ndarray | None, proto_text: str,
                    scope: str | None = None, site_score: float | None = None, peers=None) -> dict:
    """The ``evidence`` of one decided window (DESIGN.md › Alert): ``top_features``, ``attention_peaks``,
    ``attention``, ``protocol_summary``, ``peers`` (:func:`peer_evidence`: who the device exchanged the
    most packets with — the likely attacker for an inbound attack), ``baseline_scope`` (``"device"`` or
    ``"site"``: whose baseline the values are compared with) and ``site_anomaly`` (the site model's score,
    :mod:`edge.site_model`; > 0: less like the site's grace period than its most unusual twentieth) — the
    one builder for every path."""
    peaks, series = attention_evidence(attention, attention_t)
    ev = {"top_features": feature_evidence(x, z, baseline, spread), "attention_peaks": peaks,
          "attention": series, "protocol_summary": str(proto_text), "peers": peer_evidence(peers)}
    if scope in ("device", "site"):
        ev["baseline_scope"] = scope
    if site_score is not None and np.isfinite(site_score):
        ev["site_anomaly"] = round(float(site_score), 4)
    return ev


def make_alert(*, site_id: str, device_id: str, t_start: float, t_end: float, level: int, attack_class: int,
               confidence: float, evidence: dict, policy_version: str) -> dict:
    """One decision as an Alert (DESIGN.md › Alert).

    Parameters
    ----------
    level : int
        Alert level 0–4 (:func:`decide`); the alert's level is :func:`severity` of it (evidence and class caps).
    attack_class : int
        Index in :data:`ATTACK_CLASSES` (:func:`decide`: 0 exactly when not alerting).
    confidence : float
        Probability of the decision taken (0–1).
    evidence : dict
        :func:`window_evidence`.

    Returns
    -------
    dict
        ``alert_id, ts (window end, epoch s), site_id, device_id, level, attack_class, confidence,
        technique_ids, evidence, policy_version`` — the body of ``POST /api/v1/alerts``.

    Raises
    ------
    ValueError
        If an alerting level comes with the benign class or a non-alerting one with an attack class
        (the decision rule never produces either).
    """
    alerting = int(level) >= ALERT_THRESHOLD
    if alerting == (int(attack_class) == 0):
        raise ValueError(f"inconsistent decision: level {level} with class {ATTACK_CLASSES[int(attack_class)]!r}")
    cls = ATTACK_CLASSES[int(attack_class)]
    zs = [abs(f["z"]) for f in evidence.get("top_features") or [] if f.get("z") is not None]
    level = severity(int(level), int(attack_class), max(zs, default=0.0))
    return {"alert_id": alert_id(site_id, device_id, float(t_start)), "ts": float(t_end), "site_id": site_id,
            "device_id": device_id, "level": int(level), "attack_class": cls,
            "confidence": float(min(1.0, max(0.0, confidence))),
            "technique_ids": [CLASS_TECHNIQUE[cls]] if cls in CLASS_TECHNIQUE else [],
            "evidence": evidence, "policy_version": policy_version}
