"""Pydantic v2 schemas: the Alert and Explanation contracts of ../shared/DESIGN.md, as the API speaks them.

Naming follows the FastAPI template: ``…Create`` is what a client sends, ``…Public`` what the API
returns, ``…Update`` a partial change.

Evidence keys
-------------
Explanations cite the alert by *evidence keys* (see :func:`evidence_keys`):
``feature:<name>`` (a top deviating feature), ``attention_peak:<i>``, ``attention``,
``protocol_summary``, ``peer:<i>`` (the window's top peers), ``<field>:<i>`` for attacker-controlled
strings (``payload_snippets``, ``mqtt_topics``, ``hostnames``, ``user_agents``, ``dns_names``) and the
alert's own ``attack_class``, ``confidence``, ``level`` and ``technique_ids``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
ALERT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
TECHNIQUE_ID_PATTERN = r"^T[0-9]{4}(\.[0-9]{3})?$"
UNTRUSTED_FIELDS = ("payload_snippets", "mqtt_topics", "hostnames", "user_agents", "dns_names")
ALERT_KEYS = ("attack_class", "confidence", "level", "technique_ids")
#: The detector's attack classes (fog/attacks.py ``ATTACK_CLASSES``; the cloud keeps its own copy: it
#: imports nothing from the fog).
ATTACK_CLASSES = ("benign", "scan", "flood", "brute_force", "app_dos", "arp_spoof", "other")
AttackClass = Literal["benign", "scan", "flood", "brute_force", "app_dos", "arp_spoof", "other"]
#: Caps on attacker-controlled text: longer strings are cut, longer lists keep their first items.
#: An attacker must never be able to get an alert *rejected* by making its evidence long or odd.
UNTRUSTED_MAX_CHARS = 1024
UNTRUSTED_MAX_ITEMS = 32
PROTOCOL_SUMMARY_MAX_CHARS = 4096
TRUNCATED = "…[truncated]"
#: Timestamps are epoch seconds (UTC), never milliseconds, between 1970-01-01T00:00:00Z and
#: 9999-12-31T23:59:59Z (the last second a datetime can hold).
TS_MIN_S = 0
TS_MAX_S = 253_402_300_799


class UnencodableTextError(ValueError):
    """A string holds code points that UTF-8 cannot encode (lone UTF-16 surrogates, U+D800–U+DFFF)."""


def unencodable_at(value: Any, path: str = "") -> str | None:
    """Where in ``value`` (a str, or lists/dicts of them) the first string UTF-8 cannot encode is, else None.

    JSON allows ``"\\ud800"`` escapes that decode to lone surrogates; such text cannot be stored, indexed
    or sent on, so it is refused at the door rather than found broken on the way out.

    Returns
    -------
    str or None
        A dotted path (``"0.name"``; ``""`` for ``value`` itself) naming the string, or None.
    """
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            if (where := unencodable_at(item, f"{path}.{i}" if path else str(i))) is not None:
                return where
    elif isinstance(value, dict):
        for k, item in value.items():
            if (where := unencodable_at(k, path)) is not None:
                return where
            if (where := unencodable_at(item, f"{path}.{k}" if path else str(k))) is not None:
                return where
    return None


class InputModel(BaseModel):
    """Base of every schema a client (or a model) writes: no string anywhere in it may be unencodable
    (:func:`unencodable_at`); such input is refused with a validation error (HTTP 422)."""

    @field_validator("*", mode="before")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        if isinstance(value, dict) or (isinstance(value, list) and value and isinstance(value[0], dict)):
            return value  # a nested model checks its own fields (and the error names them)
        where = unencodable_at(value)
        if where is not None:
            raise UnencodableTextError("text is not valid Unicode (a lone UTF-16 surrogate \\uD800–\\uDFFF)"
                                       + (f" at item {where}" if where else ""))
        return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


def _cap_text(limit: int):
    """A before-validator that replaces NUL by U+FFFD and cuts strings longer than ``limit`` characters."""

    def cap(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # let the str validator give its usual error
        value = value.replace("\x00", "\ufffd")
        return value if len(value) <= limit else value[:limit] + TRUNCATED

    return cap


def _cap_list(value: Any) -> Any:
    return value[:UNTRUSTED_MAX_ITEMS] if isinstance(value, list) else value


SafeStr = Annotated[str, AfterValidator(_no_nul)]
AlertId = Annotated[str, Field(pattern=ALERT_ID_PATTERN, examples=["0f3a9c1e5b7d4a2c8e6f1b3d5a7c9e0f"])]
EntityId = Annotated[str, Field(pattern=ID_PATTERN)]
TechniqueId = Annotated[str, Field(pattern=TECHNIQUE_ID_PATTERN, examples=["T1046"])]
Finite = Annotated[float, Field(allow_inf_nan=False, strict=True)]
StrictInt = Annotated[int, Field(strict=True)]
EpochSeconds = Annotated[float, Field(ge=TS_MIN_S, le=TS_MAX_S, allow_inf_nan=False, strict=True,
                                      examples=[1764000005.0])]
# No maxLength/maxItems in the schema on purpose: longer input is accepted and cut, not refused.
UntrustedStr = Annotated[str, BeforeValidator(_cap_text(UNTRUSTED_MAX_CHARS))]
UntrustedList = Annotated[list[UntrustedStr], BeforeValidator(_cap_list), Field(default_factory=list)]


class TriageStatus(str, enum.Enum):
    """Analyst triage state of an alert."""

    new = "new"
    acknowledged = "acknowledged"
    false_positive = "false_positive"
    resolved = "resolved"


class FeatureEvidence(InputModel):
    """A top deviating window statistic with the site baseline it deviates from (``edge/baseline.py``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]{1,64}$", description="Feature name (direction_statistic_unit).",
                      examples=["out_syn_only_pkts"])
    value: Finite = Field(description="Value in the alerting window (unit as in the name).")
    baseline: Finite = Field(validation_alias=AliasChoices("baseline", "baseline_mean"),
                             description="The site baseline's normal value (median learned from the site's own "
                                         "traffic), same unit; ``baseline_mean`` is accepted too.")
    baseline_std: Finite | None = Field(None, ge=0, description="Half-width of the baseline's normal range, same "
                                                                 "unit, if known.")
    z: Finite | None = Field(None, description="Deviation from the baseline in robust standard deviations of the "
                                               "log-compressed statistic (what the detector saw), if known.")


