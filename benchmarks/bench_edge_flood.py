"""Edge flood benchmark (not a test): memory and timeliness of the edge daemon under a long spoofed flood → JSON.

Run: ``.venv/bin/python benchmarks/bench_edge_flood.py [--rate 2000] [--duration 600] [--core 0]
[--out benchmarks/results/edge_flood.json]``

1. **The flood**, generated reproducibly from the public spoofed SYN flood
   (``../shared/data/pcaps/stopddos/pkt.TCP.synflood.spoofed.pcap``: 37,841 SYNs from 37,623 spoofed sources to
   one server port over 23.7 s, in bursts of up to 24,000 packets/s): its packets, in order, are re-timed evenly
   at ``--rate`` packets/s and tiled for ``--duration`` seconds; copy *k* shifts every source port by *k* (TCP
   checksum updated incrementally, RFC 1624), so every copy's 5-tuples are new flows, as in a real spoofed
   flood. Cached under the system's temp folder by its parameters.
2. **The fog**: ``marlids fog serve`` (bundled policy) in its own process; its alerts wait in its outbox.
3. **The edge**: an :class:`edge.daemon.EdgeDaemon` in a child process pinned to one core (``taskset``), its
   source the live meter (:class:`edge.live.LiveWindows`: NFStream in pieces, the stitcher, window closing)
   reading the flood file as fast as it can — the deployment path of ``marlids edge run --iface``, with the
   capture's clock instead of the wall clock. The child records when each window slot closed.

Reported: the heavy libraries the edge process loaded (:data:`HEAVY_LIBRARIES`), the edge process tree's peak
memory (largest sum of its processes' PSS, sampled every 0.5 s, and the series), the flows the live meter shed
(forgotten early above ``edge.live.MAX_REMEMBERED_FLOWS``), late packets, the metering rate, and **lag behind real
time**: for each window slot, the wall seconds since start when it closed minus the capture seconds from the first
packet to the slot's end. A slot whose lag is ≤ the close delay (8 s) would have closed on time in a real-time feed
at this rate; the maximum over slots is reported.
Targets (issue "Edge speed"): peak ≤ 300 MiB; every slot on time; shedding reported, not silent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.paths import BUNDLED_POLICY, SHARED_PCAPS  # noqa: E402

SOURCE = SHARED_PCAPS / "stopddos" / "pkt.TCP.synflood.spoofed.pcap"
TARGET_PEAK_MIB = 300.0
#: Libraries the edge daemon should not hold (each tens of MiB); the child reports which it loaded by the end.
HEAVY_LIBRARIES = ("torch", "transformers", "sentence_transformers", "sklearn", "scipy", "pyarrow", "scapy", "pandas",
                   "nfstream")


def _csum_update(csum: int, old: int, new: int) -> int:
    """RFC 1624 eq. 3: the ones'-complement checksum after one 16-bit word changed from ``old`` to ``new``."""
    s = (~csum & 0xFFFF) + (~old & 0xFFFF) + new
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def make_flood(out: Path, rate: float, duration_s: float, source: Path = SOURCE) -> dict:
    """Write the flood capture (module docstring); returns its packets, duration and copies."""
    from scapy.utils import RawPcapReader, RawPcapWriter

    base = []
    reader = RawPcapReader(str(source))
    linktype = reader.linktype
    for data, meta in reader:
        base.append((meta.sec + meta.usec / 1e6, bytes(data)))
    reader.close()
    total = int(rate * duration_s)
    copies = -(-total // len(base))
    start = 1_764_000_000.0
    n = 0
    writer = RawPcapWriter(str(out), linktype=linktype, sync=False)
    writer.write_header(None)
    for k in range(copies):
        for _, frame in base:
            if n >= total:
                break
            t = start + n / rate  # evenly spaced: a sustained flood at exactly `rate`
            b = bytearray(frame)
            ihl = (b[14] & 0x0F) * 4
            if b[12:14] == b"\x08\x00" and b[23] == 6 and k:
                sport_at = 14 + ihl
                old = struct.unpack_from("!H", b, sport_at)[0]
                new = (old + k) % 65536
                struct.pack_into("!H", b, sport_at, new)
                csum_at = sport_at + 16
                struct.pack_into("!H", b, csum_at, _csum_update(struct.unpack_from("!H", b, csum_at)[0], old, new))
            sec = int(t)
            writer.write_packet(bytes(b), sec=sec, usec=int(round((t - sec) * 1e6)) % 1_000_000)
            n += 1
    writer.close()
    return {"packets": n, "duration_s": duration_s, "rate_pps": rate, "copies": copies}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree_pss(pid: int) -> dict[str, int]:
    """PSS (bytes; RSS where PSS is unreadable) of each process of the tree under ``pid``, by name."""
    import psutil

    out: dict[str, int] = {}
    try:
        root = psutil.Process(pid)
        for i, p in enumerate([root, *root.children(recursive=True)]):
            try:
                name = f"{i}:{p.name()}"
                try:
                    out[name] = p.memory_full_info().pss
                except (psutil.AccessDenied, AttributeError):
                    out[name] = p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


class _Timed:
    """Wraps the live source: records (wall seconds since start, slot end) as each slot closes."""

    def __init__(self, source) -> None:
        self.source, self.closed = source, []

    def __iter__(self):
        t0 = time.monotonic()
        for t_end, windows in self.source:
            self.closed.append((time.monotonic() - t0, t_end, len(windows)))
            yield t_end, windows

    def __getattr__(self, name):
        return getattr(self.source, name)


def child(pcap: Path, fog: str, out: Path, tmp: Path) -> None:
    """The edge under test (in its own pinned process), set up as ``marlids edge run`` sets itself up."""
    from edge.footprint import block_pyarrow, limit_malloc_arenas

    limit_malloc_arenas()
    block_pyarrow()
    from edge.daemon import EdgeConfig, EdgeDaemon
    from edge.live import DEFAULT_CLOSE_DELAY_S, LiveWindows
    from edge.transport.tls import resolve_security

    cfg = EdgeConfig(site_id="flood", fog=fog, pcap=pcap, fusion_dir=BUNDLED_POLICY,
                     buffer_path=tmp / "edge-buffer.sqlite", baseline_path=tmp / "edge-baseline.json",
                     tls=resolve_security(role="client", cert=None, key=None, ca=None, insecure=True))
    stop = threading.Event()
    source = _Timed(LiveWindows(pcap, "flood", cfg.window_s, cfg.devices, stop))
    t0 = time.monotonic()
    with EdgeDaemon(cfg, source=source) as edge:
        while not edge.stats().producer_done:
            time.sleep(0.5)
        edge.wait(timeout=120)
        st = edge.stats()
    out.write_text(json.dumps({
        "wall_s": time.monotonic() - t0, "closed": source.closed, "close_delay_s": DEFAULT_CLOSE_DELAY_S,
        "slots": st.slots, "observations": st.observations, "sent": st.sent, "buffered": st.buffered,
        "dropped": st.dropped, "shed_flows": st.shed_flows, "late_packets": st.late_packets,
        "heavy_libraries_loaded": sorted(m for m in HEAVY_LIBRARIES if sys.modules.get(m) is not None)}))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000.0, help="flood packets/s")
    ap.add_argument("--duration", type=float, default=600.0, help="flood seconds (capture clock)")
    ap.add_argument("--core", type=int, default=0, help="CPU core the edge is pinned to")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "edge_flood.json")
    ap.add_argument("--fog", metavar="HOST:PORT",
                    help="stream to this running fog (plaintext, a test bench) instead of starting one here: on a "
                         "device whose image has no torch (the edge image), run `marlids fog serve` elsewhere")
    ap.add_argument("--pcap", type=Path, help="replay this capture instead of the generated flood (a baseline)")
    ap.add_argument("--child", nargs=4, metavar=("PCAP", "FOG", "OUT", "TMP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        pcap, fog, out, tmp = args.child
        child(Path(pcap), fog, Path(out), Path(tmp))
        return {}
    if not SOURCE.is_file():
        sys.exit(f"{SOURCE}: not found (../shared/data beside the clone)")
    if args.pcap is not None:
        from edge.capture import scan_capture

        flood, scan = args.pcap, scan_capture(args.pcap)
        flood_meta = {"packets": scan.packets, "duration_s": round(scan.last_ts - scan.first_ts, 1),
                      "rate_pps": round(scan.packets / max(1e-9, scan.last_ts - scan.first_ts), 1), "copies": 1}
    else:
        cache = Path(tempfile.gettempdir()) / "marlids-bench-flood"
        cache.mkdir(exist_ok=True)
        flood = cache / f"synflood_{args.rate:g}pps_{args.duration:g}s.pcap"
        meta_path = flood.with_suffix(".json")
        if not (flood.is_file() and meta_path.is_file()):
            print(f"generating {flood} …", flush=True)
            meta_path.write_text(json.dumps(make_flood(flood.with_suffix(".tmp"), args.rate, args.duration)))
            flood.with_suffix(".tmp").replace(flood)
        flood_meta = json.loads(meta_path.read_text())
    tmp = Path(tempfile.mkdtemp(prefix="marlids-bench-flood-"))
    env = dict(os.environ, HF_HUB_OFFLINE="1", XDG_CACHE_HOME=str(tmp), MARLIDS_INGEST_KEY="k" * 32)
    fog = None
    if args.fog:
        fog_addr = args.fog
    else:
        port = _free_port()
        fog_addr = f"127.0.0.1:{port}"
        fog = subprocess.Popen([sys.executable, "-c", "from marlids.cli import main; main()", "fog", "serve",
                                "--listen", fog_addr, "--cloud", "http://127.0.0.1:9", "--sites", "flood",
                                "--insecure", "--outbox", str(tmp / "outbox.sqlite"), "--tick-timeout", "1"],
                               env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "fog.log").open("w"))
    samples: list[tuple[float, float]] = []
    try:
        time.sleep(3.0)
        if fog is not None and fog.poll() is not None:
            raise RuntimeError(f"the fog exited: {(tmp / 'fog.log').read_text()[-2000:]}")
        result_file = tmp / "edge.json"
        t0 = time.monotonic()
        edge = subprocess.Popen(["taskset", "-c", str(args.core), sys.executable, __file__, "--child", str(flood),
                                 fog_addr, str(result_file), str(tmp)],
                                env=env, stdout=subprocess.DEVNULL, stderr=(tmp / "edge.log").open("w"))
        peak_parts: dict[str, int] = {}
        while edge.poll() is None:
            parts = _tree_pss(edge.pid)
            samples.append((round(time.monotonic() - t0, 1), round(sum(parts.values()) / 2**20, 1)))
            if sum(parts.values()) > sum(peak_parts.values()):
                peak_parts = parts
            time.sleep(0.5)
        if edge.returncode != 0 or not result_file.is_file():
            raise RuntimeError(f"the edge failed ({edge.returncode}): {(tmp / 'edge.log').read_text()[-3000:]}")
        res = json.loads(result_file.read_text())
    finally:
        if fog is not None:
            fog.send_signal(signal.SIGTERM)
            try:
                fog.wait(30)
            except subprocess.TimeoutExpired:
                fog.kill()
    closed = res.pop("closed")
    first_end = closed[0][1] if closed else None
    window_s = 5.0
    # capture seconds from the first packet (≈ the first slot's start) to each slot's end
    lags = [wall - (t_end - (first_end - window_s)) for wall, t_end, _ in closed] if closed else []
    peak = max((m for _, m in samples), default=None)
    doc = {
        "benchmark": "edge daemon (live meter) under a spoofed SYN flood, one pinned core",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "flood": flood_meta | {"file": str(flood), "source": str(SOURCE.relative_to(REPO.parent))
                                                                 if args.pcap is None else str(args.pcap)},
        "edge": res | {"metering_pps": round(flood_meta["packets"] / res["wall_s"])},
        "slots_closed": len(closed),
        "lag_behind_real_time_s": {"max": round(max(lags), 2) if lags else None,
                                   "last": round(lags[-1], 2) if lags else None},
        "peak_pss_mib": peak,
        "peak_pss_mib_by_process": {k: round(v / 2**20, 1) for k, v in peak_parts.items()},
        "pss_mib_series": samples[:: max(1, len(samples) // 120)],
        "targets": {"peak_pss_mib_max": TARGET_PEAK_MIB, "lag_max_s": res["close_delay_s"]},
        "pass": {"memory": peak is not None and peak <= TARGET_PEAK_MIB,
                 "on_time": bool(lags) and max(lags) <= res["close_delay_s"]},
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k not in ("machine", "pss_mib_series")}, indent=1))
    return doc


if __name__ == "__main__":
    main()
