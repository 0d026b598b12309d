"""Live capture: the piece stitcher reproduces offline windows, and a real interface (a veth pair fed
with frames from a raw socket) yields windows as they close, through the edge daemon to the fog."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import psutil
import pytest

from edge.daemon import EdgeConfig, EdgeDaemon
from edge.features import FEATURE_NAMES
from edge.live import DEFAULT_CLOSE_DELAY_S, LiveWindows
from fog.server import FogConfig, FogServer
from tests.transport_support import CAPTURES, KEY, bundled_windows, make_policy, port_is_free, shared_embedder


@pytest.mark.parametrize("site", ["site_a", "site_b"])
def test_stitched_pieces_give_the_offline_windows(site):
    """Metered in pieces of ≤ 5 s and stitched, a capture gives exactly the windows of offline extraction."""
    stop = threading.Event()
    live = LiveWindows(CAPTURES / f"{site}.pcap", site, 5.0, "local", stop)
    slots = list(live)
    assert live.late_packets == 0
    got = pd.concat([w.to_frame() for _, w in slots if len(w)], ignore_index=True)
    want = bundled_windows(site)
    key = ["device_id", "t_start"]
    m = want.merge(got, on=key, how="outer", suffixes=("_o", "_l"), indicator=True)
    assert (m["_merge"] == "both").all(), m["_merge"].value_counts()
    for f in FEATURE_NAMES:
        if f != "new_peers":  # recomputed across slots by SiteFusion (tests/test_transport_edge.py)
            np.testing.assert_allclose(m[f + "_l"], m[f + "_o"], rtol=1e-5, atol=1e-4, err_msg=f)
    assert (m["proto_text_l"] == m["proto_text_o"]).all()
    assert [t for t, _ in slots] == sorted({t for t, _ in slots}) and np.all(np.diff([t for t, _ in slots]) == 5.0)


def _frames():
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import ARP, Ether

    a_mac, b_mac = "02:00:00:00:00:02", "02:00:00:00:00:03"
    req = bytes(Ether(src=a_mac, dst=b_mac) / IP(src="10.99.0.2", dst="10.99.0.3") /
                UDP(sport=40000, dport=5683) / (b"\x40\x01" + b"x" * 18))
    rep = bytes(Ether(src=b_mac, dst=a_mac) / IP(src="10.99.0.3", dst="10.99.0.2") /
                UDP(sport=5683, dport=40000) / (b"\x60\x45" + b"y" * 30))
    arp = bytes(Ether(src=a_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=a_mac, psrc="10.99.0.2",
                                                                  pdst="10.99.0.3"))
    return req, rep, arp


@pytest.fixture()
def veth():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a veth pair")
    a, b = f"mlt{os.getpid() % 10000}a", f"mlt{os.getpid() % 10000}b"
    r = subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], capture_output=True, text=True,
                       check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot create a veth pair here: {r.stderr.strip()}")
    try:
        for i in (a, b):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{i}.disable_ipv6=1"], capture_output=True,
                           check=False)  # only quiets the link; the test does not need it
            subprocess.run(["ip", "link", "set", i, "up"], check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True, check=False)


@pytest.mark.needs_root
@pytest.mark.timeout(120)
def test_live_interface_windows_close_while_traffic_flows(veth, tmp_path):
    cap_if, send_if = veth
    policy = make_policy(tmp_path / "policy", bundled_windows("site_a"))
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    fog = FogServer(FogConfig(listen="127.0.0.1:0", policy_dir=policy, cloud_url="http://127.0.0.1:9", ingest_key=KEY,
                              sites=("live",), outbox_path=tmp_path / "outbox.sqlite", tick_timeout_s=1.0,
                              drain_s=0)).start()
    edge = EdgeDaemon(EdgeConfig(site_id="live", fog=f"127.0.0.1:{fog.port}", iface=cap_if, fusion_dir=policy,
                                 buffer_path=tmp_path / "edge.sqlite", baseline_path=tmp_path / "edge.baseline.json"),
                      embedder=shared_embedder())
    stop = threading.Event()
    live = LiveWindows(cap_if, "live", 5.0, "local", stop)
    seen: list[tuple[float, float, pd.DataFrame]] = []

    def collect() -> None:
        for t_end, w in live:
            seen.append((time.time(), t_end, w))

    collector = threading.Thread(target=collect, daemon=True)
    try:
        edge.start()
        collector.start()
        time.sleep(2.0)  # both captures are open
        req, rep, arp = _frames()
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((send_if, 0))
            t_first = time.time()
            for i in range(240):  # 40 requests/s for 6 s, every other one answered, 3 ARP requests
                s.send(req)
                if i % 2 == 0:
                    s.send(rep)
                if i % 80 == 0:
                    s.send(arp)
                time.sleep(0.025)
            t_last = time.time()
        deadline = time.time() + 30
        while time.time() < deadline and not (seen and seen[-1][1] > t_last):
            time.sleep(0.1)
        while time.time() < deadline and edge.stats().observations < 2:
            time.sleep(0.1)
        time.sleep(1.5)  # acks and ticks
        fog_stats = fog.stats()
    finally:
        stop.set()
        collector.join(15)
        edge.stop()
        fog.stop()
    assert not collector.is_alive()
    got = pd.concat([w.to_frame() for _, _, w in seen if len(w)], ignore_index=True)

    a = got[got["device_id"] == "10.99.0.2"]
    b = got[got["device_id"] == "10.99.0.3"]
    assert a["out_pkts"].sum() == 240 + 3 and a["in_pkts"].sum() == 120 and a["arp_pkts"].sum() == 3
    assert b["in_pkts"].sum() == 240 and b["out_pkts"].sum() == 120
    # every request and reply is UDP, the 3 ARP requests are not (by count: a window that holds only a few
    # packets next to an ARP request has a UDP share below 0.9, depending on where the clock cut fell)
    assert round(float((a["udp_pkt_fraction"] * a["pkts"]).sum())) == 240 + 120 and len(a) >= 2
    assert live.late_packets == 0
    # windows closed while the traffic went on, each within the close delay (+ a second of polling)
    closed_at = {t_end: wall for wall, t_end, _ in seen}
    assert min(closed_at) < t_last, "a window closed before the traffic ended"
    assert all(closed_at[t] - t <= DEFAULT_CLOSE_DELAY_S + 1.5 for t in a["t_end"])
    assert a["t_start"].min() <= t_first and a["t_end"].max() >= t_last
    # the edge daemon streamed the same windows live to the fog
    # (a new site: every window of these few seconds falls in its grace period, so none is decided)
    assert fog_stats["grace_observations"] >= len(a) + len(b) and fog_stats["decisions"] == 0
    assert fog_stats["sites"] == ["live"] and fog_stats["site_states"]["live"]["state"] == "learning"
    assert port_is_free(fog.port)
    left = {p.pid for p in psutil.Process().children(recursive=True)} - children_before
    assert not left, f"child processes left behind: {left}"


def test_stitcher_memory_is_bounded_under_a_spoofed_flood():
    """Every packet a new flow (spoofed sources): the stitcher keeps at most ``max_remembered`` flows past their
    windows, forgets the oldest early and counts them; no packet of an open window is lost."""
    from edge import flows as F
    from edge.live import Stitcher

    def piece(i: int, t_ms: float) -> tuple:
        s = [0.0] * F.SLICE_LEN
        s[F.S2D_PKTS], s[F.S2D_BYTES] = 1, 60
        s[F.FIRST_MS] = s[F.LAST_MS] = t_ms
        s[F.SIZE_MIN] = s[F.SIZE_MAX] = 60
        s[F.IAT_MIN], s[F.IAT_MAX] = float("inf"), 0.0
        return (f"203.0.{i // 250 % 250}.{i % 250}", 1024 + i % 60000, "10.10.10.10", 25565, 6, 0, "aa:aa:aa:aa:aa:aa",
                "bb:bb:bb:bb:bb:bb", t_ms, t_ms, 1, "Unknown", True, 0, True, False, False,
                {int(t_ms // 5000): s})

    st = Stitcher(5000, max_remembered=500)
    packets, seen, peak = 0, 0, 0
    for k in range(40):  # 40 windows of 5 s, 200 new flows each
        for j in range(200):
            st.add(piece(k * 200 + j, k * 5000 + j * 20.0))
            packets += 1
        seen += sum(v.bidirectional_packets for v in st.take(k))
        peak = max(peak, len(st.flows))
    assert seen == packets and st.late_packets == 0
    assert peak <= 500 + 200 and len(st.flows) <= 500
    assert st.forgotten_flows == 40 * 200 - len(st.flows)
    with pytest.raises(ValueError, match="max_remembered"):
        Stitcher(5000, max_remembered=0)


def test_the_metering_child_runs_pandas_without_pyarrow(tmp_path):
    """edge/meter_child.py: a spawned metering child (named as LiveWindows names it) defers pandas (NFStream's
    import does not load it) and, should it be used, runs it without pyarrow (35 MiB less there and in
    NFStream's meter); any other process keeps both."""
    import multiprocessing as mp
    import runpy
    import sys

    from edge import meter_child

    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\nimport edge.meter_child as m\nimport pandas\nimport nfstream\n"
        "loaded = 'pandas.core.frame' in sys.modules\n"  # deferred: nfstream's import alone does not load it
        f"open({str(tmp_path / 'out.txt')!r}, 'w').write(repr((m.PYARROW_BLOCKED, m.PANDAS_DEFERRED, loaded, "
        "sys.modules.get('pyarrow'), pandas.DataFrame({'a': ['x']}).shape)))\n")
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=runpy.run_path, args=(str(probe),), name=f"{meter_child.PROCESS_NAME_PREFIX}probe")
    p.start()
    p.join(60)
    assert p.exitcode == 0
    # pyarrow blocked, pandas deferred and not loaded by NFStream's import; used, it loads (without pyarrow)
    assert (tmp_path / "out.txt").read_text() == repr((True, True, False, None, (1, 1)))
    assert not meter_child.PYARROW_BLOCKED and sys.modules.get("pyarrow") is not None  # this process: untouched
    assert not meter_child.PANDAS_DEFERRED