class AttentionPoint(InputModel):
    """Temporal attention weight of one window among the last T windows."""

    model_config = ConfigDict(extra="forbid")

    t: EpochSeconds = Field(description="Window start, epoch seconds (UTC; 0 … 253402300799).")
    weight: Finite = Field(ge=0, le=1, description="Attention weight (the T weights sum to 1).")


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _peer_address(value: Any) -> str:
    """An IPv4/IPv6 address (compressed form) or a MAC address (lower case, colons); anything else is refused."""
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("peer address must be an IP or MAC address")
    v = value.strip().lower()
    if _MAC.fullmatch(v):
        return v
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError("peer address must be an IP or MAC address") from None


class PeerEvidence(InputModel):
    """One of the window's top peers (edge ``top_peers``): who the device exchanged the most packets with.

    The address is attacker-chosen (a spoofed source, a scanner) but must be an IP or MAC address, kept in
    canonical form, so it can name a host and never carry text."""

    model_config = ConfigDict(extra="forbid")

    address: Annotated[str, BeforeValidator(_peer_address)] = Field(
        description="IPv4/IPv6 address (or MAC of a host without one) of the other end.", examples=["10.77.1.66"])
    port: StrictInt = Field(ge=0, le=65535, description="Service port that carried most of the packets (0: ARP or "
                                                        "a portless protocol).")
    direction: Literal["in", "out"] = Field(description="'in': the peer initiated the flows, towards the device "
                                                        "(the likely attacker of an inbound attack); 'out': the "
                                                        "device did.")
    packets: StrictInt = Field(ge=0, description="Packets in the window, both directions.")
    bytes: StrictInt = Field(ge=0, description="Bytes in the window, both directions.")
    ports: StrictInt = Field(0, ge=0, le=65536, description="Distinct service ports of the peer's flows (a port "
                                                            "scan touches many).")


