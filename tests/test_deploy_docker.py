"""deploy/docker and deploy/docker-compose.yml without a Docker engine: hadolint on every Dockerfile,
the compose file against the Compose Specification schema (vendored by check-jsonschema, with its
licence), cross-checks between compose, Dockerfiles and the CLI, and (slow) each image's pip
install steps resolved against the package index (the edge's are installed for real in
tests/test_deploy_edge_onnx.py).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "deploy" / "docker"
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """Path of a console script installed by the dev extra (fails, never skips: CI installs it)."""
    path = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert path, f"{name} is missing: install the dev extra (pip install -e '.[dev]')"
    return path


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("hadolint"), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(path)],
                          check=False, capture_output=True, text=True, timeout=60)


def stages(path: Path) -> list[dict]:
    """Per build stage: ``from`` (image), ``copies`` [(sources, dest)], ``runs`` [shell], ``entrypoint``,
    ``cmd`` (exec-form lists), ``user``."""
    from dockerfile_parse import DockerfileParser

    out: list[dict] = []
    for ins in DockerfileParser(path=str(path)).structure:
        kind, value = ins["instruction"], ins["value"]
        if kind == "FROM":
            out.append({"from": value, "copies": [], "runs": [], "entrypoint": None, "cmd": None, "user": None})
        elif kind == "COPY":
            words = [w for w in value.split() if not w.startswith("--chown")]
            if not words[0].startswith("--from"):
                out[-1]["copies"].append((words[:-1], words[-1]))
        elif kind == "RUN":
            out[-1]["runs"].append(value)
        elif kind in ("ENTRYPOINT", "CMD"):
            out[-1][kind.lower()] = yaml.safe_load(value)
        elif kind == "USER":
            out[-1]["user"] = value
    return out


def test_the_four_images_exist():
    assert {p.name for p in DOCKERFILES} == {"edge.Dockerfile", "fog.Dockerfile", "cloud.Dockerfile",
                                             "training.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    r = hadolint(dockerfile)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python\nRUN pip install numpy\nRUN cd /tmp && apt-get install curl\n")
    r = hadolint(bad)
    assert r.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3042", "DL3003"):
        assert rule in r.stdout, r.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_unprivileged_and_copy_existing_paths(dockerfile):
    final = stages(dockerfile)[-1]
    assert final["user"] and not final["user"].startswith(("0", "root")), final["user"]
    for st in stages(dockerfile):
        for sources, _ in st["copies"]:
            for s in sources:
                assert (REPO / s).exists(), f"{dockerfile.name}: COPY {s} does not exist"
                ignored = (REPO / ".dockerignore").read_text().split()
                assert s not in ignored, f"{dockerfile.name}: COPY {s} is excluded by .dockerignore"


def test_edge_image_is_multi_arch_slim_and_torch_free():
    text = (DOCKER / "edge.Dockerfile").read_text()
    assert "docker buildx build --platform linux/amd64,linux/arm64" in text
    st = stages(DOCKER / "edge.Dockerfile")
    assert st[0]["from"].startswith("--platform=$BUILDPLATFORM")  # models exported once, natively
    runtime = " ".join(st[-1]["runs"])
    assert '"./[edge]"' in runtime and "torch" not in runtime.replace("'torch', 'ray'", "")
    assert st[-1]["entrypoint"][:3] == ["marlids", "edge", "run"]
    assert "MARLIDS_EDGE_BACKEND=onnx" in text and "MARLIDS_EDGE_MODELS=/opt/marlids/models" in text


def test_training_image_is_the_pinned_ray_base():
    import tomllib

    text = (DOCKER / "training.Dockerfile").read_text()
    rl = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["rl"]
    ray_pin = next(d for d in rl if d.startswith("ray[")).split("==")[1]
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray_pin}-py311-gpu" in text


# -- compose --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
                          check=False, capture_output=True, text=True, timeout=120)


def test_compose_matches_the_compose_spec_schema(tmp_path, compose):
    r = check_compose_schema(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr
    broken = dict(compose, services={**compose["services"], "cloud": {**compose["services"]["cloud"],
                                                                      "restart": ["always"], "portz": [1]}})
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(broken))
    assert check_compose_schema(tmp_path / "bad.yml").returncode != 0


def test_compose_wires_postgres_cloud_fog_and_a_replaying_edge(compose):
    svc = compose["services"]
    assert set(svc) == {"certs", "postgres", "cloud", "fog", "edge-site-a"}
    assert svc["postgres"]["image"].startswith("postgres:")
    for name, s in svc.items():
        for dep in s.get("depends_on", {}):
            assert dep in svc, f"{name} depends on unknown {dep}"
        if "build" in s:
            assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).is_file()
    assert "@postgres:5432/" in svc["cloud"]["environment"]["DATABASE_URL"]
    assert svc["cloud"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the edge replays a bundled capture through its read-only mount ...
    edge_cmd = svc["edge-site-a"]["command"]
    pcap = edge_cmd[edge_cmd.index("--pcap") + 1]
    host, guest = svc["edge-site-a"]["volumes"][0].split(":")[:2]
    assert pcap.startswith(guest + "/") and (COMPOSE.parent / host / pcap[len(guest) + 1:]).is_file()
    # ... to the fog service on the port the fog image listens on, for a site the fog expects ...
    fog_host, fog_port = edge_cmd[edge_cmd.index("--fog") + 1].split(":")
    fog_entry = stages(DOCKER / "fog.Dockerfile")[-1]["entrypoint"]
    assert fog_host == "fog" and fog_entry[fog_entry.index("--listen") + 1].endswith(":" + fog_port)
    fog_cmd = svc["fog"]["command"]
    site = edge_cmd[edge_cmd.index("--site") + 1]
    assert site in fog_cmd[fog_cmd.index("--sites") + 1].split(",")
    # ... which posts over HTTPS to the port the cloud container serves, with the shared ingest key
    assert fog_cmd[fog_cmd.index("--cloud") + 1] == "https://cloud:" + svc["cloud"]["ports"][0].split(":")[-1]
    assert svc["fog"]["environment"]["MARLIDS_INGEST_KEY"] == svc["cloud"]["environment"]["MARLIDS_INGEST_KEY"]


@pytest.mark.parametrize("service", ["certs", "cloud", "fog", "edge-site-a"])
def test_compose_commands_parse_with_the_cli(compose, service):
    """ENTRYPOINT (the compose file's, else the image's) + compose command are valid ``marlids`` arguments
    (``--help`` is eager, unknown options still fail)."""
    s = compose["services"][service]
    entry = s.get("entrypoint") or stages(COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"])[-1][
        "entrypoint"]
    assert entry[0] == "marlids"
    args = entry[1:] + list(s.get("command", [])) + ["--help"]
    r = subprocess.run([sys.executable, "-m", "marlids", *args], check=False, capture_output=True, text=True,
                       timeout=120, cwd=REPO,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, f"marlids {shlex.join(args)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def _mounts(service: dict) -> dict[str, str]:
    """``container path → volume[:ro]`` of a compose service's named volumes."""
    out = {}
    for v in service.get("volumes", []):
        parts = v.split(":")
        out[parts[1]] = parts[0] + (":" + parts[2] if len(parts) > 2 else "")
    return out


