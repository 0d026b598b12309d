"""SSDP M-SEARCH client of the range's benign devices (UPnP discovery, UDA 1.1 §1.3).

Debian ships no command-line SSDP client (``gssdp-tools`` holds only a GTK sniffer), so this is the
range's one home-made protocol client; the answers come from real responders (``minidlnad``)::

    python -m training.range.ssdp --source 10.77.1.31 --mx 2 --seed 7

It sends one ``M-SEARCH * HTTP/1.1`` to ``239.255.255.250:1900`` from ``source`` (multicast
interface pinned to that address, TTL 2, so no route is needed), collects the unicast answers for
``mx + 0.5`` seconds, then fetches each answer's ``LOCATION`` description over HTTP, as a UPnP
control point does. The search target (``ST``) is drawn with ``seed`` from :data:`SEARCH_TARGETS`.
Only addresses inside the source's own /16 are contacted.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import random
import socket
import time
import urllib.parse
import urllib.request

log = logging.getLogger(__name__)

SSDP_GROUP = ("239.255.255.250", 1900)
#: Search targets a control point asks for (UPnP Device Architecture 1.1).
SEARCH_TARGETS = ("ssdp:all", "upnp:rootdevice", "urn:schemas-upnp-org:device:MediaServer:1",
                  "urn:schemas-upnp-org:service:ContentDirectory:1")


def m_search(source: str, *, st: str = "ssdp:all", mx: int = 2, fetch: bool = True,
             timeout_s: float = 3.0) -> list[str]:
    """Send one M-SEARCH from ``source``; return the ``LOCATION`` URLs of the answers.

    Parameters
    ----------
    source : str
        IPv4 address of the searching device (its namespace's ``eth0`` address).
    st : str
        Search target header.
    mx : int
        Maximum wait (``MX``), seconds, 1..5; answers are collected for ``mx + 0.5`` s.
    fetch : bool
        Fetch each answer's description document over HTTP.
    timeout_s : float
        Timeout of each description fetch, seconds.

    Raises
    ------
    ValueError
        When ``mx`` is outside 1..5 or ``source`` is not an IPv4 address.
    """
    if not 1 <= mx <= 5:
        raise ValueError(f"mx={mx!r}; expected 1..5 (seconds)")
    src = ipaddress.IPv4Address(source)
    local = ipaddress.IPv4Network(f"{src}/16", strict=False)
    msg = (f"M-SEARCH * HTTP/1.1\r\nHOST: {SSDP_GROUP[0]}:{SSDP_GROUP[1]}\r\nMAN: \"ssdp:discover\"\r\n"
           f"MX: {mx}\r\nST: {st}\r\nUSER-AGENT: Linux/6.1 UPnP/1.1 marlids-range/1.0\r\n\r\n")
    locations: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, src.packed)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
        s.bind((str(src), 0))
        s.sendto(msg.encode(), SSDP_GROUP)
        s.settimeout(0.25)
        end = time.monotonic() + mx + 0.5
        while time.monotonic() < end:
            try:
                data, _addr = s.recvfrom(4096)
            except TimeoutError:
                continue
            for line in data.decode(errors="replace").split("\r\n"):
                if line.lower().startswith("location:"):
                    url = line.split(":", 1)[1].strip()
                    if url not in locations:
                        locations.append(url)
    for url in locations if fetch else ():
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            if ipaddress.IPv4Address(host) not in local:
                continue
            with urllib.request.urlopen(url, timeout=timeout_s) as r:  # lab address, checked above
                log.info("%s: %d bytes", url, len(r.read()))
        except (OSError, ValueError) as exc:
            log.info("%s: %s", url, exc)
    return locations


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", required=True, help="IPv4 address of this device")
    ap.add_argument("--mx", type=int, default=2, help="MX seconds (1..5)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the search-target choice")
    ap.add_argument("--no-fetch", action="store_true", help="do not fetch the descriptions")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    st = random.Random(a.seed).choice(SEARCH_TARGETS)
    locs = m_search(a.source, st=st, mx=a.mx, fetch=not a.no_fetch)
    log.info("M-SEARCH %s from %s: %d answer(s)", st, a.source, len(locs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
