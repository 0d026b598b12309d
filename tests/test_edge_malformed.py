"""Damaged and hostile captures through ``marlids edge extract`` (issue 17): never a traceback, never a hang;
a capture that cannot be used is one ``marlids: error:`` line (exit 2); a capture read only in part exits 0
with a warning naming the file, the record index and how many packets were read before it — whenever
packets were dropped, there is a warning. The captures come from tests/malformed_captures.py (seeded)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.malformed_captures import Case, malformed_captures

REPO = Path(__file__).resolve().parents[1]
BASE = REPO / "data" / "captures" / "site_a.pcap"
TIMEOUT_S = 90
WROTE = re.compile(r"wrote (\d+) windows .*?\(([\d,]+) packets", re.DOTALL)

CASES = malformed_captures(BASE, seed=17)


def _extract(case: Case, folder: Path) -> tuple[Case, subprocess.CompletedProcess | None]:
    path = folder / case.name
    path.write_bytes(case.data)
    try:
        r = subprocess.run([sys.executable, "-m", "marlids", "edge", "extract", str(path), "--out",
                            str(folder / (case.name + ".parquet")), "--no-embed"], capture_output=True, text=True,
                           timeout=TIMEOUT_S, env={**os.environ, "COLUMNS": "400"}, cwd=REPO)
    except subprocess.TimeoutExpired:
        return case, None
    return case, r


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> list[tuple[Case, subprocess.CompletedProcess | None]]:
    folder = tmp_path_factory.mktemp("malformed")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda c: _extract(c, folder), CASES))


def test_the_generator_makes_forty_kinds_of_damage_the_same_way_each_time():
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    assert {c.expect for c in CASES} == {"error", "damaged", "survive"}
    again = malformed_captures(BASE, seed=17)
    assert [(c.name, c.data) for c in again] == [(c.name, c.data) for c in CASES]


def test_no_traceback_no_hang(outcomes):
    hung = [c.name for c, r in outcomes if r is None]
    assert not hung, f"did not finish within {TIMEOUT_S} s: {hung}"
    for case, r in outcomes:
        assert "Traceback" not in r.stderr + r.stdout, f"{case.name}\n{r.stderr[-3000:]}"
        assert r.returncode in (0, 2), f"{case.name}: exit {r.returncode}\n{r.stderr[-2000:]}"


def test_unusable_captures_are_one_line_errors(outcomes):
    for case, r in outcomes:
        if case.expect != "error":
            continue
        assert r.returncode == 2, f"{case.name}: exit {r.returncode}\n{r.stdout[-1000:]}"
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("marlids: error: ") and case.name in line, (case.name, r.stderr[-1000:])
        if "link_type" in case.name:
            assert "link type" in line and "supported link types: 0 (NULL" in line, line


def test_damage_is_a_warning_naming_file_record_and_packets_read(outcomes):
    for case, r in outcomes:
        if case.expect != "damaged":
            continue
        out = r.stdout + r.stderr
        assert r.returncode == 0, f"{case.name}: exit {r.returncode}\n{r.stderr[-2000:]}"
        m = re.search(re.escape(case.name) + r": damaged capture: record index (\d+) at byte \d+ of \d+: .*?; (\d+) "
                      r"packets\s+were read before it", out)
        assert m, f"{case.name}: no damage warning\n{out[-2000:]}"
        assert int(m.group(1)) == int(m.group(2)) == case.lost_at, (case.name, m.group(0))
        assert int(WROTE.search(out).group(2).replace(",", "")) == case.lost_at


def test_exit_0_only_with_a_warning_whenever_packets_were_dropped(outcomes):
    dropped_with_warning = 0
    for case, r in outcomes:
        if r.returncode != 0:
            continue
        out = r.stdout + r.stderr
        read = int(WROTE.search(out).group(2).replace(",", ""))
        warned = f"{case.name}: damaged capture" in out or "could not be metered" in out
        if read < case.records:
            assert warned, f"{case.name}: {read} of {case.records} packets read and no warning\n{out[-2000:]}"
            dropped_with_warning += 1
        if case.expect == "survive" and "link_type" not in case.name and "no_records" not in case.name:
            assert read == case.records or warned, case.name
    assert dropped_with_warning >= sum(c.expect == "damaged" for c in CASES)


def test_frames_nfstream_cannot_meter_are_counted_in_a_warning(outcomes):
    case, r = next((c, r) for c, r in outcomes if c.name == "pcap_ethernet_frames_declared_raw_ip.pcap")
    assert r.returncode == 0 and "could not be metered" in r.stdout + r.stderr, r.stderr[-2000:]


def test_report(outcomes, capsys):
    """One line for the record: how the generated captures fared."""
    counts: dict[str, int] = {}
    for case, r in outcomes:
        out = r.stdout + r.stderr
        key = "exit 2" if r.returncode == 2 else ("exit 0 + warning" if "damaged capture" in out or
                                                  "could not be metered" in out else "exit 0, all packets")
        counts[key] = counts.get(key, 0) + 1
    with capsys.disabled():
        print(f"\nmalformed captures: {len(CASES)} → {counts}")
