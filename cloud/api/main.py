"""Application factory of the analyst API, and helpers to serve it.

``create_app(settings)`` builds everything (engine, writer, explanation worker, metrics) but starts
nothing: the lifespan runs the migrations, registers the bootstrap / environment keys and starts the
writer and worker threads. Serve it with ``marlids cloud serve``, :func:`serve` (blocking) or
:class:`BackgroundServer` (a uvicorn server on a thread, for the demo and tests)::

    from cloud.api.main import BackgroundServer
    from cloud.core.config import Settings

    settings = Settings(database_url="sqlite:///out/cloud.db", port=8080,
                        bootstrap_keys_file="out/cloud-keys.json")
    with BackgroundServer(settings) as srv:     # srv.url == "http://127.0.0.1:8080"
        keys = srv.keys                         # {"ingest": "mk_…", "analyst": "mk_…"}
        ...
"""

from __future__ import annotations

import gc
import inspect
import ipaddress
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from fastapi import APIRouter, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from cloud.api.deps import AnalystDep, KeyStore
from cloud.api.errors import validation_error_handler
from cloud.api.metrics import Metrics
from cloud.api.middleware import BodySizeLimit
from cloud.api.routes import alerts, dashboard, export, health, incidents, sites, suppressions, techniques
from cloud.core.config import Settings, get_settings
from cloud.core.db import make_engine, make_session_factory, run_migrations
from cloud.services.attack import get_attack_table
from cloud.services.explain import Explainer, explainer_from_settings
from cloud.services.keys import bootstrap_keys, register_key
from cloud.services.worker import ExplanationWorker
from cloud.services.writer import AlertWriter

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def _no_otel() -> dict[str, Any]:
    """FastAPI ≥ 0.16x carries native OpenTelemetry hooks that look up providers on every request; the
    service exports Prometheus metrics instead, so switch them off where the option exists."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    return {}


def make_explainer(settings: Settings) -> Explainer:
    """The explainer the settings ask for (see :func:`cloud.services.explain.explainer_from_settings`)."""
    return explainer_from_settings(settings, get_attack_table())


def create_app(settings: Settings | None = None, *, explainer: Explainer | None = None) -> FastAPI:
    """Build the analyst API.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :func:`cloud.core.config.get_settings` (the environment).
    explainer : Explainer, optional
        Overrides the explainer chosen from the settings; it then runs in the worker threads (an
        object need not be picklable), whereas by default (``explain_in_process``) spawned processes
        build their own explainer from the settings.

    Returns
    -------
    FastAPI
        The app; its lifespan migrates the database, registers keys (``app.state.bootstrap_keys`` then
        holds the bootstrap file's keys, if one was configured) and runs the background threads.

    Raises
    ------
    ValueError
        For a bad database URL or SQLite setting (at build time), or bad bootstrap keys (at start-up).
    """
    settings = settings or get_settings()
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    session_factory = make_session_factory(engine)
    table = get_attack_table()
    state: dict[str, Any] = {}
    metrics = Metrics(lambda: (state["writer"].depth, state["worker"].depth if state["worker"] else 0))
    writer = AlertWriter(session_factory, batch_max=settings.ingest_batch_max, queue_max=settings.ingest_queue_max,
                         metrics=metrics)
    worker = None
    if settings.explain:
        in_process = explainer is None and settings.explain_in_process
        worker = ExplanationWorker(
            session_factory, writer, None if in_process else (explainer or make_explainer(settings)), table,
            settings=settings if in_process else None, workers=settings.explain_workers, metrics=metrics)
        writer.on_alerts_committed = worker.enqueue
    state.update(writer=writer, worker=worker)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.auto_migrate:
            run_migrations(engine)
        register_startup_keys(app)
        writer.start()
        if worker is not None:
            worker.start()
        gc.freeze()  # start-up objects (ATT&CK table, models, routes) leave the collector's scans: shorter pauses
        log.info("marlids cloud API ready (database %s)", engine.url.render_as_string(hide_password=True))
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
            writer.stop()
            engine.dispose()

    app = FastAPI(title="marlids cloud analyst API", version="1.0.0", lifespan=lifespan,
                  description="Alerts from the fog coordinators → ATT&CK mapping → explanations → analysts.",
                  docs_url=None, redoc_url=None, openapi_url=None, **_no_otel())
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

    app.add_exception_handler(RequestValidationError, validation_error_handler)

    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return JSONResponse({"detail": [{"loc": ["body"], "msg": "JSON nested too deeply", "type": "json_invalid",
                                         "input": None}]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    app.state.settings = settings
    app.state.bootstrap_keys = {}
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.writer = writer
    app.state.worker = worker
    app.state.attack_table = table
    app.state.metrics = metrics
    app.state.key_store = KeyStore(session_factory, ttl_s=settings.key_cache_s)

    api = APIRouter(prefix=API_PREFIX)
    api.include_router(alerts.router)
    api.include_router(incidents.router)
    api.include_router(techniques.router)
    api.include_router(export.router)
    api.include_router(sites.router)
    api.include_router(suppressions.router)

    @api.get("/openapi.json", response_model=dict[str, Any], include_in_schema=False)
    def openapi_spec(_: AnalystDep) -> dict[str, Any]:
        """The OpenAPI document (analyst key required, like everything but /healthz)."""
        return app.openapi()

    app.include_router(health.router)
    app.include_router(api)
    app.include_router(dashboard.router)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["X-API-Key", "Authorization", "Content-Type"])
    return app


def register_startup_keys(app: FastAPI) -> None:
    """Register the bootstrap file's keys and ``MARLIDS_INGEST_KEY``/``MARLIDS_ANALYST_KEY`` (idempotent)."""
    settings: Settings = app.state.settings
    factory = app.state.session_factory
    if settings.bootstrap_keys_file is not None:
        app.state.bootstrap_keys = bootstrap_keys(factory, settings.bootstrap_keys_file)
        log.info("bootstrap API keys registered (%s)", settings.bootstrap_keys_file)
    for role, secret in (("ingest", settings.ingest_key), ("analyst", settings.analyst_key)):
        if secret is not None:
            register_key(factory, f"env-{role}", role, secret.get_secret_value())
            log.info("%s key from the environment registered", role)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (127.0.0.0/8, ::1, ``localhost``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: resolved by uvicorn, assume it is reachable from elsewhere
        return False


def warn_if_exposed(settings: Settings) -> bool:
    """Log a warning when the API binds a non-loopback address without TLS; returns whether it warned."""
    if settings.tls or is_loopback(settings.host):
        return False
    log.warning("the cloud API binds %s:%d without TLS: API keys and the dashboard cookie cross the network in "
                "clear. Serve HTTPS (marlids cloud serve --tls-cert/--tls-key) or put a TLS proxy in front and "
                "bind 127.0.0.1.", settings.host, settings.port)
    return True


def uvicorn_tls(settings: Settings) -> dict[str, Any]:
    """uvicorn's ``ssl_certfile``/``ssl_keyfile`` options from the settings (empty without TLS)."""
    if not settings.tls:
        return {}
    return {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}


def serve(settings: Settings | None = None, *, log_level: str = "info") -> None:
    """Serve the API with uvicorn on ``settings.host:settings.port`` until interrupted (blocking); HTTPS
    when ``settings.tls_cert``/``tls_key`` are set (:func:`warn_if_exposed` otherwise, off loopback).

    One process only: the single writer thread is what makes SQLite commits fast and safe.
    """
    import uvicorn

    settings = settings or get_settings()
    warn_if_exposed(settings)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level,
                access_log=False, workers=1, **uvicorn_tls(settings))


class BackgroundServer:
    """The API served by uvicorn on a background thread: ``with BackgroundServer(settings) as srv:``.

    Parameters
    ----------
    settings : Settings
        ``port=0`` picks a free port (read it from :attr:`url` after start).
    explainer : Explainer, optional
        Overrides the explainer chosen from the settings.
    startup_timeout_s : float
        How long :meth:`start` waits for the server to accept connections.

    Attributes
    ----------
    app : FastAPI
    url : str
        ``http://host:port`` (``https://`` with TLS settings) once started.
    keys : dict
        The bootstrap keys (``{"ingest": …, "analyst": …}``) when a bootstrap file is configured.
    """

    def __init__(self, settings: Settings, *, explainer: Explainer | None = None,
                 startup_timeout_s: float = 30.0, log_level: str = "warning") -> None:
        import uvicorn

        self.settings = settings
        self.app = create_app(settings, explainer=explainer)
        warn_if_exposed(settings)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host=settings.host, port=settings.port,
                                                     log_level=log_level, access_log=False, **uvicorn_tls(settings)))
        self._thread = threading.Thread(target=self._server.run, name="marlids-cloud-uvicorn", daemon=True)
        self.startup_timeout_s = startup_timeout_s
        self.url = ""

    @property
    def keys(self) -> dict[str, str]:
        return dict(self.app.state.bootstrap_keys)

    def start(self) -> Self:
        """Start serving; return once connections are accepted.

        Raises
        ------
        RuntimeError
            When the server fails to start within ``startup_timeout_s`` (e.g. the port is taken).
        """
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._server.should_exit = True
                raise RuntimeError(f"the cloud API did not start on {self.settings.host}:{self.settings.port} "
                                   "(port in use, bad settings? see the log)")
            time.sleep(0.02)
        sock = self._server.servers[0].sockets[0].getsockname()
        self.url = f"{'https' if self.settings.tls else 'http'}://{sock[0]}:{sock[1]}"
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving (drains the writer) and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