def test_compose_is_secure_by_default(compose):
    """Issue 17: certificates from an init step, mutual TLS between edge and fog, HTTPS from the fog to the
    cloud and from the cloud to analysts, the dashboard published on loopback only, no plaintext opt-outs."""
    svc = compose["services"]
    certs = svc["certs"]
    assert certs["entrypoint"] == ["marlids", "fog", "init-certs"] and certs["restart"] == "no"
    out_dir = certs["command"][certs["command"].index("--out") + 1]
    assert _mounts(certs)[out_dir] == "certs", "init-certs writes into the certs volume"
    for name in ("cloud", "fog", "edge-site-a"):
        s = svc[name]
        assert _mounts(s)["/etc/marlids/tls"] == "certs:ro", name
        assert s["depends_on"]["certs"]["condition"] == "service_completed_successfully", name
        args = " ".join(s.get("command", []))
        assert "--insecure" not in args and "--allow-plain-http" not in args, name
    tls = "/etc/marlids/tls/"
    fog = svc["fog"]["command"]
    assert fog[fog.index("--cloud") + 1].startswith("https://") and fog[fog.index("--cloud-ca") + 1] == tls + "ca.crt"
    assert (fog[fog.index("--tls-cert") + 1], fog[fog.index("--tls-key") + 1], fog[fog.index("--tls-ca") + 1]) == \
        (tls + "fog.crt", tls + "fog.key", tls + "ca.crt"), "mutual TLS towards the edges"
    edge = svc["edge-site-a"]["command"]
    assert (edge[edge.index("--tls-ca") + 1], edge[edge.index("--tls-cert") + 1]) == (tls + "ca.crt", tls + "edge.crt")
    env = svc["cloud"]["environment"]
    assert (env["MARLIDS_CLOUD_TLS_CERT"], env["MARLIDS_CLOUD_TLS_KEY"]) == (tls + "cloud.crt", tls + "cloud.key")
    assert "https://" in " ".join(svc["cloud"]["healthcheck"]["test"]) and "ca.crt" in " ".join(
        svc["cloud"]["healthcheck"]["test"])
    for name, s in svc.items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_the_certificate_init_step_writes_what_the_services_mount(tmp_path, compose):
    """Run the init step's command here: it writes every file the compose services name."""
    certs = compose["services"]["certs"]
    args = [a if not a.startswith("/var/lib/marlids") else str(tmp_path) for a in certs["command"]]
    r = subprocess.run([sys.executable, "-m", "marlids", *certs["entrypoint"][1:], *args], check=False,
                       capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    named = {a.removeprefix("/etc/marlids/tls/") for s in compose["services"].values()
             for a in [*s.get("command", []), *s.get("environment", {}).values()] if str(a).startswith("/etc/marlids/tls/")}
    assert named and all((tmp_path / n).is_file() for n in named), named


# -- each image's install steps, resolved outside Docker --------------------------------------------------
def pip_steps(dockerfile: Path) -> list[tuple[list[tuple[list[str], str]], list[str]]]:
    """Per stage: its COPY lines and the ``pip install`` commands of its RUN lines."""
    out = []
    for st in stages(dockerfile):
        pips = [p.strip() for run in st["runs"] for p in run.split("&&") if p.strip().startswith("pip install")]
        out.append((st["copies"], pips))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("dockerfile", [DOCKER / f"{n}.Dockerfile" for n in ("fog", "cloud", "training", "edge")],
                         ids=lambda p: p.name)
def test_install_steps_resolve(dockerfile, tmp_path):
    """Each stage's pip commands, run with ``--dry-run --ignore-installed`` in a copy of what the stage
    COPYs: the requirements resolve for Python 3.11 and the project builds from only those files."""
    for i, (copies, pips) in enumerate(pip_steps(dockerfile)):
        src = tmp_path / f"stage{i}"
        src.mkdir()
        for sources, dst in copies:
            for s in sources:
                target = src / dst / Path(s).name if dst.endswith("/") or len(sources) > 1 else src / dst
                (shutil.copytree if (REPO / s).is_dir() else shutil.copyfile)(REPO / s, target)
        for cmd in pips:
            args = shlex.split(cmd)[2:]
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                                "--quiet", *[a for a in args if a != "--no-cache-dir"]],
                               check=False, cwd=src, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, f"{dockerfile.name} stage {i}: {cmd}\n{r.stderr[-3000:]}"
