"""Cloud ingest benchmark (not a test): alerts/s, latency percentiles and lost alerts → JSON.

Run: ``.venv/bin/python benchmarks/bench_cloud.py [--out benchmarks/results/cloud.json]``

Starts ``marlids cloud serve`` (uvicorn, one process, SQLite in WAL mode with ``synchronous=FULL``,
explanations on) on a fresh database in a temporary folder, then drives ``POST /api/v1/alerts`` with
**wrk** (Debian package ``wrk``; a C load generator, so the client costs little CPU on a small machine)
and a Lua script (``benchmarks/cloud_ingest.lua``) that sends unique alerts in the fog's payload shape
and records the ``alert_id`` of every acknowledged answer.

Phases
------
1. **warm-up** (discarded; the explainer then drains its queue before the next phase).
2. **steady**: ``--connections`` (16) keep-alive connections for ``--duration`` s, closed loop. Target:
   ≥ 1,000 alerts/s with p99 ≤ 50 ms.
3. **sustained** (``--sustained-rate``, default 1,000 alerts/s, for ``--sustained-duration`` 60 s): wrk's
   connections pace themselves (``delay()`` in the Lua script) to an open rate; the explanation queue depth is
   sampled every second from ``/metrics``. Target: the backlog stays bounded — the explainer keeps up with
   the rate, so the backlog at the end is below one second of alerts and does not grow over the run.
4. **burst 10×**: ten times the connections at once for ``--burst-duration`` s. Target: zero lost
   alerts — no error or non-2xx answer, and every acknowledged alert is in the database afterwards
   (read through a separate SQLite connection once the server has stopped).

wrk measures latency per request in a closed loop (a slow answer delays the next request of that
connection), so the percentiles are service latencies at the achieved rate. Explanations are written
by the built-in explainer in the same process during the run (as in production); the backlog left
at the end is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUA = Path(__file__).resolve().parent / "cloud_ingest.lua"
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"marlids cloud serve exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"marlids cloud serve did not answer {url}/healthz within {timeout} s")


def explainer_backlog(url: str, key: str) -> float | None:
    """Alerts waiting for an explanation, from the server's ``/metrics`` (None when not reported)."""
    with urllib.request.urlopen(urllib.request.Request(
            url + "/metrics", headers={"Authorization": f"Bearer {key}"}), timeout=10) as r:
        metrics = r.read().decode()
    return next((float(line.split()[-1]) for line in metrics.splitlines()
                 if line.startswith('marlids_cloud_queue_depth{queue="explainer"}')), None)