class Evidence(InputModel):
    """What the detector saw. ``protocol_summary`` and the last five lists carry attacker-controlled
    text: never trusted, cut to :data:`UNTRUSTED_MAX_CHARS` characters and :data:`UNTRUSTED_MAX_ITEMS`
    items (never rejected for length, so an attacker cannot suppress an alert with long strings)."""

    model_config = ConfigDict(extra="forbid")

    top_features: list[FeatureEvidence] = Field(default_factory=list, max_length=32)
    attention_peaks: list[AttentionPoint] = Field(default_factory=list, max_length=64)
    attention: list[AttentionPoint] = Field(default_factory=list, max_length=512,
                                            description="Full attention series over the last T windows.")
    site_anomaly: Finite | None = Field(
        None, ge=-100, le=100, description="How unlike the site's own grace period the window is (the site's "
                                           "Kitsune-style autoencoders, log of the reconstruction error over its "
                                           "grace reference; > 0: beyond the grace period's most unusual windows).")
    peers: list[PeerEvidence] = Field(default_factory=list, max_length=16,
                                      description="The window's top peers, most packets first except that a host which "
                                                  "forged an ARP binding against the device comes first (at "
                                                  "most 5 from the fog).")
    baseline_scope: Literal["device", "site"] | None = Field(
        None, description="Whose baseline the values are compared with: the device's own, or its site's (a device "
                          "with little history).")
    protocol_summary: Annotated[str, BeforeValidator(_cap_text(PROTOCOL_SUMMARY_MAX_CHARS))] = Field(
        "", description="The window's protocol sentence (edge proto_text), e.g. 'TCP in: thousands of "
                        "packets from thousands of peers on port 25565, SYN-only, unanswered.'")
    payload_snippets: UntrustedList
    mqtt_topics: UntrustedList
    hostnames: UntrustedList
    user_agents: UntrustedList
    dns_names: UntrustedList

    @field_validator("top_features")
    @classmethod
    def _unique_features(cls, value: list[FeatureEvidence]) -> list[FeatureEvidence]:
        names = [f.name for f in value]
        if len(set(names)) != len(names):
            raise ValueError("top_features names must be unique")
        return value


class AlertCreate(InputModel):
    """An alert as a fog coordinator posts it (DESIGN.md › Alert)."""

    model_config = ConfigDict(extra="forbid")

    alert_id: AlertId = Field(description="Deterministic from site/device/window: a retry never duplicates.")
    ts: EpochSeconds = Field(description="Window end in epoch seconds (UTC), a number between 0 (1970-01-01) and "
                                         "253402300799 (9999-12-31T23:59:59Z); never milliseconds.")
    site_id: EntityId
    device_id: EntityId
    level: StrictInt = Field(ge=0, le=4, description="Alert level 0 (none) … 4 (critical).")
    attack_class: AttackClass = Field(description="The detector's class (fog/attacks.py ATTACK_CLASSES).")
    confidence: Finite = Field(ge=0, le=1)
    technique_ids: list[TechniqueId] = Field(default_factory=list, max_length=16)
    evidence: Evidence = Field(default_factory=Evidence)
    policy_version: Annotated[SafeStr, Field(min_length=1, max_length=128)]

    @property
    def ts_datetime(self) -> datetime:
        """``ts`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.ts, UTC)


class TacticRef(BaseModel):
    """An ATT&CK tactic reached through one of the alert's techniques."""

    id: str
    name: str
    technique_id: str


