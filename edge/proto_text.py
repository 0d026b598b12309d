"""One compact, deterministic sentence per window that summarises its protocol sequence.

The sentence is what MiniLM embeds, so it must be (1) deterministic — the same window always gives
the same text — and (2) coarse — counts are bucketed into words so that ordinary windows repeat
exactly and hit the embedding cache, while a change of regime (a few packets → thousands, one port
→ hundreds) changes the words. Example::

    MQTT out: dozens of packets to 1 peer on port 1883; DNS out: a few packets to 1 peer on port 53;
    TCP in: thousands of packets from thousands of peers on port 80, SYN-only, unanswered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

#: Phrases kept per window (largest first); the rest are summarised as "and N more".
MAX_PHRASES = 4
#: Ports listed per phrase (most packets first).
MAX_PORTS = 3


@dataclass
class ProtoGroup:
    """Packets of one window grouped by protocol name and who initiated the flows.

    Attributes
    ----------
    name : str
        nDPI master protocol (``MQTT``, ``DNS``), else the transport (``TCP``), ``ARP`` or ``L2/0x888e``.
    outbound : bool
        True when the device initiated the flows (sent their first packet).
    pkts : float
        Packets in both directions.
    peers : set of str
    ports : dict
        Responder (service) port → packets.
    syn_only, synack, rst : float
        TCP flag counts.
    """

    name: str
    outbound: bool
    pkts: float = 0.0
    peers: set = field(default_factory=set)
    ports: dict = field(default_factory=dict)
    syn_only: float = 0.0
    synack: float = 0.0
    rst: float = 0.0


def amount(n: float) -> str:
    """Bucket a count into words: ``1``, ``a few`` (2–4), ``~10`` (5–19), ``dozens``, ``hundreds``, ``thousands``."""
    n = int(n + 0.5)
    if n <= 1:
        return str(max(n, 0))
    if n < 5:
        return "a few"
    if n < 20:
        return "~10"
    if n < 100:
        return "dozens"
    if n < 1000:
        return "hundreds"
    return "thousands"


def _count(n: float, noun: str) -> str:
    """``"1 peer"``, ``"a few peers"``, ``"thousands of packets"``."""
    word = amount(n)
    if word == "1":
        return f"1 {noun}"
    return f"{word}{' of' if word in ('dozens', 'hundreds', 'thousands') else ''} {noun}s"


def _phrase(g: ProtoGroup) -> str:
    direction = "out" if g.outbound else "in"
    prep = "to" if g.outbound else "from"
    n_peers = len(g.peers)
    parts = [f"{g.name} {direction}: {_count(g.pkts, 'packet')}"]
    if n_peers:
        parts[0] += f" {prep} {_count(n_peers, 'peer')}"
    if g.ports:
        top = sorted(g.ports.items(), key=lambda kv: (-kv[1], kv[0]))
        ports = ",".join(str(p) for p, _ in top[:MAX_PORTS])
        more = len(top) - MAX_PORTS
        word = "port" if len(top) == 1 else "ports"
        parts[0] += f" on {word} {ports}" + (f" +{amount(more)} more" if more > 0 else "")
    if g.syn_only and g.syn_only >= 0.5 * g.pkts:
        parts.append("SYN-only")
    if g.syn_only and not g.synack:
        parts.append("unanswered")
    if g.rst and g.rst >= 0.25 * g.pkts:
        parts.append("reset")
    return ", ".join(parts)


def window_text(groups: Iterable[ProtoGroup]) -> str:
    """Render a window's protocol groups as one sentence (largest groups first, ties by name).

    Parameters
    ----------
    groups : iterable of ProtoGroup

    Returns
    -------
    str
        ``"<phrase>; <phrase>; …."``, or ``"silent."`` for a window without packets.
    """
    gs = sorted(groups, key=lambda g: (-g.pkts, g.name, not g.outbound))
    if not gs:
        return "silent."
    phrases = [_phrase(g) for g in gs[:MAX_PHRASES]]
    rest = len(gs) - MAX_PHRASES
    if rest > 0:
        phrases.append(f"and {amount(rest)} more protocol group{'s' if rest > 1 else ''}")
    return "; ".join(phrases) + "."
