"""The fog's durable alert outbox and the thread that posts it to the cloud with backoff.

:class:`AlertOutbox` is one SQLite file (WAL journal, created mode 0600) holding

* the alerts waiting for the cloud, in the order they were decided, plus the ids of recently posted
  ones (so an alert decided again after a restart or a replay is not posted twice), and the
  dead-lettered ones (below), and
* per edge stream (``edge_id``), the highest sequence number whose decisions are committed — written
  in the same transaction as the alerts, which is what lets the coordinator acknowledge a message only
  once its alerts can no longer be lost.

The outbox is bounded: :meth:`AlertOutbox.commit` blocks while ``capacity`` alerts are waiting. The
coordinator then stops committing, hence stops acknowledging, and the edges keep the observations in
their own disk buffers: backpressure instead of loss. Alerts are written as strict JSON (non-finite
numbers become ``null``; :func:`fog.alerts.dumps`).

:class:`CloudPoster` sends waiting alerts oldest first, as ``POST {cloud}/api/v1/alerts`` with
``Authorization: Bearer <ingest key>``, and by these rules:

* 201 (stored) and 200 (already stored: the API is idempotent by ``alert_id``) remove an alert from the
  queue.
* **Dead-letter rule.** Any other 4xx except 401/403/408/425/429 means the cloud refuses *this* alert
  (400, 404, 409, 413, 422, …). The alert is tried ``max_attempts`` times in all (default 3), each retry
  deferred by ``backoff_max_s`` while the alerts behind it are posted; after the last refusal it moves
  to the dead-letter state — kept in the file with the cloud's answer, never posted again, logged as an
  error, counted in ``marlids_fog_outbox_alerts{state="dead_letter"}`` and listed by
  ``marlids fog status``. A refused alert therefore never blocks the queue.
* A 5xx for one alert defers that alert by ``backoff_max_s`` (so an alert that crashes the cloud cannot
  block the others either) and pauses posting for the current backoff; it is never dead-lettered (the cloud is at
  fault, not the alert).
* Connection errors, timeouts, 401/403 (key not yet valid), 408, 425 and 429 are retried, the wait
  doubling from ``backoff_initial_s`` to ``backoff_max_s`` (a ``Retry-After`` header, when present and
  larger, is honoured) and resetting after a success.

**Suppressions.** With a :class:`fog.suppression.SuppressionSet`, the poster also keeps the analysts'
suppression rules up to date, in the same loop: every ``suppressions_refresh_s`` seconds (and once at start)
it reads ``GET /api/v1/suppressions/active`` into the set, then posts the per-rule counts of suppressed alerts
to ``POST /api/v1/suppressions/hits``. Best effort: on a network error, a 5xx or an auth error the last rules
stay in force and the counts are kept for the next try (and tried once more when the poster stops); a cloud
without the API (404/405/501) is warned about once and not asked again. Counts are kept in memory only: a
fog that dies loses the counts not yet reported (the alerts themselves were never meant to be posted).

The ingest key is never sent in clear off the machine: an ``http://`` cloud URL whose host is not a
loopback address is refused unless ``allow_plain_http`` is set (``--allow-plain-http``).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from edge.transport.sqlite_queue import QueueClosedError, SQLiteQueue
from fog.alerts import dumps, json_safe

log = logging.getLogger(__name__)

PENDING, POSTED, DEAD_LETTER = 0, 1, 2
REJECTED = DEAD_LETTER  # the name before the dead-letter rule had retries
#: Names of the states, as ``marlids fog status`` and the metrics show them.
STATE_NAMES = {PENDING: "pending", POSTED: "posted", DEAD_LETTER: "dead_letter"}
#: Tries before an alert the cloud refuses with a 4xx is dead-lettered (module docstring).
DEFAULT_MAX_ATTEMPTS = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    alert_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT,
    not_before REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, n);
CREATE TABLE IF NOT EXISTS edges (edge_id TEXT PRIMARY KEY, site_id TEXT NOT NULL, committed_seq INTEGER NOT NULL);
"""


class OutboxClosedError(QueueClosedError):
    """The outbox was closed while a commit waited for room."""


