"""Network-namespace topology and process bookkeeping, torn down on success, error and Ctrl-C.

Safety rules enforced here (issue 3):

* every namespace is named ``mlr-<pid>-<tag>`` (unique per recording process);
* the bridge lives inside its own namespace; veth pairs join only namespaces of this range, so the
  host namespace gains no interface; no namespace gets a default route, IPv4 or IPv6, and none
  forwards IPv6 (checked after set-up and again during the recording, :meth:`Range.check_isolation`);
* IPv6 is off in every namespace except on the ``eth0`` of nodes given :meth:`Range.enable_ipv6`
  (link-local and unique-local addresses only; router advertisements never install a default route:
  ``accept_ra_defrtr=0``);
* every process is started through :meth:`Range.popen` in its own session and ended by its PID
  (process group), then any process still inside one of our namespaces (``ip netns pids``) is ended
  by PID, then the namespaces are deleted.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX_ROOT = "mlr-"


def namespace_prefix(pid: int | None = None) -> str:
    """The namespace-name prefix of the recording process ``pid`` (default: this process)."""
    return f"{PREFIX_ROOT}{os.getpid() if pid is None else pid}-"


def list_namespaces(prefix: str = PREFIX_ROOT) -> list[str]:
    """Names of the existing network namespaces starting with ``prefix``."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip() and ln.split()[0].startswith(prefix)]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {r.stderr.strip()}")
    return r