class ClaimTechnique(InputModel):
    """A technique the explanation names, why, and the evidence it rests on."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(max_length=16)
    name: str = Field(max_length=200)
    tactic: str = Field(max_length=100)
    why: str = Field(min_length=1, max_length=1000)
    evidence_refs: list[str] = Field(min_length=1, max_length=32)


class ClaimAction(InputModel):
    """An observational step for the analyst (never automatic blocking)."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=500)
    evidence_refs: list[str] = Field(min_length=1, max_length=32)


class ExplanationBody(InputModel):
    """What an explainer (built-in or a model) writes; validated, then checked against the alert.

    ``summary`` and ``confidence_rationale`` rest on the top-level ``evidence_refs``; each technique
    and action carries its own.
    """

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(min_length=1, max_length=1500)
    techniques: list[ClaimTechnique] = Field(default_factory=list, max_length=16)
    analyst_actions: list[ClaimAction] = Field(min_length=1, max_length=10)
    confidence_rationale: str = Field(min_length=1, max_length=1000)
    evidence_refs: list[str] = Field(min_length=1, max_length=64)


class ExplanationPublic(ExplanationBody):
    """A stored explanation (DESIGN.md › Explanation) with its provenance.

    ``source`` is ``builtin``, ``llm:<model>``, ``builtin:incident`` (a short explanation pointing to the
    incident's full one, written once per incident and level), or ``builtin:fallback`` when the model's answer failed
    (then ``fallback_reason`` says why).
    """

    source: str
    fallback_reason: str | None = None
    created_at: AwareDatetime


class AlertPublic(BaseModel):
    """A stored alert with its ATT&CK tactics, triage state and (once ready) explanation."""

    alert_id: str
    ts: AwareDatetime
    site_id: str
    device_id: str
    level: int
    attack_class: str
    confidence: float
    technique_ids: list[str]
    tactics: list[TacticRef]
    evidence: Evidence
    policy_version: str
    status: TriageStatus
    note: str | None
    received_at: AwareDatetime
    updated_at: AwareDatetime
    explanation_status: Literal["pending", "ready"]
    explanation: ExplanationPublic | None = None
    incident_id: str | None = Field(None, description="The incident the alert belongs to "
                                                      "(``GET /api/v1/incidents/{incident_id}``).")


class SiteStateUpdate(InputModel):
    """A site's baseline state as the fog reports it."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["learning", "detecting"] = Field(description="learning: in its grace period, nothing is "
                                                                "alerted; detecting: the baseline is learned.")
    grace_elapsed_s: Finite = Field(0.0, ge=0, le=1e9, description="Seconds of the grace period elapsed.")
    grace_s: Finite = Field(0.0, ge=0, le=1e9, description="Length of the grace period, seconds.")
    grace_windows: StrictInt = Field(0, ge=0, le=2**31 - 1, description="Windows collected in the grace period.")
    devices_own: StrictInt = Field(0, ge=0, le=2**31 - 1, description="Devices with their own baseline statistics.")


class SitePublic(SiteStateUpdate):
    """A site's baseline state and when it was last reported."""

    model_config = ConfigDict(extra="ignore")

    site_id: str
    updated_at: AwareDatetime


