"""Property-based API testing with schemathesis: valid and invalid requests generated from the OpenAPI
document, sent over HTTP to a real uvicorn server. Every answer must conform to the document (status code,
content type, headers, body schema), invalid requests must be refused, none may be a 5xx, and an alert
refused with any non-2xx answer must not be stored. Bounded (a fixed number of examples per operation,
deterministic generation, a time budget) so the suite stays well under a minute."""

from __future__ import annotations

import sqlite3
import time

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e .[dev])")
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cloud.conftest import cloud_settings, fog_alert

#: Examples per operation and mode (884 requests, ~10 s). With 100, the negative generator starts making
#: one-element arrays for scalar query parameters (``until=[0.0]``), which serialize exactly like the
#: scalar and are rightly accepted — a generator artefact, not an API fault.
EXAMPLES = 40
#: Wall-clock budget of the whole run, seconds (CI: keep it under a minute).
BUDGET_S = 50.0
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import httpx

    from cloud.api.main import BackgroundServer

    tmp = tmp_path_factory.mktemp("schemathesis")
    srv = BackgroundServer(cloud_settings(tmp / "cloud.db", port=0, bootstrap_keys_file=tmp / "keys.json"))
    with srv:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.keys['ingest']}"}) as c:
            for i in range(5):  # something to list, read, export and triage
                c.post("/api/v1/alerts", json=fog_alert(alert_id=f"{i:032x}", ts=1764000000.0 + i))
        yield srv


@pytest.fixture(scope="module")
def api_schema(served):
    schema = schemathesis.openapi.from_dict(served.app.openapi())
    # Unknown query parameters are ignored, as FastAPI does by default (a client may send more than an
    # operation uses); they are not "invalid input", so schemathesis does not add them to negative cases.
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES,
                                    deterministic=True, allow_extra_parameters=False)
    return schema


def _operations(schema) -> list:
    return [r.ok() for r in schema.get_all_operations()]


class _Ledger:
    """Alerts the server answered 2xx for, and refused alerts found stored anyway."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.accepted: set[str] = {f"{i:032x}" for i in range(5)}
        self.leaked: list[tuple[str, int]] = []

    def after(self, case, response) -> None:
        if (case.method.upper(), case.path) != ("POST", "/api/v1/alerts") or not isinstance(case.body, dict):
            return
        alert_id = case.body.get("alert_id")
        if not isinstance(alert_id, str):
            return
        if 200 <= response.status_code < 300:
            self.accepted.add(alert_id)
            return
        if alert_id in self.accepted:
            return
        with sqlite3.connect(self.db) as con:
            if con.execute("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone():
                self.leaked.append((alert_id, response.status_code))


def _fuzz(url: str, op, mode, headers: dict, calls: dict, ledger: _Ledger, deadline: float):
    from hypothesis import given

    checks = CONFORMANCE + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        if time.monotonic() > deadline:
            return
        response = case.call(base_url=url, headers=headers, timeout=30)
        calls[op.label] = calls.get(op.label, 0) + 1
        ledger.after(case, response)
        case.validate_response(response, checks=checks)

    return run


def test_conformance_and_no_server_errors(served, api_schema):
    """Every operation × {valid, invalid} inputs: ``EXAMPLES`` generated requests each; every answer matches
    the document, invalid input is refused, none is a 5xx, and nothing refused is stored.

    (Driven with Hypothesis directly rather than schemathesis' pytest plugin, whose lazy-fixture mode
    does not run on pytest 9.)
    """
    ops = _operations(api_schema)
    assert len(ops) >= 12, [op.label for op in ops]
    calls: dict[str, int] = {}
    nothing_to_negate = set()
    ledger = _Ledger(served.settings.database_url.removeprefix("sqlite:///"))
    deadline = time.monotonic() + BUDGET_S
    for op in ops:
        ingest = (op.method.upper(), op.path) in (("POST", "/api/v1/alerts"), ("PUT", "/api/v1/sites/{site_id}"),
                                                  ("POST", "/api/v1/suppressions/hits"))
        headers = {"Authorization": f"Bearer {served.keys['ingest' if ingest else 'analyst']}"}
        _fuzz(served.url, op, GenerationMode.POSITIVE, headers, calls, ledger, deadline)()
        try:
            _fuzz(served.url, op, GenerationMode.NEGATIVE, headers, calls, ledger, deadline)()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body): e.g. GET /healthz
            nothing_to_negate.add(op.label)
    assert nothing_to_negate <= {"GET /healthz", "GET /dashboard", "POST /dashboard/session",
                                 "POST /dashboard/logout", "GET /metrics", "GET /api/v1/sites",
                                 "GET /dashboard/app.js"}
    assert ledger.leaked == [], "alerts stored although the answer was not 2xx"
    print(f"schemathesis: {sum(calls.values())} requests over {len(ops)} operations")
    assert sum(calls.values()) >= 8 * len(ops), calls


def test_the_server_stayed_healthy(served):
    """After the generated traffic the service still answers and still holds its seeded alerts."""
    import httpx

    with httpx.Client(base_url=served.url, headers={"X-API-Key": served.keys["analyst"]}) as c:
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
        assert c.get(f"/api/v1/alerts/{0:032x}").status_code == 200
        assert c.get("/api/v1/alerts").status_code == 200
        assert c.get("/api/v1/export/ecs").status_code == 200