def _pids_in(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


@dataclass
class Node:
    """One namespace attached to the range bridge."""

    tag: str
    ns: str
    ip: str
    mac: str


@dataclass
class Range:
    """A set of namespaces joined by one bridge namespace, plus the processes started in them.

    Use as a context manager; :meth:`close` (called on exit, whatever the cause) ends every process
    by PID and deletes every namespace.

    Parameters
    ----------
    subnet : ipaddress.IPv4Network
        The site subnet; every node address must lie in it.
    prefix : str
        Namespace-name prefix (default ``mlr-<pid>-``).
    """

    subnet: ipaddress.IPv4Network
    prefix: str = field(default_factory=namespace_prefix)
    namespaces: list[str] = field(default_factory=list)
    nodes: dict[str, Node] = field(default_factory=dict)
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: bool = False

    # ---- topology -------------------------------------------------------------------------
    @property
    def bridge_ns(self) -> str:
        """Name of the namespace that holds the bridge ``br0`` (and tcpdump)."""
        return f"{self.prefix}br"

    def _add_ns(self, tag: str) -> str:
        name = f"{self.prefix}{tag}"
        _ip("netns", "add", name)
        self.namespaces.append(name)
        for cmd in (["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
                    ["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]):
            subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, check=False)
        _ip("-n", name, "link", "set", "lo", "up")
        return name

    def create_bridge(self) -> None:
        """Create the bridge namespace and its bridge ``br0`` (no address: it only switches)."""
        ns = self._add_ns("br")
        # no IGMP/MLD snooping: multicast (mDNS, SSDP, IPv6 ND) is flooded like on a small unmanaged switch
        _ip("-n", ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0",
            "mcast_snooping", "0")
        _ip("-n", ns, "link", "set", "br0", "up")

    def add_node(self, tag: str, host: int, *, address: bool = True) -> Node:
        """Create namespace ``<prefix><tag>`` with ``eth0`` = host ``host`` of the subnet on the bridge.

        With ``address=False`` the interface comes up without an IPv4 address (a DHCP client then
        configures ``Node.ip`` itself).

        Raises
        ------
        ValueError
            When the address is outside the subnet or ``tag`` is too long for an interface name.
        """
        ip = self.subnet.network_address + host
        if ip not in self.subnet or ip in (self.subnet.network_address, self.subnet.broadcast_address):
            raise ValueError(f"host={host!r} gives {ip}, not a host address of {self.subnet}")
        port = f"p-{tag}"
        if len(port) > 15:
            raise ValueError(f"tag={tag!r} too long (bridge port name {port!r} > 15 characters)")
        ns = self._add_ns(tag)
        b = ip.packed
        mac = f"02:4d:4c:{b[1]:02x}:{b[2]:02x}:{b[3]:02x}"
        _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "link", "set", "eth0", "address", mac)
        if address:
            _ip("-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        node = Node(tag, ns, str(ip), mac)
        self.nodes[tag] = node
        return node

    def enable_ipv6(self, tag: str, *, router: bool = False) -> None:
        """Turn IPv6 on for ``eth0`` of node ``tag`` only: link-local address (EUI-64), DAD, MLD.

        A host (``router=False``) also sends router solicitations and takes SLAAC addresses from
        router advertisements, but never a default route (``accept_ra_defrtr=0``); a router node
        (the gateway) accepts no advertisements. Forwarding stays off everywhere.
        """
        ns = self.nodes[tag].ns
        ra = "0" if router else "1"
        settings = ["net.ipv6.conf.all.forwarding=0", "net.ipv6.conf.eth0.forwarding=0",
                    f"net.ipv6.conf.eth0.accept_ra={ra}", "net.ipv6.conf.eth0.accept_ra_defrtr=0",
                    "net.ipv6.conf.eth0.accept_ra_rtr_pref=0", f"net.ipv6.conf.eth0.autoconf={ra}",
                    "net.ipv6.conf.eth0.addr_gen_mode=0", "net.ipv6.conf.eth0.disable_ipv6=0"]
        r = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-qw", *settings], capture_output=True, text=True,
                           check=False)
        if r.returncode != 0:
            raise RuntimeError(f"enabling IPv6 on {ns}/eth0 failed: {r.stderr.strip()}")

    def check_isolation(self) -> None:
        """Assert that no namespace of the range can route out of the site.

        Checked in every namespace: no IPv4 default route and no IPv4 route outside the subnet, no
        IPv6 default route (``ip -6 route show default`` empty) and IPv6 forwarding off.

        Raises
        ------
        RuntimeError
            When a namespace has a default route, a route outside the subnet, or forwards IPv6.
        """
        for ns in list(self.namespaces):
            out = _ip("-n", ns, "-4", "route", "show").stdout
            for line in out.splitlines():
                dst = line.split()[0]
                if dst == "default" or (dst != str(self.subnet) and "/" in dst):
                    raise RuntimeError(f"namespace {ns} has route {line!r}; refusing to run")
            v6 = _ip("-n", ns, "-6", "route", "show", "default", check=False).stdout.strip()
            if v6:
                raise RuntimeError(f"namespace {ns} has IPv6 default route {v6!r}; refusing to run")
            fwd = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/sys/net/ipv6/conf/all/forwarding"],
                                 capture_output=True, text=True, check=False).stdout.strip()
            if fwd not in ("", "0"):
                raise RuntimeError(f"namespace {ns} forwards IPv6 (all.forwarding={fwd}); refusing to run")

    # ---- processes ------------------------------------------------------------------------
    def popen(self, ns: str, argv: list[str], *, log_path: Path | None = None, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``argv`` inside namespace ``ns`` in a new session; it is ended by :meth:`close`.

        Raises
        ------
        ValueError
            When ``ns`` is not a namespace of this range.
        """
        if ns not in self.namespaces:
            raise ValueError(f"ns={ns!r} is not a namespace of this range ({self.namespaces})")
        if log_path:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 (closed below)
        with self._lock:
            if self._closed:
                raise RuntimeError("range already torn down")
            p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, cwd=cwd,
                                 env={**os.environ, **(env or {})})
            self.procs.append((ns, p))
        if log_path:
            out.close()
        return p

    @property
    def pids(self) -> list[int]:
        """PIDs of every process started through :meth:`popen`."""
        return [p.pid for _, p in self.procs]

    @staticmethod
    def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 3.0) -> int | None:
        """Send ``sig`` to ``p``'s process group, wait ``wait_s``, then SIGKILL; return its exit code."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                return p.wait(wait_s)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return p.wait(5)
        else:
            # the leader is gone; its group may still hold children
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return p.returncode

    def close(self) -> None:
        """End every started process by PID, then anything left in our namespaces, then delete them."""
        with self._lock:
            self._closed = True
            procs = list(self.procs)
        for _, p in reversed(procs):
            self.stop(p, wait_s=2.0)
        for ns in reversed(self.namespaces):
            for attempt in range(3):
                left = _pids_in(ns)
                if not left:
                    break
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGTERM if attempt == 0 else signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.5)
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0 and "No such file" not in r.stderr:
                log.warning("could not delete namespace %s: %s", ns, r.stderr.strip())
        log.info("range torn down: %d processes ended, %d namespaces deleted", len(procs), len(self.namespaces))
        self.namespaces.clear()

    def __enter__(self) -> Range:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def cleanup_stale() -> list[str]:
    """Delete ``mlr-<pid>-*`` namespaces whose recording process no longer exists.

    Ends processes still inside those namespaces by PID first. Returns the deleted names.
    """
    gone = []
    for ns in list_namespaces():
        try:
            pid = int(ns.split("-")[1])
        except (IndexError, ValueError):
            continue
        if Path(f"/proc/{pid}").exists():
            continue
        for p in _pids_in(ns):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _ip("netns", "del", ns, check=False)
        gone.append(ns)
    return gone