class AlertOutbox(SQLiteQueue):
    """Durable, bounded queue of alerts plus the per-edge commit positions (module docstring), an
    :class:`~edge.transport.sqlite_queue.SQLiteQueue`.

    Parameters
    ----------
    path : str or Path
        SQLite file; created (mode 0600) with its folder when missing.
    capacity : int, default 10000
        Most alerts waiting for the cloud before :meth:`commit` blocks.
    keep_posted : int, default 100000
        Ids of posted alerts remembered to skip re-decided duplicates (oldest forgotten first).
    max_attempts : int, default 3
        Refusals (4xx) after which an alert is dead-lettered (module docstring).

    Raises
    ------
    ValueError
        For ``capacity``, ``keep_posted`` or ``max_attempts`` < 1.
    """

    closed_error = OutboxClosedError
    noun = "outbox"

    def __init__(self, path: str | Path, capacity: int = 10000, keep_posted: int = 100_000,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        if capacity < 1 or keep_posted < 1 or max_attempts < 1:
            raise ValueError(f"capacity, keep_posted and max_attempts must be ≥ 1, got {capacity!r}, "
                             f"{keep_posted!r} and {max_attempts!r}")
        super().__init__(path, _SCHEMA)
        self.capacity = capacity
        self.keep_posted = keep_posted
        self.max_attempts = max_attempts
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(alerts)")}
        if "not_before" not in columns:  # an outbox written before retries were deferred
            self._db.execute("ALTER TABLE alerts ADD COLUMN not_before REAL NOT NULL DEFAULT 0")
        self._woken = False
        self._pending = self._db.execute("SELECT COUNT(*) FROM alerts WHERE state = 0").fetchone()[0]
        self._finished = 0

    def committed_positions(self) -> dict[str, int]:
        """``edge_id → committed sequence number`` of every edge seen."""
        with self._cond:
            return {e: s for e, s in self._db.execute("SELECT edge_id, committed_seq FROM edges")}

    def commit(self, alerts: list[dict], positions: dict[str, tuple[str, int]], timeout: float | None = None) -> int:
        """Store new alerts and advance edge positions in one transaction.

        Parameters
        ----------
        alerts : list of dict
            Alert bodies (:func:`fog.detect.make_alert`); an ``alert_id`` already in the outbox (waiting,
            posted or rejected) is skipped.
        positions : dict
            ``edge_id → (site_id, committed_seq)``; a position never moves backwards.
        timeout : float, optional
            Seconds to wait for room (``None`` = forever).

        Returns
        -------
        int
            Alerts actually added.

        Raises
        ------
        TimeoutError
            If the outbox stayed full for ``timeout`` seconds.
        OutboxClosedError
            If closed meanwhile.
        """
        with self._cond:
            self._wait_for_room(lambda: bool(alerts) and self._pending + len(alerts) > self.capacity
                                and self._pending > 0, timeout,
                                lambda: f"{self.path}: {self._pending} alerts waiting for the cloud (capacity "
                                        f"{self.capacity})")
            with self._transaction() as db:
                before = db.total_changes
                db.executemany("INSERT OR IGNORE INTO alerts (alert_id, body) VALUES (?, ?)",
                               [(a["alert_id"], dumps(a, separators=(",", ":"))) for a in alerts])
                added = db.total_changes - before
                db.executemany(
                    "INSERT INTO edges VALUES (?, ?, ?) ON CONFLICT(edge_id) DO UPDATE SET "
                    "committed_seq = MAX(committed_seq, excluded.committed_seq), site_id = excluded.site_id",
                    [(e, site, int(seq)) for e, (site, seq) in positions.items()])
            self._pending += added
            if added:
                self._cond.notify_all()
            return added

    def next_pending(self, limit: int = 64) -> list[tuple[str, str]]:
        """Up to ``limit`` waiting ``(alert_id, body JSON)`` due now (not deferred), oldest first."""
        with self._cond:
            if self._closed:
                return []
            return self._db.execute("SELECT alert_id, body FROM alerts WHERE state = 0 AND not_before <= ? "
                                    "ORDER BY n LIMIT ?", (time.time(), limit)).fetchall()

    def wait_pending(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a waiting alert (or :meth:`wake`); returns whether there is one."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._pending > 0 or self._woken, timeout)
            self._woken = False
            return self._pending > 0 and not self._closed

    def wake(self) -> None:
        """Wake a thread in :meth:`wait_pending` (something else than an alert is waiting to be sent)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _finish(self, alert_id: str, state: int, reason: str | None) -> None:
        with self._cond:
            if self._closed:
                return
            cur = self._db.execute("UPDATE alerts SET state = ?, reason = ?, attempts = attempts + 1 "
                                   "WHERE alert_id = ? AND state = 0", (state, reason, alert_id))
            if cur.rowcount:
                self._pending -= 1
                self._cond.notify_all()
            self._finished += 1
            if state == POSTED and self._finished % 256 == 0:
                self._db.execute("DELETE FROM alerts WHERE state = 1 AND n <= (SELECT n FROM alerts WHERE state = 1 "
                                 "ORDER BY n DESC LIMIT 1 OFFSET ?)", (self.keep_posted,))

    def mark_posted(self, alert_id: str) -> None:
        """The cloud stored the alert (201) or already had it (200)."""
        self._finish(alert_id, POSTED, None)

    def mark_rejected(self, alert_id: str, reason: str) -> None:
        """Dead-letter the alert now, whatever its attempts (kept with the reason, never posted again)."""
        self._finish(alert_id, DEAD_LETTER, reason[:500])

    def _defer(self, alert_id: str, reason: str, retry_in_s: float) -> int:
        """Count one failed attempt and defer the alert by ``retry_in_s``; returns its attempts so far."""
        with self._cond:
            if self._closed:
                return 0
            self._db.execute("UPDATE alerts SET attempts = attempts + 1, reason = ?, not_before = ? "
                             "WHERE alert_id = ? AND state = 0", (reason[:500], time.time() + retry_in_s, alert_id))
            row = self._db.execute("SELECT attempts FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            return int(row[0]) if row else 0

    def mark_refused(self, alert_id: str, reason: str, retry_in_s: float) -> bool:
        """The cloud refused the alert with a 4xx (module docstring: dead-letter rule).

        Returns
        -------
        bool
            True when this was the ``max_attempts``-th refusal and the alert is now dead-lettered; False
            when it is deferred by ``retry_in_s`` seconds for another try.
        """
        with self._cond:
            attempts = self._defer(alert_id, reason, retry_in_s)
            if attempts < self.max_attempts:
                return False
            cur = self._db.execute("UPDATE alerts SET state = ? WHERE alert_id = ? AND state = 0",
                                   (DEAD_LETTER, alert_id))
            if cur.rowcount:
                self._pending -= 1
                self._cond.notify_all()
            return bool(cur.rowcount)

    def mark_failed(self, alert_id: str, reason: str, retry_in_s: float) -> None:
        """A 5xx for this alert: count the attempt and defer it by ``retry_in_s`` (never dead-lettered)."""
        self._defer(alert_id, reason, retry_in_s)

    def dead_letters(self, limit: int = 100) -> list[dict]:
        """The most recent dead-lettered alerts: ``alert_id``, ``attempts``, ``reason`` (the cloud's answer)."""
        with self._cond:
            if self._closed:
                return []
            rows = self._db.execute("SELECT alert_id, attempts, reason FROM alerts WHERE state = ? "
                                    "ORDER BY n DESC LIMIT ?", (DEAD_LETTER, limit)).fetchall()
        return [{"alert_id": a, "attempts": n, "reason": r} for a, n, r in rows]

    def counts(self) -> dict[str, int]:
        """Alerts in the file by state name (:data:`STATE_NAMES`)."""
        with self._cond:
            if self._closed:
                return dict.fromkeys(STATE_NAMES.values(), 0)
            got = dict(self._db.execute("SELECT state, COUNT(*) FROM alerts GROUP BY state").fetchall())
        return {name: int(got.get(state, 0)) for state, name in STATE_NAMES.items()}

    def count(self, state: int | None = None) -> int:
        """Alerts in the file (in ``state`` when given: 0 waiting, 1 posted, 2 dead-lettered)."""
        with self._cond:
            if self._closed:
                return 0
            if state is None:
                return self._db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM alerts WHERE state = ?", (state,)).fetchone()[0]

    @property
    def pending(self) -> int:
        """Alerts waiting for the cloud."""
        return self._pending



def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (from a URL) names this machine: ``localhost`` or a loopback address."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_cloud_url(cloud_url: str, *, allow_plain_http: bool = False) -> str:
    """Validate ``--cloud``: an http(s) URL with a host; plain ``http://`` only to a loopback host unless
    ``allow_plain_http`` (the ingest key would cross the network in clear). Returns the URL without a
    trailing slash.

    Raises
    ------
    ValueError
        For a URL that is not http(s), has no host, or is plain http to another machine without
        ``allow_plain_http``.
    """
    parts = urlsplit(cloud_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--cloud {cloud_url!r} is invalid: expected an http:// or https:// URL with a host")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        if not allow_plain_http:
            raise ValueError(f"--cloud {cloud_url!r}: the ingest key would cross the network in clear to "
                             f"{parts.hostname}; use https:// (with --cloud-ca for a private CA), or pass "
                             "--allow-plain-http on a trusted network")
        log.warning("posting alerts and the ingest key over plain http to %s (--allow-plain-http)", parts.hostname)
    return cloud_url.rstrip("/")


class CloudPoster:
    """Thread posting the outbox to the cloud (module docstring).

    Parameters
    ----------
    outbox : AlertOutbox
    cloud_url : str
        Base URL of the cloud API, e.g. ``https://cloud.example:8080`` (``http://`` only to loopback unless
        ``allow_plain_http``; :func:`check_cloud_url`).
    ingest_key : str
        API key with the ``ingest`` role (sent as ``Authorization: Bearer <key>``).
    timeout_s : float, default 10.0
        Timeout of one request.
    backoff_initial_s, backoff_max_s : float
        Retry wait: doubles from the first to the second.
    cloud_ca : str or Path, optional
        CA bundle (PEM) that signed the cloud's certificate (a private CA); default: the system's.
    allow_plain_http : bool
        Allow ``http://`` to a non-loopback host.
    suppressions : fog.suppression.SuppressionSet, optional
        Rules to keep up to date from the cloud, whose hit counts are reported back (module docstring);
        None = the poster does not ask for them.
    suppressions_refresh_s : float, default 30.0
        Period of that refresh, seconds.

    Raises
    ------
    ValueError
        For a bad URL (:func:`check_cloud_url`), an empty key or a refresh period ≤ 0.
    FileNotFoundError
        For a ``cloud_ca`` that does not exist.
    """

    RETRY_STATUSES = frozenset({401, 403, 408, 425, 429})

    def __init__(self, outbox: AlertOutbox, cloud_url: str, ingest_key: str, *, timeout_s: float = 10.0,
                 backoff_initial_s: float = 0.5, backoff_max_s: float = 30.0, cloud_ca: str | Path | None = None,
                 allow_plain_http: bool = False, suppressions=None, suppressions_refresh_s: float = 30.0) -> None:
        self.base_url = check_cloud_url(cloud_url, allow_plain_http=allow_plain_http)
        if not suppressions_refresh_s > 0:
            raise ValueError(f"--suppressions-refresh must be > 0 seconds, got {suppressions_refresh_s!r}")
        if not ingest_key:
            raise ValueError("--ingest-key is empty: give the cloud API key with the ingest role "
                             "(or set MARLIDS_INGEST_KEY)")
        if cloud_ca is not None and not Path(cloud_ca).is_file():
            raise FileNotFoundError(f"--cloud-ca {cloud_ca}: no such file")
        self.cloud_ca = cloud_ca
        self.outbox = outbox
        self.url = self.base_url + "/api/v1/alerts"
        self._site_states: dict[str, dict] = {}  # latest state per site not yet delivered
        self._site_lock = threading.Lock()
        self._sites_unsupported = False
        self.suppressions = suppressions
        self.suppressions_refresh_s = float(suppressions_refresh_s)
        self._suppressions_unsupported = False
        self._suppressions_warned: set[str] = set()
        self._next_refresh = 0.0
        self.suppression_refreshes = 0  # successful GETs of the active rules
        self.suppression_hits_reported = 0  # suppressed alerts the cloud counted
        self._headers = {"Authorization": f"Bearer {ingest_key}", "Content-Type": "application/json"}
        self.timeout_s = timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.posted = 0
        self.duplicates = 0
        self.rejected = 0  # 4xx refusals (each try)
        self.dead_lettered = 0
        self.failures = 0
        self._backoff = backoff_initial_s
        self._last_error = ""

    def site_state(self, site_id: str, state: dict) -> None:
        """Queue a site's baseline state for ``PUT /api/v1/sites/{site_id}`` (only the latest is kept;
        best effort: a failed delivery is retried with the next alert batch)."""
        with self._site_lock:
            self._site_states[site_id] = dict(state)
        self.outbox.wake()

    def _post_site_states(self, client) -> None:
        import urllib.parse

        import httpx

        with self._site_lock:
            todo, self._site_states = self._site_states, {}
        for site, state in todo.items():
            body = json_safe({k: state[k] for k in ("state", "grace_elapsed_s", "grace_s", "grace_windows",
                                                   "devices_own") if k in state})
            try:
                r = client.put(f"{self.base_url}/api/v1/sites/{urllib.parse.quote(site, safe='')}", json=body)
                ok = r.status_code in (200, 201)
                if r.status_code in (404, 405, 501):  # a cloud without the sites API: do not retry forever
                    if not self._sites_unsupported:
                        log.warning("cloud %s does not accept site states (HTTP %d); the dashboard will not show "
                                    "them", self.base_url, r.status_code)
                        self._sites_unsupported = True
                    continue
                if not ok and r.status_code < 500 and r.status_code not in (401, 403, 408, 429):
                    log.error("cloud refused the state of site %s (HTTP %d): %s", site, r.status_code, r.text[:200])
                    continue
            except httpx.HTTPError:
                ok = False
            if not ok:
                with self._site_lock:
                    self._site_states.setdefault(site, state)

    # -- suppressions -------------------------------------------------------------------------
    def _warn_once(self, key: str, msg: str, *args) -> None:
        if key not in self._suppressions_warned:
            self._suppressions_warned.add(key)
            log.warning(msg, *args)

    def sync_suppressions(self, client=None) -> bool:
        """One refresh now (module docstring, suppressions): fetch the active rules into the set, then report the
        hits counted since the last report. Returns whether the rules were fetched."""
        if self.suppressions is None or self._suppressions_unsupported:
            return False
        if client is None:
            with self._client() as c:
                return self.sync_suppressions(c)
        self._next_refresh = time.monotonic() + self.suppressions_refresh_s
        fetched = self._fetch_rules(client)
        if not self._suppressions_unsupported:
            self._post_hits(client)
        return fetched

    def _unsupported(self, status: int) -> None:
        log.warning("cloud %s has no suppressions API (HTTP %d): no suppression rules apply and none will be "
                    "asked for again", self.base_url, status)
        self._suppressions_unsupported = True

    def _fetch_rules(self, client) -> bool:
        import httpx

        try:
            r = client.get(f"{self.base_url}/api/v1/suppressions/active")
        except httpx.HTTPError as exc:  # the alert loop reports the outage; keep the last rules
            log.debug("could not fetch the suppression rules (%s: %s); keeping the last ones", type(exc).__name__, exc)
            return False
        if r.status_code in (404, 405, 501):
            self._unsupported(r.status_code)
            return False
        if r.status_code != 200:
            self._warn_once(f"get-{r.status_code}", "cloud answered HTTP %d for the suppression rules (%s); keeping "
                            "the last ones, retrying every %.0f s", r.status_code, r.text[:200],
                            self.suppressions_refresh_s)
            return False
        try:
            body = r.json()
            items = body["items"]
            if not isinstance(items, list):
                raise TypeError("items is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            self._warn_once("get-body", "the cloud's suppression rules are unreadable (%s); keeping the last ones", exc)
            return False
        if body.get("truncated"):
            self._warn_once("truncated", "the cloud has more active suppression rules than it sends; only the newest "
                            "apply")
        self.suppressions.replace(items, time.time())
        self.suppression_refreshes += 1
        return True

    def _post_hits(self, client) -> None:
        import httpx

        counts = self.suppressions.take_counts()
        items = sorted(counts.items())
        for start in range(0, len(items), 1000):  # the cloud takes at most 1,000 ids per report
            chunk = dict(items[start:start + 1000])
            try:
                r = client.post(f"{self.base_url}/api/v1/suppressions/hits", json={"counts": chunk})
            except httpx.HTTPError as exc:
                log.debug("could not report suppression hits (%s); kept for the next try", exc)
                self.suppressions.restore_counts(dict(items[start:]))
                return
            if r.status_code == 200:
                self.suppression_hits_reported += sum(chunk.values())
                try:
                    unknown = r.json().get("unknown") or []
                except ValueError:
                    unknown = []
                if unknown:
                    log.info("the cloud does not know %d suppressions the fog applied (deleted?): %s", len(unknown),
                             ", ".join(map(str, unknown[:5])))
                continue
            if r.status_code in (404, 405, 501):
                self._unsupported(r.status_code)
                return
            if r.status_code >= 500 or r.status_code in self.RETRY_STATUSES:
                self._warn_once(f"hits-{r.status_code}", "cloud answered HTTP %d to the suppression hits; kept for the "
                                "next try", r.status_code)
                self.suppressions.restore_counts(dict(items[start:]))
                return
            log.error("cloud refused a suppression hits report (HTTP %d: %s); %d hits dropped", r.status_code,
                      r.text[:200], sum(chunk.values()))

    def start(self) -> CloudPoster:
        """Start the posting thread."""
        self._thread = threading.Thread(target=self._run, name="fog-cloud-poster", daemon=True)
        self._thread.start()
        return self

    def stop(self, drain_s: float = 0.0) -> None:
        """Stop, after trying for up to ``drain_s`` seconds to empty the queue. Idempotent."""
        deadline = time.monotonic() + drain_s
        while drain_s > 0 and self.outbox.pending and time.monotonic() < deadline and self._thread is not None \
                and self._thread.is_alive():
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s + 5)

    def _client(self):
        import ssl

        import httpx

        verify: bool | ssl.SSLContext = True
        if self.cloud_ca is not None:
            verify = ssl.create_default_context(cafile=str(self.cloud_ca))
        return httpx.Client(timeout=self.timeout_s, headers=self._headers, verify=verify)

    def _run(self) -> None:
        with self._client() as client:
            try:
                self._loop(client)
            finally:
                if self.suppressions is not None and not self._suppressions_unsupported:
                    try:
                        self._post_hits(client)  # the last counts, best effort
                    except Exception:
                        log.exception("could not report the last suppression hits")

    def _loop(self, client) -> None:
        self._backoff = self.backoff_initial_s
        warned = False
        while not self._stop.is_set():
            if self._site_states:
                self._post_site_states(client)
            if self.suppressions is not None and not self._suppressions_unsupported \
                    and time.monotonic() >= self._next_refresh:
                self.sync_suppressions(client)
            batch = self.outbox.next_pending(64)
            if not batch:
                if self.outbox.pending:  # all waiting alerts are deferred: look again shortly
                    self._stop.wait(0.2)
                else:
                    self.outbox.wait_pending(0.5)
                continue
            for alert_id, body in batch:
                if self._stop.is_set():
                    return
                wait = self._post_one(client, alert_id, body)
                if wait is None:
                    self._backoff = self.backoff_initial_s
                    if warned:
                        log.info("cloud %s reachable again", self.url)
                        warned = False
                    continue
                self.failures += 1
                delay = max(self._backoff, min(wait, self.backoff_max_s))
                if not warned:
                    log.warning("cloud post failed (%s); %d alerts waiting; retrying with backoff", self._last_error,
                                self.outbox.pending)
                    warned = True
                else:
                    log.debug("cloud post failed (%s); retry in %.1f s", self._last_error, delay)
                self._stop.wait(delay)
                self._backoff = min(self._backoff * 2, self.backoff_max_s)
                break

    def _post_one(self, client, alert_id: str, body: str) -> float | None:
        """Post one alert; None when the queue may move on (posted, refused, dead-lettered), else the
        suggested wait (s) before posting anything again (module docstring: the rules)."""
        import httpx

        try:
            r = client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            return 0.0
        if r.status_code in (200, 201):
            self.outbox.mark_posted(alert_id)
            if r.status_code == 200:
                self.duplicates += 1
            else:
                self.posted += 1
            return None
        reason = f"HTTP {r.status_code}: {r.text[:400]}"
        if r.status_code in self.RETRY_STATUSES or r.status_code >= 500:
            self._last_error = reason[:200]
            if r.status_code in (401, 403):
                log.error("cloud refused the ingest key (HTTP %d); check --ingest-key; retrying", r.status_code)
            elif r.status_code >= 500:  # maybe this alert breaks the cloud: let the others pass meanwhile
                self.outbox.mark_failed(alert_id, reason, self.backoff_max_s)
            try:
                return float(r.headers.get("Retry-After", 0))
            except ValueError:
                return 0.0
        self.rejected += 1
        if self.outbox.mark_refused(alert_id, reason, self.backoff_max_s):
            self.dead_lettered += 1
            log.error("cloud refused alert %s %d times (last: %s); dead-lettered: it stays in %s and is not posted "
                      "again (marlids fog status --outbox %s lists it)", alert_id, self.outbox.max_attempts,
                      reason[:300], self.outbox.path, self.outbox.path)
        else:
            log.warning("cloud refused alert %s (%s); retrying it later, the alerts behind it go on", alert_id,
                        reason[:300])
        return None