class AlertsPage(BaseModel):
    """One page of alerts, newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[AlertPublic]
    next_cursor: str | None


class IncidentPublic(BaseModel):
    """The alerts of one attack (``cloud/services/incidents.py``): one actor, one technique family, a time span."""

    incident_id: str
    attack_class: str = Field(description="Technique family of its alerts.")
    actor: str = Field(description="The likely attacker: an address (the top peer that initiated the traffic), "
                                   "a device (that initiated it), or 'many sources → <victim>' for spoofed sources.")
    actor_role: Literal["peer", "device", "many sources"]
    site_ids: list[str]
    device_ids: list[str] = Field(description="Devices with alerts in it (victims, or the source itself).")
    technique_ids: list[str]
    first_ts: AwareDatetime = Field(description="End of its first alerted window.")
    last_ts: AwareDatetime = Field(description="End of its last alerted window.")
    alert_count: int
    max_level: int
    status: TriageStatus
    note: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class IncidentsPage(BaseModel):
    """One page of incidents, most recently active first; pass ``next_cursor`` back as ``cursor``."""

    items: list[IncidentPublic]
    next_cursor: str | None


class AlertUpdate(InputModel):
    """Triage change: a new status, an analyst note, or both."""

    model_config = ConfigDict(extra="forbid")

    status: TriageStatus | None = None
    note: Annotated[SafeStr, Field(max_length=4000)] | None = None

    @model_validator(mode="after")
    def _something(self) -> AlertUpdate:
        if self.status is None and self.note is None:
            raise ValueError("give at least one of 'status' or 'note'")
        return self


class TechniqueTactic(BaseModel):
    """A tactic of a technique."""

    id: str | None
    shortname: str
    name: str


class TechniquePublic(BaseModel):
    """An ATT&CK technique from the bundled table."""

    id: str
    name: str
    tactics: list[TechniqueTactic]
    url: str | None
    domain: str
    stix_id: str


class Health(BaseModel):
    """Liveness answer of ``/healthz``."""

    status: Literal["ok", "error"]
    database: Literal["ok", "error"]


def evidence_keys(alert: AlertCreate | AlertPublic | dict[str, Any]) -> set[str]:
    """Every evidence key an explanation of ``alert`` may cite (see the module docstring)."""
    ev = alert["evidence"] if isinstance(alert, dict) else alert.evidence
    ev = ev if isinstance(ev, dict) else ev.model_dump()
    keys = set(ALERT_KEYS)
    keys.update(f"feature:{f['name']}" for f in ev.get("top_features", []))
    keys.update(f"attention_peak:{i}" for i in range(len(ev.get("attention_peaks", []))))
    if ev.get("attention"):
        keys.add("attention")
    if ev.get("protocol_summary"):
        keys.add("protocol_summary")
    keys.update(f"peer:{i}" for i in range(len(ev.get("peers") or [])))
    for field in UNTRUSTED_FIELDS:
        keys.update(f"{field}:{i}" for i in range(len(ev.get(field, []))))
    return keys


# -- suppressions ---------------------------------------------------------------------------------------
SUPPRESSION_ID_PATTERN = r"^[0-9a-f]{32}$"
#: Most rules one ``GET /api/v1/suppressions/active`` returns, and most ids one hits report may carry.
SUPPRESSIONS_ACTIVE_MAX = 10_000
SUPPRESSION_HITS_MAX_IDS = 1_000
_ISO_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")


def _iso_time(value: Any) -> Any:
    """Only ISO 8601 text: a number (or a numeric string) would be read as seconds or milliseconds."""
    if not isinstance(value, str) or _ISO_NUMBER.match(value):
        raise ValueError("give an ISO 8601 time with its UTC offset, e.g. 2026-12-01T16:00:00Z")
    return value


def _future(value: datetime | None) -> datetime | None:
    if value is not None and value <= datetime.now(UTC):
        raise ValueError("expires_at must be in the future (null: never expires)")
    return value


#: ``expires_at`` of a new or changed suppression: ISO 8601 with an offset, in the future, or null (never).
FutureTime = Annotated[AwareDatetime, BeforeValidator(_iso_time), AfterValidator(_future)]
PeerAddress = Annotated[str, BeforeValidator(_peer_address)]
Reason = Annotated[SafeStr, Field(min_length=1, max_length=500)]


class SuppressionCreate(InputModel):
    """A suppression rule: the fog counts, instead of posting, the alerts that match *every* given matcher
    (``site_id``, ``device_id``, ``peer`` — an address among the alert's top peers —, ``technique_id`` — one
    of the alert's techniques); at least one matcher is required."""

    model_config = ConfigDict(extra="forbid")

    site_id: EntityId | None = Field(None, description="Only alerts of this site.")
    device_id: EntityId | None = Field(None, description="Only alerts of this device.", examples=["10.0.0.7"])
    peer: PeerAddress | None = Field(None, description="Only alerts with this address among their top peers "
                                                       "(IPv4/IPv6 or MAC; stored in canonical form).",
                                     examples=["10.0.0.66"])
    technique_id: TechniqueId | None = Field(None, description="Only alerts with this ATT&CK technique (it must be "
                                                               "in the bundled ATT&CK table).")
    expires_at: FutureTime | None = Field(None, description="When the rule stops applying (ISO 8601 with its offset, "
                                                            "in the future); null: never.")
    reason: Reason = Field(description="Why (1–500 characters), shown with the rule and in its audit.")
    source_alert_id: AlertId | None = Field(None, description="The alert the rule was made from.")

    @model_validator(mode="after")
    def _a_matcher(self) -> SuppressionCreate:
        if self.device_id is None and self.peer is None and self.technique_id is None:
            raise ValueError("give at least one of 'device_id', 'peer' or 'technique_id' ('site_id' alone would "
                             "suppress a whole site)")
        return self


class SuppressionUpdate(InputModel):
    """A change of a suppression: its reason, its expiry (``null``: never expires), or both."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason | None = None
    expires_at: FutureTime | None = None

    @model_validator(mode="after")
    def _something(self) -> SuppressionUpdate:
        if not self.model_fields_set & {"reason", "expires_at"}:
            raise ValueError("give at least one of 'reason' or 'expires_at'")
        if "reason" in self.model_fields_set and self.reason is None:
            raise ValueError("'reason' cannot be null")
        return self


class SuppressionPublic(BaseModel):
    """A stored suppression, whether it is active now, and how many alerts the fogs counted instead of posting."""

    suppression_id: str
    site_id: str | None
    device_id: str | None
    peer: str | None
    technique_id: str | None
    reason: str
    created_by: str = Field(description="Name of the API key that created it.")
    created_at: AwareDatetime
    expires_at: AwareDatetime | None
    revoked_at: AwareDatetime | None
    revoked_by: str | None
    source_alert_id: str | None
    active: bool = Field(description="Neither revoked nor expired.")
    hit_count: int = Field(description="Alerts the fogs suppressed with it (as they reported them).")
    last_hit_at: AwareDatetime | None


class SuppressionsPage(BaseModel):
    """One page of suppressions, newest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[SuppressionPublic]
    next_cursor: str | None


class SuppressionRule(BaseModel):
    """What a fog needs of an active rule (``GET /api/v1/suppressions/active``)."""

    suppression_id: str
    site_id: str | None
    device_id: str | None
    peer: str | None
    technique_id: str | None
    expires_at: AwareDatetime | None


class SuppressionRules(BaseModel):
    """The active rules (unrevoked, unexpired), newest first; ``truncated`` when more than the first
    :data:`SUPPRESSIONS_ACTIVE_MAX` exist."""

    items: list[SuppressionRule]
    truncated: bool
    generated_at: AwareDatetime


class SuppressionHits(InputModel):
    """Alerts a fog suppressed since its last report, per rule."""

    model_config = ConfigDict(extra="forbid")

    counts: dict[Annotated[str, Field(pattern=SUPPRESSION_ID_PATTERN)],
                 Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]] = Field(
        max_length=SUPPRESSION_HITS_MAX_IDS, description="suppression_id → alerts suppressed (≥ 1).")


class SuppressionHitsResult(BaseModel):
    """Which ids of a hits report were counted, and which are unknown here (ignored)."""

    counted: list[str]
    unknown: list[str]


class AuditEntryPublic(BaseModel):
    """One change of a suppression: ``created``, ``updated``, ``revoked`` or ``hits`` (a fog's report)."""

    id: int
    suppression_id: str
    action: Literal["created", "updated", "revoked", "hits"]
    key_name: str = Field(description="Name of the API key that made the change.")
    key_id: int
    at: AwareDatetime
    detail: dict[str, Any]


class AuditPage(BaseModel):
    """One page of a suppression's audit, oldest first; pass ``next_cursor`` back as ``cursor``."""

    items: list[AuditEntryPublic]
    next_cursor: str | None
