"""deploy/systemd: the edge unit's key directives (restart policy, non-root user, capture capabilities),
``systemd-analyze verify`` (strict: any warning fails) where systemd is installed, and the unit's
command line with the shipped EnvironmentFile expanded as systemd does, parsed by the real CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEMD = REPO / "deploy" / "systemd"
UNIT = SYSTEMD / "marlids-edge.service"
ENV_FILE = SYSTEMD / "edge.env"
MARLIDS = Path(sys.executable).parent / "marlids"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """``{section: {key: [values in order]}}`` of a systemd unit (comments and blank lines skipped)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = out.setdefault(line[1:-1], {})
            continue
        assert section is not None and "=" in line, f"not a unit line: {raw!r}"
        key, value = line.split("=", 1)
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def parse_env(text: str) -> dict[str, str]:
    """KEY=value lines of an EnvironmentFile (no quotes or expansion are used in ours)."""
    env = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), key
            env[key] = value
    return env


def expand_exec(command: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart expansion: ``${VAR}`` is one argument, a bare ``$VAR`` word splits on spaces."""
    args: list[str] = []
    for word in shlex.split(command):
        bare = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if bare:
            args.extend(env[bare.group(1)].split())
        else:
            args.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)], word))
    return args


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def test_restart_policy_and_rate_limit(unit):
    svc = unit["Service"]
    assert svc["Restart"] == ["on-failure"] and svc["RestartSec"] == ["5s"]
    assert int(unit["Unit"]["StartLimitBurst"][0]) >= 3 and unit["Unit"]["StartLimitIntervalSec"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_runs_unprivileged_with_only_the_capture_capabilities(unit):
    svc = unit["Service"]
    assert svc["User"] == ["marlids"] and svc["Group"] == ["marlids"]
    assert set(svc["AmbientCapabilities"][0].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(svc["CapabilityBoundingSet"][0].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert svc["NoNewPrivileges"] == ["yes"] and svc["ProtectSystem"] == ["strict"]
    assert "AF_PACKET" in svc["RestrictAddressFamilies"][0]  # live capture sockets
    sysusers = (SYSTEMD / "marlids.sysusers.conf").read_text().split("\n")
    assert any(re.match(r'^u marlids - ".+" /var/lib/marlids$', line) for line in sysusers)
    assert svc["StateDirectory"] == ["marlids"]


def test_environment_file_defines_every_variable_the_unit_uses(unit):
    env = parse_env(ENV_FILE.read_text())
    assert unit["Service"]["EnvironmentFile"] == ["/etc/marlids/edge.env"]
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", unit["Service"]["ExecStart"][0]))
    assert used and used <= set(env), used - set(env)
    assert env["MARLIDS_EDGE_BACKEND"] == "onnx" and env["HF_HUB_OFFLINE"] == "1"


def test_exec_start_is_a_valid_edge_run_command(unit):
    env = parse_env(ENV_FILE.read_text())
    args = expand_exec(unit["Service"]["ExecStart"][0], env)
    assert args[0] == "/opt/marlids/venv/bin/marlids" and args[1:3] == ["edge", "run"]
    assert args[args.index("--iface") + 1] == env["MARLIDS_IFACE"] and "--tls-ca" in args
    r = subprocess.run([str(MARLIDS), *args[1:], "--help"], check=False, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, shlex.join(args) + "\n" + r.stdout[-2000:] + r.stderr[-2000:]


def systemd_verify(unit_text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` of ``unit_text`` with the executable and EnvironmentFile made local."""
    (tmp_path / "edge.env").write_text(ENV_FILE.read_text())
    text = unit_text.replace("/opt/marlids/venv/bin/marlids", str(MARLIDS))
    text = text.replace("EnvironmentFile=/etc/marlids/edge.env", f"EnvironmentFile={tmp_path / 'edge.env'}")
    (tmp_path / "marlids-edge.service").write_text(text)
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "marlids-edge.service")],
                          check=False, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed; the "
                    "directive checks above still run")
def test_systemd_analyze_verify_is_clean(tmp_path):
    r = systemd_verify(UNIT.read_text(), tmp_path)
    assert r.returncode == 0 and not r.stderr.strip() and not r.stdout.strip(), r.stdout + r.stderr
    bad = systemd_verify(UNIT.read_text().replace("Restart=on-failure", "Restart=sometimes"), tmp_path)
    assert "sometimes" in bad.stderr  # the strict check above would catch a typo
