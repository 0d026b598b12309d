"""Property-based API testing with schemathesis: valid and invalid requests generated from the OpenAPI
document, sent over HTTP to a real uvicorn server, never get a 5xx. Bounded (a fixed number of
examples per operation, deterministic generation) so the suite stays quick."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install -e .[dev])")
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.cloud.conftest import cloud_settings, fog_alert

EXAMPLES = 20


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
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=EXAMPLES,
                                    deterministic=True)
    return schema


def _operations(schema) -> list:
    return [r.ok() for r in schema.get_all_operations()]


def _fuzz(url: str, op, mode, headers: dict, calls: dict):
    from hypothesis import given

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def run(case) -> None:
        response = case.call(base_url=url, headers=headers, timeout=30)
        calls[op.label] = calls.get(op.label, 0) + 1
        case.validate_response(response, checks=[not_a_server_error])

    return run


def test_no_server_errors(served, api_schema):
    """Every operation × {valid, invalid} inputs: ``EXAMPLES`` generated requests each, none answered 5xx.

    (Driven with Hypothesis directly rather than schemathesis' pytest plugin, whose lazy-fixture mode
    does not run on pytest 9.)
    """
    ops = _operations(api_schema)
    assert len(ops) >= 12, [op.label for op in ops]
    calls: dict[str, int] = {}
    nothing_to_negate = set()
    for op in ops:
        role = "ingest" if (op.method.upper(), op.path) == ("POST", "/api/v1/alerts") else "analyst"
        headers = {"Authorization": f"Bearer {served.keys[role]}"}
        _fuzz(served.url, op, GenerationMode.POSITIVE, headers, calls)()
        try:
            _fuzz(served.url, op, GenerationMode.NEGATIVE, headers, calls)()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body): e.g. GET /healthz
            nothing_to_negate.add(op.label)
    assert nothing_to_negate == {"GET /healthz", "GET /dashboard", "POST /dashboard/session"}
    assert sum(calls.values()) >= 10 * len(ops)


def test_the_server_stayed_healthy(served):
    """After the generated traffic the service still answers and still holds its seeded alerts."""
    import httpx

    with httpx.Client(base_url=served.url, headers={"X-API-Key": served.keys["analyst"]}) as c:
        assert c.get("/healthz").json() == {"status": "ok", "database": "ok"}
        assert c.get(f"/api/v1/alerts/{0:032x}").status_code == 200
