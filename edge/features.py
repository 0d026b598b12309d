"""The ordered table of per-device window statistics: one source for code, Parquet and docs.

Every window of a device (see :mod:`edge.windows`) is described by the statistics below, in this
order. Names read direction → statistic → unit (``out_dst_port_entropy_bits``); *out* means sent by
the device, *in* received by it. Counts are over the window's packets; ratios and fractions are in
[0, 1] with 0 when the denominator is empty. Sizes are IP bytes (IP header included, link layer
excluded). Inter-arrival times (IAT) are measured between consecutive packets of one flow (NFStream's
``delta_time``, millisecond resolution) and then pooled over the device's flows in the window.

``docs/features.md`` is generated from :data:`FEATURES` (``python -m edge.features``) and a test keeps
the two in sync.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Feature:
    """One named window statistic.

    Parameters
    ----------
    name : str
        Column name (direction, statistic, unit).
    unit : str
        Unit of the value: ``pkts``, ``bytes``, ``s``, ``ms``, ``bits``, ``per_s``, ``count``,
        ``fraction`` (0–1) or ``ratio`` (0–1).
    doc : str
        One-line definition.
    """

    name: str
    unit: str
    doc: str


#: Application groups for the ``app_*_pkt_fraction`` features: nDPI master protocol (lower case,
#: the part before the first dot of ``application_name``) → group. Anything else is ``other``;
#: nDPI's ``Unknown`` is ``unknown``.
APP_GROUPS: dict[str, str] = {
    "dns": "dns",
    "mdns": "discovery",
    "ssdp": "discovery",
    "llmnr": "discovery",
    "netbios": "discovery",
    "dhcp": "infra",
    "dhcpv6": "infra",
    "ntp": "infra",
    "http": "http",
    "http_proxy": "http",
    "tls": "tls",
    "quic": "tls",
    "dtls": "tls",
    "mqtt": "mqtt",
    "coap": "coap",
    "ssh": "remote_access",
    "telnet": "remote_access",
    "unknown": "unknown",
}
APP_GROUP_NAMES: tuple[str, ...] = (
    "dns", "discovery", "infra", "http", "tls", "mqtt", "coap", "remote_access", "unknown", "other",
)

_F = Feature
FEATURES: tuple[Feature, ...] = (
    # volume
    _F("pkts", "pkts", "packets sent or received by the device"),
    _F("bytes", "bytes", "IP bytes sent or received by the device"),
    _F("out_pkts", "pkts", "packets sent by the device"),
    _F("in_pkts", "pkts", "packets received by the device"),
    _F("out_bytes", "bytes", "IP bytes sent by the device"),
    _F("in_bytes", "bytes", "IP bytes received by the device"),
    _F("pkts_per_s", "per_s", "packets per second over the window length"),
    _F("bytes_per_s", "per_s", "IP bytes per second over the window length"),
    _F("in_bytes_fraction", "fraction", "in_bytes / (in_bytes + out_bytes): the in/out byte balance"),
    _F("active_s", "s", "time between the first and the last packet of the device in the window"),
    # flows
    _F("flows", "count", "bidirectional flows (5-tuple) with a packet in the window"),
    _F("new_flows", "count", "flows whose first packet falls in the window"),
    _F("out_initiated_flows", "count", "flows the device initiated (it sent the first packet)"),
    _F("in_initiated_flows", "count", "flows a peer initiated towards the device"),
    _F("pkts_per_flow_mean", "pkts", "pkts / flows"),
    # peers and ports
    _F("distinct_peers", "count", "distinct peer addresses exchanging packets with the device"),
    _F("new_peers", "count", "peers never seen with this device in any earlier window of the extraction"),
    _F("out_distinct_dst_addrs", "count", "distinct responders of the flows the device initiated"),
    _F("out_distinct_dst_ports", "count", "distinct destination ports of the flows the device initiated"),
    _F("out_dst_port_entropy_bits", "bits", "Shannon entropy of destination ports over device-initiated flows"),
    _F("in_distinct_src_addrs", "count", "distinct initiators of flows towards the device"),
    _F("in_distinct_dst_ports", "count", "distinct local ports of the device that peers contacted"),
    _F("in_dst_port_entropy_bits", "bits", "Shannon entropy of local ports over peer-initiated flows"),
    _F("in_src_max_fanout", "count",
       "largest fan-out among the peers that contacted the device in the window (initiated a flow to it or "
       "sent an ARP request it answered): the distinct site addresses that peer contacted in the same window. "
       "A scan reaches every host, so its bystanders see tens to hundreds"),
    # transport mix
    _F("tcp_pkt_fraction", "fraction", "TCP packets / pkts"),
    _F("udp_pkt_fraction", "fraction", "UDP packets / pkts"),
    _F("icmp_pkt_fraction", "fraction", "ICMP and ICMPv6 packets / pkts"),
    _F("other_pkt_fraction", "fraction", "packets of any other protocol (other IP protocols, ARP, other L2) / pkts"),
    _F("multicast_pkt_fraction", "fraction", "packets sent to a broadcast or multicast destination / pkts"),
    # TCP flags (RFC 9293)
    _F("out_syn_only_pkts", "pkts", "SYN packets without ACK sent by the device (connection attempts)"),
    _F("in_syn_only_pkts", "pkts", "SYN packets without ACK received by the device"),
    _F("syn_only_ratio", "ratio", "SYN-without-ACK packets / TCP packets"),
    _F("synack_pkts", "pkts", "SYN+ACK packets in either direction"),
    _F("rst_pkts", "pkts", "packets with RST in either direction"),
    _F("rst_ratio", "ratio", "RST packets / TCP packets"),
    _F("fin_pkts", "pkts", "packets with FIN in either direction"),
    _F("psh_pkts", "pkts", "packets with PSH in either direction"),
    _F("ece_cwr_pkts", "pkts", "packets with ECE or CWR (explicit congestion notification, RFC 3168)"),
    _F("tcp_conn_attempts", "count", "TCP flows started in the window whose first packet is a bare SYN"),
    _F("tcp_failed_conn_fraction", "fraction",
       "of those attempts, the fraction never answered by SYN+ACK (half-open or refused)"),
    # timing
    _F("iat_mean_ms", "ms", "mean packet inter-arrival time within the device's flows"),
    _F("iat_std_ms", "ms", "standard deviation of the packet inter-arrival time within flows"),
    _F("iat_min_ms", "ms", "minimum packet inter-arrival time within flows"),
    _F("iat_max_ms", "ms", "maximum packet inter-arrival time within flows"),
    # packet sizes
    _F("pkt_size_mean_bytes", "bytes", "mean IP packet size"),
    _F("pkt_size_std_bytes", "bytes", "standard deviation of the IP packet size"),
    _F("pkt_size_min_bytes", "bytes", "smallest IP packet"),
    _F("pkt_size_max_bytes", "bytes", "largest IP packet"),
    _F("out_pkt_size_mean_bytes", "bytes", "mean size of the packets the device sent"),
    _F("in_pkt_size_mean_bytes", "bytes", "mean size of the packets the device received"),
    # ARP (RFC 826) — read with scapy, which NFStream does not meter
    _F("arp_pkts", "pkts", "ARP packets the device sent (attributed by sender MAC)"),
    _F("arp_reply_pkts", "pkts", "ARP replies the device sent"),
    _F("arp_ip_mac_conflicts", "count",
       "ARP packets in which the device claimed an IP address already bound to another MAC"),
    _F("arp_victim_conflicts", "count",
       "conflicting ARP packets of another host that claimed the device's IP address or were addressed to "
       "the device: the victim side of ARP spoofing"),
    # application mix (nDPI)
    *(
        _F(f"app_{g}_pkt_fraction", "fraction", f"packets of flows nDPI classifies as {g.replace('_', ' ')} / pkts")
        for g in APP_GROUP_NAMES
    ),
)

#: Column names in order.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
#: Number of window statistics.
N_FEATURES: int = len(FEATURES)


def app_group(application_name: str) -> str:
    """Map an nDPI ``application_name`` (e.g. ``"TLS.Google"``) to its group in :data:`APP_GROUP_NAMES`."""
    master = application_name.split(".", 1)[0].strip().lower()
    return APP_GROUPS.get(master, "other")


def features_markdown() -> str:
    """Render :data:`FEATURES` as the Markdown table of ``docs/features.md``."""
    lines = [
        "# Window features",
        "",
        "Generated from `edge/features.py` by `python -m edge.features > docs/features.md`; do not edit.",
        "",
        f"{N_FEATURES} statistics per (device, window), in this order. *out* = sent by the device, "
        "*in* = received by it.",
        "",
        "| # | name | unit | definition |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {i} | `{f.name}` | {f.unit} | {f.doc} |" for i, f in enumerate(FEATURES)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - documentation generator
    print(features_markdown(), end="")