def wait_drained(url: str, key: str, timeout_s: float = 60.0) -> float:
    """Wait until the explanation queue is empty; returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s and (explainer_backlog(url, key) or 0) > 0:
        time.sleep(0.25)
    return time.monotonic() - t0


def run_sustained(url: str, key: str, *, rate: float, duration_s: float, connections: int, out: Path,
                  server_pid: int) -> dict:
    """wrk paced to about ``rate`` alerts/s; the explanation backlog sampled every second meanwhile."""
    import threading

    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.wait(1.0):
            try:
                samples.append((round(time.monotonic() - t0, 1), explainer_backlog(url, key) or 0.0))
            except OSError:
                pass

    sampler = threading.Thread(target=sample, daemon=True)
    # pace: each connection waits `delay` after an answer, so rate ≈ C / (delay + latency); a 5 s probe
    # measures the latency at this load and the delay is set to reach `rate`
    delay_ms = connections * 1000.0 / rate
    os.environ["MARLIDS_BENCH_DELAY_MS"] = str(max(1, round(delay_ms)))
    probe = run_wrk(url, key, connections=connections, duration_s=5, threads=1, out=out.with_suffix(".probe.json"))
    achieved = (probe["status"].get("201", 0) + probe["status"].get("200", 0)) / (probe["duration_us"] / 1e6)
    latency_ms = max(0.0, connections * 1000.0 / max(achieved, 1.0) - delay_ms)
    delay_ms = max(1.0, connections * 1000.0 / rate - latency_ms)
    os.environ["MARLIDS_BENCH_DELAY_MS"] = str(round(delay_ms))
    wait_drained(url, key)
    sampler.start()
    try:
        summary = run_wrk(url, key, connections=connections, duration_s=duration_s, threads=1, out=out,
                          server_pid=server_pid)
    finally:
        stop.set()
        sampler.join()
        os.environ.pop("MARLIDS_BENCH_DELAY_MS", None)
    res = phase(summary, "sustained", connections)
    backlog = [b for _, b in samples]
    half = len(backlog) // 2
    res.update({
        "target_rate": rate, "pacing_delay_ms": round(delay_ms), "probe_alerts_per_s": round(achieved, 1),
        "explainer_backlog_samples": samples,
        "explainer_backlog_end": backlog[-1] if backlog else None,
        "explainer_backlog_max": max(backlog) if backlog else None,
        # growth over the second half of the run, alerts per second: ~0 when the explainer keeps up
        "explainer_backlog_growth_per_s": (round((backlog[-1] - backlog[half]) / max(1, len(backlog) - 1 - half), 1)
                                           if len(backlog) > 2 else None),
    })
    return res


def run_wrk(url: str, key: str, *, connections: int, duration_s: float, threads: int, out: Path,
            server_pid: int | None = None) -> dict:
    """One wrk run; returns its summary (see cloud_ingest.lua) with the acknowledged ids and, given the
    server's pid, the server's CPU seconds (user + system, all threads) during the run."""
    import psutil

    proc_ps = psutil.Process(server_pid) if server_pid else None
    cpu0 = sum(proc_ps.cpu_times()[:2]) if proc_ps else 0.0
    load0 = os.getloadavg()[0]
    env = dict(os.environ, MARLIDS_BENCH_KEY=key, MARLIDS_BENCH_RUN=secrets.token_hex(4), MARLIDS_BENCH_OUT=str(out))
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "10s", "-s", str(LUA), url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    summary = json.loads(out.read_text())
    summary["server_cpu_s"] = (sum(proc_ps.cpu_times()[:2]) - cpu0) if proc_ps else None
    summary["loadavg_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return summary


def phase(summary: dict, name: str, connections: int) -> dict:
    dur = summary["duration_us"] / 1e6
    lat = {k: round(v / 1000, 2) for k, v in summary["latency_us"].items()}
    ok = summary["status"].get("201", 0) + summary["status"].get("200", 0)
    cpu = summary.get("server_cpu_s")
    return {"phase": name, "connections": connections, "duration_s": round(dur, 2),
            "requests_completed": summary["requests"], "acknowledged": ok,
            "alerts_per_s": round(ok / dur, 1), "latency_ms": lat, "status": summary["status"],
            "errors": summary["errors"],
            "server_cpu_ms_per_alert": round(cpu * 1000 / ok, 3) if cpu is not None and ok else None,
            "server_cpu_utilisation": round(cpu / dur, 2) if cpu is not None else None,
            "machine_loadavg_1min_before_after": summary["loadavg_1min"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cloud.json")
    parser.add_argument("--connections", type=int, default=16, help="steady-phase connections")
    parser.add_argument("--duration", type=int, default=15, help="steady-phase seconds")
    parser.add_argument("--burst-duration", type=int, default=6, help="burst-phase seconds")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--sustained-rate", type=float, default=1000.0,
                        help="alerts/s of the paced phase (0: skip it)")
    parser.add_argument("--sustained-duration", type=int, default=60, help="paced-phase seconds")
    parser.add_argument("--sustained-connections", type=int, default=64, help="paced-phase connections")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install the Debian package 'wrk' (bash scripts/setup.sh does)")

    tmp = Path(tempfile.mkdtemp(prefix="marlids-bench-cloud-"))
    db, keys_file, port = tmp / "cloud.db", tmp / "keys.json", free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", "from marlids.cli import main; main()", "cloud", "serve", "--db", str(db), "--port", str(port), "--bootstrap-keys", str(keys_file),
           "--log-level", "warning", *os.environ.get("MARLIDS_BENCH_SERVE_ARGS", "").split()]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_MODEL", "DATABASE_URL")}
    server = subprocess.Popen(cmd, env=env, cwd=tmp)
    results: dict = {}
    try:
        wait_healthy(url, server)
        key = json.loads(keys_file.read_text())["ingest"]
        run_wrk(url, key, connections=args.connections, duration_s=2, threads=args.threads, out=tmp / "warm.json")
        drained_s = wait_drained(url, key)
        sustained = None
        if args.sustained_rate > 0:
            sustained = run_sustained(url, key, rate=args.sustained_rate, duration_s=args.sustained_duration,
                                      connections=args.sustained_connections, out=tmp / "sustained.json",
                                      server_pid=server.pid)
            sustained["drain_s_after"] = round(wait_drained(url, key, timeout_s=120.0), 1)
        steady = run_wrk(url, key, connections=args.connections, duration_s=args.duration, threads=args.threads,
                         out=tmp / "steady.json", server_pid=server.pid)
        burst_c = 10 * args.connections
        burst = run_wrk(url, key, connections=burst_c, duration_s=args.burst_duration,
                        threads=max(args.threads, 2), out=tmp / "burst.json", server_pid=server.pid)
        time.sleep(0.5)
        backlog = explainer_backlog(url, key)
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    con = sqlite3.connect(db)
    stored = {r[0] for r in con.execute("SELECT alert_id FROM alerts")}
    explained = con.execute("SELECT count(*) FROM explanations").fetchone()[0]
    con.close()
    phases = [phase(steady, "steady", args.connections), phase(burst, "burst_10x", burst_c)]
    for ph, summ in zip(phases, (steady, burst), strict=True):
        acked = summ["acked_ids"]
        missing = [a for a in acked if a not in stored]
        rejected = sum(n for code, n in summ["status"].items() if code not in ("200", "201"))
        ph["lost"] = len(missing) + rejected + sum(summ["errors"].values())
        ph["acknowledged_not_in_db"] = len(missing)
    st, bu = phases
    if sustained is not None:
        acked = json.loads((tmp / "sustained.json").read_text())["acked_ids"]
        sustained["lost"] = sum(1 for a in acked if a not in stored) + sum(
            n for code, n in sustained["status"].items() if code not in ("200", "201")) + sum(sustained["errors"].values())
        sustained["warmup_drain_s_before"] = round(drained_s, 1)
        phases.insert(0, sustained)
    results = {
        "benchmark": "cloud ingest: POST /api/v1/alerts (wrk, SQLite WAL synchronous=FULL, group commits)",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "phases": phases,
        "stored_alerts": len(stored), "explanations_written": explained, "explainer_backlog_at_end": backlog,
        "targets": {"alerts_per_s": TARGET_RATE, "p99_ms": TARGET_P99_MS, "lost_at_10x_burst": 0},
        "pass": {"rate": st["alerts_per_s"] >= TARGET_RATE, "p99": st["latency_ms"]["p99"] <= TARGET_P99_MS,
                 "explainer_keeps_up": (None if sustained is None else
                                        sustained["explainer_backlog_end"] is not None
                                        and sustained["explainer_backlog_end"] <= sustained["alerts_per_s"]
                                        and (sustained["explainer_backlog_growth_per_s"] or 0) <= 5.0),
                 "zero_lost_burst": bu["lost"] == 0 and st["lost"] == 0},
    }
    shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "machine"}, indent=1))
    return results


if __name__ == "__main__":
    main()
