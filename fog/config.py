"""Settings of the fog coordinator (``marlids fog serve``): one dataclass, its CLI options generated from it.

Kept apart from :mod:`fog.server` so that building the command line imports no NumPy or gRPC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edge.paths import BUNDLED_POLICY
from edge.settings import setting
from edge.transport.tls import TlsFiles

#: Default tick deadline, seconds (:mod:`fog.coordinator`).
DEFAULT_TICK_TIMEOUT_S = 5.0


def default_outbox_path() -> Path:
    """``$XDG_CACHE_HOME/marlids/fog/outbox.sqlite`` (``~/.cache`` when unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "marlids" / "fog" / "outbox.sqlite"


def parse_sites(value: str) -> int | tuple[str, ...]:
    """``--sites``: a count (``"2"``) or a comma-separated list of site ids (``"site_a,site_b"``).

    Raises
    ------
    ValueError
        For an empty value, a count < 1 or repeated names.
    """
    v = value.strip()
    if v.isdigit():
        if int(v) < 1:
            raise ValueError(f"--sites {value!r}: a count must be ≥ 1")
        return int(v)
    names = tuple(s.strip() for s in v.split(",") if s.strip())
    if not names or len(set(names)) != len(names):
        raise ValueError(f"--sites {value!r} is invalid: expected a count or distinct comma-separated site ids")
    return names


@dataclass(kw_only=True)
class FogConfig:
    """Settings of a fog coordinator.

    Parameters
    ----------
    listen : str
        ``HOST:PORT`` to bind (port 0 = any free port; see :attr:`FogServer.port`).
    policy_dir : Path
        Exported policy folder (``actor.json``, ``actor.pt``, ``fusion.json``) or a training run folder.
    cloud_url : str
        Base URL of the cloud API (alerts go to ``{cloud_url}/api/v1/alerts``).
    ingest_key : str
        Cloud API key with the ``ingest`` role.
    sites : int or tuple of str
        Expected sites (:func:`parse_sites`).
    tick_timeout_s : float
        Tick deadline (:mod:`fog.coordinator`).
    outbox_path : Path, optional
        Durable alert queue (default :func:`default_outbox_path`).
    outbox_capacity : int
        Alerts waiting for the cloud before the fog stops acknowledging edges.
    decisions_path : Path, optional
        JSON-lines log of every decision.
    tls : TlsFiles or None
        Server TLS files; ``None`` = plaintext (the caller has checked ``--insecure``).
    poll_s : float
        Ticker period.
    drain_s : float
        On stop, seconds spent trying to deliver waiting alerts.
    backoff_max_s : float
        Longest wait between cloud retries.
    cloud_ca : Path, optional
        CA (PEM) of the cloud's HTTPS certificate, for a private CA.
    allow_plain_http : bool
        Allow an ``http://`` cloud URL to a non-loopback host (the ingest key then crosses the network in
        clear; refused by default).
    max_attempts : int
        Refusals (4xx) of one alert before it is dead-lettered (:mod:`fog.outbox`).
    metrics_listen : str, optional
        ``HOST:PORT`` of the Prometheus ``/metrics`` endpoint (:mod:`fog.metrics`); None = off.
    suppressions_refresh_s : float
        Period (s) of fetching the analysts' suppression rules from the cloud and reporting their hits
        (:mod:`fog.suppression`).
    """

    listen: str = setting("127.0.0.1:50051", help="HOST:PORT of the gRPC endpoint for edges (port 0: any free port).")
    policy_dir: Path = setting(BUNDLED_POLICY, flag="--policy", show_default=False,
                               help="Exported policy folder (or a training run folder); default: the bundled "
                                    "models/defender.")
    cloud_url: str = setting(flag="--cloud", envvar="MARLIDS_CLOUD_URL",
                             help="Base URL of the cloud API, e.g. https://cloud.example:8080 (env MARLIDS_CLOUD_URL); "
                                  "http:// only to this machine unless --allow-plain-http.")
    ingest_key: str = setting(envvar="MARLIDS_INGEST_KEY", show_envvar=True,
                              help="Cloud API key with the ingest role (env MARLIDS_INGEST_KEY; prefer the "
                                   "environment to a flag or a config file).")
    sites: int | tuple[str, ...] = setting(1, cli_type=str, convert=parse_sites,
                                           help="Number of sites, or their ids comma-separated (site_a,site_b).")
    tick_timeout_s: float = setting(DEFAULT_TICK_TIMEOUT_S, flag="--tick-timeout", min=0.001,
                                    help="Close a tick this many seconds after it opened even if a site is missing "
                                         "(it gets the idle observation).")
    outbox_path: Path | None = setting(None, flag="--outbox",
                                       help="Durable alert queue (default ~/.cache/marlids/fog/outbox.sqlite).")
    outbox_capacity: int = setting(10000, flag="--outbox-max", min=1,
                                   help="Alerts waiting for the cloud before the fog stops acknowledging edges.")
    decisions_path: Path | None = setting(None, flag="--decisions",
                                          help="Append every decision to this JSON-lines file.")
    tls: TlsFiles | None = None
    poll_s: float = 0.05
    drain_s: float = 2.0
    backoff_max_s: float = setting(30.0, flag="--retry-max", min=0.1,
                                   help="Longest wait (s) between retries of a failed cloud post (doubling from 0.5).")
    cloud_ca: Path | None = setting(None, envvar="MARLIDS_CLOUD_CA",
                                    help="CA certificate (PEM) of the cloud's HTTPS certificate, for a private CA "
                                         "(env MARLIDS_CLOUD_CA).")
    allow_plain_http: bool = setting(False, flag="--allow-plain-http",
                                     help="Allow an http:// --cloud on another machine: the ingest key then crosses "
                                          "the network in clear (trusted networks only).")
    max_attempts: int = setting(3, min=1, help="Times the cloud may refuse one alert (HTTP 4xx) before it is "
                                               "dead-lettered (kept in the outbox, listed by `marlids fog status`).")
    metrics_listen: str | None = setting(None, help="HOST:PORT of a Prometheus /metrics endpoint (default: off).")
    suppressions_refresh_s: float = setting(30.0, flag="--suppressions-refresh", min=1.0,
                                            help="Seconds between fetches of the analysts' suppression rules from the "
                                                 "cloud (and reports of how many alerts each suppressed).")
