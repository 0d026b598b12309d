"""``marlids demo``: the whole product on one machine, on the bundled real range captures.

It starts, as separate processes exactly as a deployment runs them:

1. the cloud analyst API (``marlids cloud serve``, SQLite, built-in explainer, fresh API keys),
2. the fog coordinator (``marlids fog serve``, the bundled defender policy ``models/defender``),
3. one edge daemon per site (``marlids edge run --pcap <site>.pcap --fast``),

waits until every window of every site has been decided and every alert stored and explained, then
prints the incidents, per-site detection metrics against each capture's ground truth (``<site>.groundtruth.csv``;
the windows are those the edges metered, written with ``--windows-out`` and labelled by
:func:`training.range.label.label_windows`: each capture is metered once) and the dashboard URL. Each site first
learns its own baseline from its first ``grace_s`` seconds of traffic (the edge's grace period, during
which nothing is alerted); those windows are reported per site and left out of the metrics. The services stop
at the end (``keep_running`` leaves them up until Ctrl-C). All state lives under the output folder,
which is cleared at the start so a rerun never sees an earlier run's buffers or positions.

Keys reach the children through their environment (``MARLIDS_INGEST_KEY``), never their command line,
which any local user can read (``ps``). Each child runs in its own process group; SIGINT (Ctrl-C) or
SIGTERM on the demo stops every group — the children and whatever they started — before it exits
(:func:`stop_on_signals`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Seconds each stage may take before the demo gives up with a clear error.
STARTUP_TIMEOUT_S = 120.0
EDGE_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """One child process with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 8) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the child's process group (the child and what it started, e.g. the cloud's explanation
        processes), then SIGKILL to the group after ``timeout`` seconds. The group is the child's own
        (``start_new_session``), so nothing else is signalled. Idempotent."""
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(5)
        self._signal_group(signal.SIGKILL)  # a descendant that outlived its parent

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # pgid == pid: the child leads its own session
        except (ProcessLookupError, PermissionError):
            pass


class DemoStopped(KeyboardInterrupt):
    """The demo received SIGINT or SIGTERM (``signum``); its services are being stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def stop_all(services: list[Service]) -> None:
    """Stop ``services`` in reverse start order; SIGINT/SIGTERM wait until every one is stopped (a second
    Ctrl-C must not cut the clean-up short and leave a child behind)."""
    blocked = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        for s in reversed(services):
            s.stop()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`DemoStopped` in the main thread while the block runs, so the
    ``finally`` clauses that stop the services run (Python's default SIGTERM ends the process at once and
    would leave the children running). The previous handlers come back afterwards."""
    def raise_stopped(signum, _frame):
        raise DemoStopped(signum)

    previous = {sig: signal.signal(sig, raise_stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class DemoResult:
    """What the demo measured: the alerts and incidents stored in the cloud and per-site metrics."""

    alerts: list[dict]
    metrics: dict[str, dict]
    dashboard_url: str
    analyst_key: str
    seconds: float
    services: list[Service] = field(default_factory=list)
    incidents: list[dict] = field(default_factory=list)


def _spawn(name: str, args: list[str], out: Path, env: dict) -> Service:
    """Start ``marlids <args>`` in its own session (process group), output to ``out/<name>.log``."""
    log = out / f"{name}.log"
    fh = log.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "marlids", *args], stdout=fh, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    return Service(name, proc, log)


def _wait(predicate, timeout: float, what: str, services: list[Service], poll: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for s in services:
            if not s.alive() and s.proc.returncode not in (0, None):
                raise RuntimeError(f"{s.name} exited with code {s.proc.returncode} while waiting for {what}; "
                                   f"last lines of {s.log}:\n{s.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def fetch_alerts(client, key: str, path: str = "/api/v1/alerts") -> list[dict]:
    """Every alert in the cloud (all pages of ``path``; ``/api/v1/incidents`` for the incidents), newest first."""
    items, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
        r.raise_for_status()
        page = r.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def site_metrics(labeled, alerted_ids: set[str], grace_ids: set[str] = frozenset()) -> dict:
    """Per-window precision, recall, F1, FPR, MCC of "an alert was raised for this window" vs its label,
    on the windows after the site's grace period.

    Parameters
    ----------
    labeled : DataFrame
        Labeled windows of one site (``site_id``, ``device_id``, ``t_start``, ``label``).
    alerted_ids : set of str
        ``alert_id`` of every alert stored for the site (:func:`fog.alerts.alert_id`).
    grace_ids : set of str
        ``alert_id`` keys of the windows that fell in the grace period (never decided; left out).
    """
    from fog.alerts import alert_id
    from training.evaluate import window_metrics

    keys = [alert_id(s, d, t) for s, d, t in zip(labeled["site_id"], labeled["device_id"], labeled["t_start"])]
    scored = np.array([k not in grace_ids for k in keys], dtype=bool)
    y = labeled["label"].to_numpy().astype(bool)[scored]
    pred = np.array([k in alerted_ids for k in keys], dtype=bool)[scored]
    m = window_metrics(y, pred)
    return {"windows": int(len(y)), "malicious": int(y.sum()), "grace_windows": int((~scored).sum()), **m,
            "unmatched_alerts": len(alerted_ids) - m["tp"] - m["fp"]}


def run_demo(captures: list[Path], policy: Path, out: Path, *, console, keep_running: bool = False,
             tick_timeout_s: float = 0.5, grace_s: float | None = None) -> DemoResult:
    """Run cloud + fog + one edge per capture; return the stored alerts and per-site metrics.

    Parameters
    ----------
    captures : list of Path
        ``<site>.pcap`` files, each with ``<site>.groundtruth.csv`` beside it (the site id is the stem).
    policy : Path
        Exported defender policy folder (``actor.pt``, ``fusion.json``, ``scorer/``).
    out : Path
        Working folder (cleared of earlier demo state): logs, SQLite database, keys, buffers, outbox.
    console : rich.console.Console
        Where progress goes.
    tick_timeout_s : float, default 0.5
        The fog's tick deadline (``fog serve --tick-timeout``). The bundled captures were recorded at
        different times, so a slot of one site never sees the other site's watermark and closes at the
        deadline; each edge's replay waits for the acknowledgement of its previous slots
        (:data:`edge.daemon.REPLAY_ACK_WAIT_S`), so the deadline paces the replay (a second per slot would
        add minutes).
    grace_s : float, optional
        Grace period of every site's baseline (default: the policy's, 60 s).

    Raises
    ------
    FileNotFoundError
        If a capture, its ground truth or the policy is missing.
    RuntimeError
        If a service fails to start or a stage times out (the message holds the service's last log lines).
    """
    import httpx
    import pandas as pd
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from training.range.groundtruth import read_ground_truth
    from training.range.label import label_windows

    t0 = time.monotonic()
    if not (policy / "actor.pt").is_file():
        raise FileNotFoundError(f"{policy}: no exported defender policy (actor.pt); see models/README.md")
    sites = {}
    for pcap in captures:
        gt = pcap.with_name(pcap.name.split(".")[0] + ".groundtruth.csv")
        if not gt.is_file():
            raise FileNotFoundError(f"{gt}: ground truth of {pcap.name} missing (needed for the metrics)")
        sites[pcap.name.split(".")[0]] = (pcap, gt)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ["cloud.db", "cloud.db-wal", "cloud.db-shm", "keys.json", "outbox.sqlite", "decisions.jsonl",
                  *(f"buffer_{s}.sqlite" for s in sites), *(f"baseline_{s}.json" for s in sites),
                  *(f"windows_{s}.parquet" for s in sites)]:
        (out / stale).unlink(missing_ok=True)

    env = {k: v for k, v in os.environ.items() if k not in ("MARLIDS_INGEST_KEY", "MARLIDS_ANALYST_KEY")}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cloud_port, fog_port = free_port(), free_port()
    base = f"http://127.0.0.1:{cloud_port}"
    services: list[Service] = []
    stopped = False
    try:
        with console.status("starting the cloud API (SQLite, built-in explainer) …"):
            services.append(_spawn("cloud", ["cloud", "serve", "--db", str(out / "cloud.db"), "--port", str(cloud_port),
                                             "--bootstrap-keys", str(out / "keys.json"), "--log-level", "warning"],
                                   out, env))
            client = httpx.Client(base_url=base, timeout=10.0)

            def healthy():
                try:
                    return client.get("/healthz").status_code == 200 and (out / "keys.json").is_file()
                except httpx.HTTPError:
                    return False
            _wait(healthy, STARTUP_TIMEOUT_S, "the cloud API", services)
            keys = json.loads((out / "keys.json").read_text())
        console.print(f"[green]✓[/] cloud API on {base}")

        with console.status("starting the fog coordinator …"):
            fog_env = {**env, "MARLIDS_INGEST_KEY": keys["ingest"]}  # not on the command line: ps shows argv
            services.append(_spawn("fog", ["fog", "serve", "--listen", f"127.0.0.1:{fog_port}", "--policy", str(policy),
                                           "--cloud", base, "--sites", ",".join(sites),
                                           "--tick-timeout", str(tick_timeout_s), "--outbox", str(out / "outbox.sqlite"),
                                           "--decisions", str(out / "decisions.jsonl"), "--insecure"], out, fog_env))
            _wait(lambda: "listening on port" in services[-1].log.read_text(errors="replace"),
                  STARTUP_TIMEOUT_S, "the fog coordinator", services)
        console.print(f"[green]✓[/] fog coordinator on 127.0.0.1:{fog_port} (policy {policy})")

        edges = []
        for site, (pcap, _) in sites.items():
            edges.append(_spawn(f"edge_{site}", ["edge", "run", "--pcap", str(pcap), "--site", site, "--fast",
                                                 "--fog", f"127.0.0.1:{fog_port}", "--fusion", str(policy),
                                                 "--buffer", str(out / f"buffer_{site}.sqlite"),
                                                 "--baseline", str(out / f"baseline_{site}.json"), "--reset-baseline",
                                                 "--windows-out", str(out / f"windows_{site}.parquet"),
                                                 *(["--grace", str(grace_s)] if grace_s is not None else []),
                                                 "--insecure"], out, env))
        services += edges
        console.print(f"[green]✓[/] {len(edges)} edge daemons replaying {', '.join(p.name for p, _ in sites.values())}")

        # How many windows there are is known once the edges stop and have written them (--windows-out); until
        # then the bar counts the fog's decisions without a total.
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as progress:
            task = progress.add_task("windows decided by the fog", total=None)

            def decided() -> int:
                try:
                    with (out / "decisions.jsonl").open() as fh:
                        return sum(1 for _ in fh)
                except OSError:
                    return 0

            def edges_done():
                progress.update(task, completed=decided())
                return all(not e.alive() for e in edges)
            _wait(edges_done, EDGE_TIMEOUT_S, "the edge daemons", services, poll=0.5)
            for e in edges:
                if e.proc.returncode != 0:
                    raise RuntimeError(f"{e.name} exited with code {e.proc.returncode}; last lines of {e.log}:\n{e.tail()}")
            # label the windows the edges metered (their --windows-out files), against each capture's ground truth
            labeled = {site: label_windows(pd.read_parquet(out / f"windows_{site}.parquet"), read_ground_truth(gt),
                                           site=site) for site, (_, gt) in sites.items()}
            total = sum(len(f) for f in labeled.values())
            progress.update(task, total=total, completed=min(decided(), total))
            # The edges have delivered everything (they exit after the fog acknowledged their last message,
            # which it does only once the alerts are in its outbox); now the outbox drains into the cloud.
            task2 = progress.add_task("alerts stored and explained", total=None)

            def settled():
                progress.update(task, completed=min(decided(), total))
                alerts = fetch_alerts(client, keys["analyst"])
                progress.update(task2, completed=len(alerts))
                stats = client.get("/metrics", headers={"Authorization": f"Bearer {keys['analyst']}"}).text
                outbox_empty = _outbox_pending(out / "outbox.sqlite") == 0
                done = outbox_empty and all(a["explanation_status"] == "ready" for a in alerts)
                return (alerts,) if done and stats else None  # a tuple: no alert at all is settled too
            (alerts,) = _wait(settled, SETTLE_TIMEOUT_S, "alerts to be stored and explained", services, poll=1.0)
            progress.update(task2, total=len(alerts), completed=len(alerts))

        details = [client.get(f"/api/v1/alerts/{a['alert_id']}", headers={"Authorization": f"Bearer {keys['analyst']}"}).json()
                   for a in alerts]
        grace = _grace_windows(out / "decisions.jsonl")
        metrics = {}
        for site, frame in labeled.items():
            ids = {a["alert_id"] for a in details if a["site_id"] == site}
            metrics[site] = site_metrics(frame, ids, grace.get(site, set()))
            metrics[site]["grace_period_end"] = _grace_end(frame, grace.get(site, set()))
        incidents = fetch_alerts(client, keys["analyst"], "/api/v1/incidents")
        result = DemoResult(alerts=details, metrics=metrics, dashboard_url=f"{base}/dashboard",
                            analyst_key=keys["analyst"], seconds=time.monotonic() - t0, services=services,
                            incidents=incidents)
        (out / "demo_metrics.json").write_text(json.dumps({"metrics": metrics, "alerts": len(details),
                                                           "incidents": len(incidents), "seconds": result.seconds},
                                                          indent=1))
        return result
    except BaseException:  # an error, Ctrl-C or SIGTERM (stop_on_signals): never leave a service behind
        stopped = True
        raise
    finally:
        if stopped or not keep_running:
            stop_all(services)


def _grace_windows(decisions: Path) -> dict[str, set[str]]:
    """Per site, the ``alert_id`` keys of the windows the fog logged as learning (the grace period)."""
    from fog.alerts import alert_id

    out: dict[str, set[str]] = {}
    with decisions.open() as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("learning"):
                out.setdefault(r["site_id"], set()).add(alert_id(r["site_id"], r["device_id"], r["t_start"]))
    return out


def _grace_end(frame, grace_ids: set[str]) -> float | None:
    """Epoch seconds at which a site started detecting: the start of its first window after the grace period."""
    from fog.alerts import alert_id

    after = [t for s, d, t in zip(frame["site_id"], frame["device_id"], frame["t_start"])
             if alert_id(s, d, t) not in grace_ids]
    return float(min(after)) if after else None


def _outbox_pending(path: Path) -> int:
    """Alerts the fog has not yet delivered to the cloud (``-1`` when the outbox cannot be read yet)."""
    import sqlite3

    if not path.is_file():
        return -1
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0) as con:
            tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
            if "alerts" not in tables:
                return -1
            return int(con.execute("select count(*) from alerts where state = 0").fetchone()[0])
    except sqlite3.Error:
        return -1