def test_footprint_settings(tmp_path):
    """edge/footprint.py: pyarrow is blocked only in a process that has not imported pandas; the arena cap
    is refused below one arena and applied on glibc."""
    import platform
    import sys

    from edge.footprint import block_pyarrow, limit_malloc_arenas

    assert block_pyarrow() is False and sys.modules.get("pyarrow") is not None  # this process imported pandas
    with pytest.raises(ValueError, match="arenas"):
        limit_malloc_arenas(0)
    if sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(8) is True  # glibc's own default for a process on this many cores or more


def _small_capture(tmp_path):
    from tests.malformed_captures import pcap_bytes, read_records

    records = read_records(CAPTURES / "site_a.pcap", 4000)
    assert records[-1][0] - records[0][0] >= 10  # several window slots
    cap = tmp_path / "small.pcap"
    cap.write_bytes(pcap_bytes(records)[0])
    return cap


def _run_script(tmp_path, script: str) -> dict:
    import json
    import sys

    path = tmp_path / "probe.py"
    path.write_text(script)
    r = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       check=False, env={**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(CAPTURES.parents[1])})
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_live_daemon_process_never_loads_pandas_or_nfstream(tmp_path):
    """The live path of the edge daemon's process — slots closed by LiveWindows (NFStream runs in its metering
    child), the site's fusion through the grace period into detection with the ONNX scorer — loads neither
    pandas nor NFStream (about 40 MiB), nor scapy, torch, scikit-learn or scipy."""
    cap = _small_capture(tmp_path)
    models = CAPTURES.parents[1] / "models" / "defender"
    out = _run_script(tmp_path, f"""import json, sys, threading
import numpy as np
from edge.footprint import block_pyarrow
block_pyarrow()
from edge.live import LiveWindows
from edge.observation import FusionPipeline
from edge.online import SiteFusion
if __name__ == "__main__":
    fusion = SiteFusion(FusionPipeline.load({str(models)!r}, backend="onnx"), grace_s=10.0)
    windows = detected = 0
    for _, w in LiveWindows({str(cap)!r}, "s", 5.0, "local", threading.Event()):
        if len(w):
            b = fusion.transform(w, np.zeros((len(w), 384), np.float32))
            windows += len(w)
            detected += int((~np.asarray(b.learning)).sum())
    heavy = {{"pandas", "nfstream", "scapy", "torch", "sklearn", "scipy", "pyarrow"}}
    print(json.dumps({{"windows": windows, "detected": detected,
                      "loaded": sorted(m for m in heavy if sys.modules.get(m) is not None)}}))
""")
    assert out["windows"] > 0 and out["detected"] > 0, out  # past the grace period: the detection path ran
    assert out["loaded"] == [], out


