"""Analysts' suppression rules, as the fog applies them: an alert a rule matches is counted, not posted.

The rules come from the cloud (``GET /api/v1/suppressions/active``, polled by :class:`fog.outbox.CloudPoster`
every ``suppressions_refresh_s``); the per-rule counts go back to it (``POST /api/v1/suppressions/hits``), where
they appear as the rule's ``hit_count`` and in its audit.

**Matching rule.** A rule matches an alert when *every* matcher the rule has matches:

=============== ====================================================================================
``site_id``     equal to the alert's ``site_id``
``device_id``   equal to the alert's ``device_id``
``technique_id`` one of the alert's ``technique_ids``
``peer``        the address of one of the alert's top peers (``evidence.peers``), both in canonical form
                (IP addresses compressed, MAC addresses lower case with colons)
=============== ====================================================================================

A rule without any matcher is refused (it would suppress everything), and so is a rule with only
``site_id``, as the cloud does. A rule past its ``expires_at`` never matches, even before the next refresh
removes it. When several rules match, the first in the cloud's order (newest first) is the one counted.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

#: Most rules kept (the cloud sends at most 10,000).
MAX_RULES = 10_000
_MAC = re.compile(r"^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


def canonical_address(text: Any) -> str | None:
    """An IP address in compressed form or a MAC address in lower case with colons; None for anything else.

    Examples
    --------
    >>> canonical_address("2001:DB8:0:0:0:0:0:1"), canonical_address("AA-BB-CC-00-11-22"), canonical_address("x")
    ('2001:db8::1', 'aa:bb:cc:00:11:22', None)
    """
    if not isinstance(text, str) or len(text) > 64:
        return None
    v = text.strip().lower()
    if _MAC.fullmatch(v):
        return v.replace("-", ":")
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        return None


@dataclass(frozen=True)
class SuppressionRule:
    """One active rule (module docstring: matching rule).

    Attributes
    ----------
    suppression_id : str
        32 hexadecimal digits, the cloud's ID.
    site_id, device_id, peer, technique_id : str or None
        The matchers; None = any.
    expires_at : float or None
        Epoch seconds (UTC) after which it never matches; None = never expires.
    """

    suppression_id: str
    site_id: str | None = None
    device_id: str | None = None
    peer: str | None = None
    technique_id: str | None = None
    expires_at: float | None = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> SuppressionRule:
        """A rule from one item of ``GET /api/v1/suppressions/active``.

        Raises
        ------
        ValueError
            For a malformed item: a bad ID, a matcher that is not a string, an unparsable ``expires_at``, a peer
            that is not an IP or MAC address, or no matcher besides ``site_id``.
        """
        if not isinstance(item, Mapping):
            raise ValueError(f"a suppression rule must be an object, got {type(item).__name__}")
        sid = item.get("suppression_id")
        if not isinstance(sid, str) or not _ID.fullmatch(sid):
            raise ValueError(f"suppression_id {str(sid)[:40]!r}: expected 32 hexadecimal digits")
        fields: dict[str, Any] = {}
        for name in ("site_id", "device_id", "peer", "technique_id"):
            v = item.get(name)
            if v is not None and (not isinstance(v, str) or not v or len(v) > 128):
                raise ValueError(f"suppression {sid}: {name} {str(v)[:40]!r} is not a string of 1–128 characters")
            fields[name] = v
        if fields["peer"] is not None:
            peer = canonical_address(fields["peer"])
            if peer is None:
                raise ValueError(f"suppression {sid}: peer {fields['peer'][:64]!r} is not an IP or MAC address")
            fields["peer"] = peer
        if fields["device_id"] is None and fields["peer"] is None and fields["technique_id"] is None:
            raise ValueError(f"suppression {sid}: no device_id, peer or technique_id (it would suppress too much)")
        exp = item.get("expires_at")
        if exp is not None:
            try:
                dt = datetime.fromisoformat(str(exp).replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"suppression {sid}: expires_at {str(exp)[:40]!r} is not an ISO 8601 time") from None
            if dt.tzinfo is None:
                raise ValueError(f"suppression {sid}: expires_at {exp!r} has no UTC offset")
            exp = dt.timestamp()
        return cls(suppression_id=sid, expires_at=exp, **fields)

    def matches(self, alert: Mapping[str, Any], now: float) -> bool:
        """Whether the rule applies to ``alert`` (a :func:`fog.alerts.make_alert` dict) at ``now`` (epoch s)."""
        if self.expires_at is not None and now >= self.expires_at:
            return False
        if self.site_id is not None and alert.get("site_id") != self.site_id:
            return False
        if self.device_id is not None and alert.get("device_id") != self.device_id:
            return False
        if self.technique_id is not None and self.technique_id not in (alert.get("technique_ids") or ()):
            return False
        if self.peer is not None:
            peers = ((alert.get("evidence") or {}).get("peers")) or ()
            if not any(isinstance(p, Mapping) and canonical_address(p.get("address")) == self.peer for p in peers):
                return False
        return True


class SuppressionSet:
    """The active suppression rules of a fog and how many alerts each suppressed. Thread-safe: the poster
    replaces the rules and takes the counts while the coordinator matches alerts.

    Parameters
    ----------
    rules : iterable of SuppressionRule or dict, optional
        Initial rules (dicts as :meth:`SuppressionRule.from_api` reads them).

    Attributes
    ----------
    updated_at : float or None
        Epoch seconds of the last :meth:`replace` (None: never).

    Examples
    --------
    >>> s = SuppressionSet()
    >>> s.replace([{"suppression_id": "a" * 32, "device_id": "10.0.0.7"}], now=0.0)
    1
    >>> s.match({"site_id": "site_a", "device_id": "10.0.0.7", "technique_ids": ["T1046"]}, now=1.0) == "a" * 32
    True
    >>> s.take_counts()
    {'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa': 1}
    """

    def __init__(self, rules: Iterable[SuppressionRule | Mapping[str, Any]] = ()) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[SuppressionRule, ...] = ()
        self._counts: Counter[str] = Counter()
        self.updated_at: float | None = None
        if rules:
            self.replace(rules, now=0.0)
            self.updated_at = None

    def replace(self, rules: Iterable[SuppressionRule | Mapping[str, Any]], now: float) -> int:
        """Make ``rules`` the active set (dropping those already expired at ``now``, epoch s); malformed rules
        are skipped with a warning. Counts of rules no longer present are kept until taken.

        Returns
        -------
        int
            Rules now active.
        """
        kept: list[SuppressionRule] = []
        for item in rules:
            if len(kept) >= MAX_RULES:
                log.warning("more than %d suppression rules: the rest are ignored", MAX_RULES)
                break
            try:
                rule = item if isinstance(item, SuppressionRule) else SuppressionRule.from_api(item)
            except ValueError as exc:
                log.warning("ignoring a suppression rule from the cloud: %s", exc)
                continue
            if rule.expires_at is None or rule.expires_at > now:
                kept.append(rule)
        with self._lock:
            changed = {r.suppression_id for r in kept} != {r.suppression_id for r in self._rules}
            self._rules = tuple(kept)
            self.updated_at = now
        if changed:
            log.info("%d suppression rules active", len(kept))
        return len(kept)

    def match(self, alert: Mapping[str, Any], now: float) -> str | None:
        """The ID of the first rule matching ``alert`` at ``now`` (epoch s), counted as one hit; None when
        no rule matches (nothing counted)."""
        rules = self._rules  # an immutable tuple, swapped whole by replace()
        for rule in rules:
            if rule.matches(alert, now):
                with self._lock:
                    self._counts[rule.suppression_id] += 1
                return rule.suppression_id
        return None

    def take_counts(self) -> dict[str, int]:
        """The hits counted since the last call, ``suppression_id → alerts``, and reset them."""
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts

    def restore_counts(self, counts: Mapping[str, int]) -> None:
        """Put back counts taken by :meth:`take_counts` that could not be delivered (added to newer ones)."""
        with self._lock:
            self._counts.update({k: int(v) for k, v in counts.items() if int(v) > 0})

    def rules(self) -> tuple[SuppressionRule, ...]:
        """The active rules."""
        return self._rules

    def __len__(self) -> int:
        return len(self._rules)