def test_window_columns_are_the_window_table():
    """window_columns (the live daemon's table, no pandas) and windows_frame (its DataFrame) agree, with rows
    in (site, device, t_start) order and new_peers counted per device."""
    from edge.features import FEATURE_NAMES
    from edge.windows import WINDOW_COLUMNS, window_columns, windows_frame

    def part(dev, t, peers):
        cols = {"site_id": ["s"] * len(dev), "device_id": dev, "t_start": np.asarray(t, float),
                "t_end": np.asarray(t, float) + 5, "capture": ["c"] * len(dev), "proto_text": ["x"] * len(dev),
                "peers": peers, "top_peers": [[]] * len(dev)}
        return cols | {f: np.arange(len(dev), dtype=np.float32) for f in FEATURE_NAMES}

    parts = [part(["b", "a"], [5, 5], [["p", "q"], ["p"]]), part(["a", "b"], [0, 10], [["p", "r"], ["q", "z"]])]
    w = window_columns(parts)
    assert len(w) == 4 and w.columns == list(WINDOW_COLUMNS)
    assert list(zip(w["device_id"], w["t_start"])) == [("a", 0), ("a", 5), ("b", 5), ("b", 10)]
    assert w["new_peers"].tolist() == [2, 0, 2, 1] and w["peers"][0] == ["p", "r"]
    pd.testing.assert_frame_equal(w.to_frame(), windows_frame(parts))
    assert len(w.take(w["t_start"] >= 5)) == 3 and len(window_columns([])) == 0
    with pytest.raises(ValueError, match="different lengths"):
        type(w)({"a": np.zeros(2), "b": np.zeros(3)})


def test_edge_run_daemon_runs_pandas_without_pyarrow(tmp_path):
    """``marlids edge run`` without ``--windows-out`` (a capture replayed into the disk buffer, no fog listening):
    the daemon process runs pandas without pyarrow (edge/footprint.py), and its windows still reach the
    buffer."""
    cap = _small_capture(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["marlids", "edge", "run", "--pcap", str(cap), "--site", "s", "--fog", f"127.0.0.1:{port}", "--insecure",
            "--fast", "--drain-timeout", "1", "--buffer", str(tmp_path / "b.sqlite"), "--baseline",
            str(tmp_path / "baseline.json")]
    out = _run_script(tmp_path, "import json, sys\nfrom marlids.cli import main\n"
                                f"sys.argv = {argv!r}\n"
                                "if __name__ == '__main__':\n"
                                "    try:\n        main()\n    except SystemExit as exc:\n        assert not exc.code\n"
                                "    print(json.dumps({'pandas': 'pandas' in sys.modules,"
                                " 'pyarrow': sys.modules.get('pyarrow') is not None}))\n")
    assert out == {"pandas": True, "pyarrow": False}
    import sqlite3

    with sqlite3.connect(tmp_path / "b.sqlite") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert sum(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables) > 0


def test_live_windows_read_a_files_arp_frames_outside_the_process(tmp_path):
    """LiveWindows over a capture file reads its ARP and other non-IP frames in a short-lived process
    (``_start_l2``), so the capture reader (scapy, ~20 MiB of tables) never stays in the long-running one; the
    windows are those of the file."""
    cap = _small_capture(tmp_path)
    out = _run_script(tmp_path, f"""import json, sys, threading
from edge.live import LiveWindows
if __name__ == "__main__":
    src = LiveWindows({str(cap)!r}, "s", 5.0, "local", threading.Event())
    n = sum(len(w) for _, w in src)
    print(json.dumps({{"windows": n, "scapy": any(m.split(".")[0] == "scapy" for m in sys.modules)}}))
""")
    assert out["windows"] > 0 and out["scapy"] is False
