"""Settings objects, the CLI options generated from them, and ``--config FILE`` (TOML) of the components' commands.

Issue "Architecture" item 4 (one settings object per component, no default written twice, one module of paths)
and issue "Analyst experience" item 7 (``--config`` for edge run / fog serve / cloud serve, flags override it,
an example per component in ``deploy/config``).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from cloud.core.config import Settings
from edge import paths
from edge.config import EdgeConfig
from edge.settings import cli_fields
from fog.config import FogConfig
from marlids.cli import app
from training.mappo.config import MappoArgs

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

COMMANDS = [(("edge", "run"), EdgeConfig, {}),
            (("fog", "serve"), FogConfig, {}),
            (("cloud", "serve"), Settings, {"exclude": ("database_url",),
                                            "flags": {"bootstrap_keys_file": "--bootstrap-keys",
                                                      "cors_origins": "--cors-origin"}}),
            (("train", "mappo"), MappoArgs, {})]


def _command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for name in path:  # get_command, not .commands: the root group builds `cloud` when it is first asked for
        cmd = cmd.get_command(typer.Context(cmd), name)
    return cmd


@pytest.mark.parametrize(("path", "cls", "kw"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_options_are_generated_from_the_settings_fields(path, cls, kw):
    """Every settings field marked for the CLI is an option whose default is the field's own (written once)."""
    cmd = _command(path)
    params = {p.name: p for p in cmd.params}
    fields = cli_fields(cls, **kw)
    assert fields, f"{cls.__name__}: no CLI fields"
    for f in fields:
        assert f.name in params, f"{' '.join(path)}: no option for {cls.__name__}.{f.name}"
        p = params[f.name]
        assert f.decl.split("/")[0] in p.opts
        if not f.required:
            default = p.default if not isinstance(p.default, tuple) else list(p.default)
            assert default == f.default or (default in (None, []) and f.default in (None, [])), f.name
    assert "config" in params


def test_mappo_defaults_are_written_once():
    """``training/cli.py`` no longer re-types MappoArgs' defaults: the command has no option of its own."""
    src = (REPO / "training" / "cli.py").read_text()
    body = src[src.index("def mappo("):src.index('@app.command("eval")')]
    assert "typer.Option" not in body
    assert {f.name for f in cli_fields(MappoArgs)} >= {"iterations", "seed", "grace_s", "num_env_runners", "lr"}


def test_bundled_paths_are_named_in_one_module():
    """Outside edge/paths.py no project module derives the repository root from its own file location."""
    offenders = []
    for pkg in ("edge", "fog", "cloud", "training", "experiments", "marlids"):
        for p in (REPO / pkg).rglob("*.py"):
            if p == REPO / "edge" / "paths.py":
                continue
            text = p.read_text(encoding="utf-8")
            for m in re.finditer(r"parents\[\d\]\s*/\s*\"(models|data|results|shared)\"|\"models\"\s*/\s*\"defender\"",
                                 text):
                offenders.append(f"{p.relative_to(REPO)}: {m.group(0)}")
    assert not offenders, offenders
    assert paths.BUNDLED_POLICY == REPO / "models" / "defender"
    assert (paths.BUNDLED_POLICY / "fusion.json").is_file()
    assert paths.BUNDLED_CAPTURES.is_dir()


@pytest.fixture
def edge_run_capture(monkeypatch):
    """Replace the daemon by a recorder of the EdgeConfig it would run with."""
    import edge.daemon

    seen = {}

    def fake_run_edge(cfg, drain_timeout_s=None, on_progress=None):
        seen["cfg"], seen["drain_timeout_s"] = cfg, drain_timeout_s
        return SimpleNamespace(slots=0, observations=0, buffered=0, dropped=0, reconnects=0)

    monkeypatch.setattr(edge.daemon, "run_edge", fake_run_edge)
    return seen


def test_edge_run_reads_a_config_file_and_flags_override_it(tmp_path, edge_run_capture):
    cap = tmp_path / "c.pcap"
    cap.write_bytes(b"")
    conf = tmp_path / "edge.toml"
    conf.write_text(f'site = "lab_1"\nfog = "127.0.0.1:50051"\npcap = "{cap}"\nreplay-speed = 10\n'
                    'buffer_max = 77\ninsecure = true\ndrain-timeout = 3.5\nreset-baseline = true\n')
    res = runner.invoke(app, ["edge", "run", "--config", str(conf), "--replay-speed", "2"])
    assert res.exit_code == 0, res.output
    cfg = edge_run_capture["cfg"]
    assert cfg.site_id == "lab_1" and cfg.fog == "127.0.0.1:50051"
    assert cfg.pcap == cap and isinstance(cfg.pcap, Path)
    assert cfg.replay_speed == 2.0  # the flag wins over the file's 10
    assert cfg.buffer_capacity == 77 and cfg.reset_baseline is True
    assert cfg.tls is None and edge_run_capture["drain_timeout_s"] == 3.5  # the command's own options too
    assert cfg.window_s == EdgeConfig.__dataclass_fields__["window_s"].default  # not given: the field's default


def test_edge_run_without_config_keeps_the_dataclass_defaults(edge_run_capture, tmp_path):
    res = runner.invoke(app, ["edge", "run", "--site", "s", "--fog", "h:1", "--pcap", str(tmp_path / "x.pcap"),
                              "--insecure"])
    assert res.exit_code == 0, res.output
    cfg = edge_run_capture["cfg"]
    defaults = EdgeConfig(site_id="s", fog="h:1", pcap=tmp_path / "x.pcap")
    for f in dataclasses.fields(EdgeConfig):
        if f.name not in ("tls", "backend"):
            assert getattr(cfg, f.name) == getattr(defaults, f.name), f.name


@pytest.mark.parametrize(("text", "message"), [
    ('site = "s"\nfog = "h:1"\nreplay_sped = 3\n', "unknown key(s) 'replay_sped'"),
    ('site = "s"\nfog = "h:1"\nwindow = "five"\n', "Invalid value for '--window'"),
    ('site = "s"\nfog = "h:1"\nbuffer-max = 0\n', "Invalid value for '--buffer-max'"),
    ('fog = "h:1"\n', "required: give --site"),
    ('site = "s"\nfog = \n', "not valid TOML"),
])
def test_edge_run_config_errors_name_the_key(tmp_path, edge_run_capture, text, message):
    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    res = runner.invoke(app, ["edge", "run", "--config", str(conf), "--pcap", "x.pcap", "--insecure"])
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.replace("│", " ").split()), res.output
    assert "cfg" not in edge_run_capture


def test_fog_serve_config_and_envvar_precedence(tmp_path, monkeypatch):
    import fog.server

    seen = {}

    def fake_serve(cfg, on_started=None):
        seen["cfg"] = cfg
        return {"ticks_closed": 0, "decisions": 0, "alerts": 0, "late_observations": 0, "outbox_pending": 0}

    monkeypatch.setattr(fog.server, "serve_fog", fake_serve)
    monkeypatch.setenv("MARLIDS_INGEST_KEY", "k" * 32)
    monkeypatch.setenv("MARLIDS_CLOUD_URL", "http://127.0.0.1:9")
    conf = tmp_path / "fog.toml"
    conf.write_text('cloud = "http://127.0.0.1:8080"\nsites = "a,b"\ntick-timeout = 2\ninsecure = true\n')
    res = runner.invoke(app, ["fog", "serve", "--config", str(conf)])
    assert res.exit_code == 0, res.output
    cfg = seen["cfg"]
    assert cfg.sites == ("a", "b") and cfg.tick_timeout_s == 2.0
    assert cfg.cloud_url == "http://127.0.0.1:9"  # the flag's environment variable wins over the file
    assert cfg.ingest_key == "k" * 32 and cfg.listen == FogConfig.__dataclass_fields__["listen"].default


def test_cloud_serve_config_file(tmp_path, monkeypatch):
    import cloud.api.main

    seen = {}
    monkeypatch.setattr(cloud.api.main, "serve", lambda settings, log_level="info": seen.update(s=settings))
    monkeypatch.delenv("MARLIDS_CLOUD_PORT", raising=False)
    conf = tmp_path / "cloud.toml"
    conf.write_text(f'port = 9100\nexplain = false\ncors-origin = ["https://a.example"]\ndb = "{tmp_path / "x.db"}"\n'
                    'llm-timeout-s = 4.5\n')
    res = runner.invoke(app, ["cloud", "serve", "--config", str(conf), "--host", "127.0.0.2"])
    assert res.exit_code == 0, res.output
    s = seen["s"]
    assert (s.port, s.explain, s.cors_origins, s.host, s.llm_timeout_s) == (9100, False, ["https://a.example"],
                                                                              "127.0.0.2", 4.5)
    assert s.database_url == f"sqlite:///{(tmp_path / 'x.db').resolve()}"
    monkeypatch.setenv("MARLIDS_CLOUD_PORT", "9200")  # the settings' own environment variable beats the file
    assert runner.invoke(app, ["cloud", "serve", "--config", str(conf)]).exit_code == 0
    assert seen["s"].port == 9200


def test_train_mappo_builds_mappo_args(tmp_path, monkeypatch):
    import training.mappo.train

    seen = {}

    def fake_train(args, on_iteration=None):
        seen["args"] = args
        return {"run_dir": "r", "checkpoint": "c", "policy_dir": "p"}

    monkeypatch.setattr(training.mappo.train, "train", fake_train)
    conf = tmp_path / "train.toml"
    conf.write_text('iterations = 2\ndata = ["a.pcap", "b.parquet"]\ncentralized-critic = false\ngrace = 20\n')
    res = runner.invoke(app, ["train", "mappo", "--config", str(conf), "--seed", "3"])
    assert res.exit_code == 0, res.output
    a = seen["args"]
    assert (a.iterations, a.seed, a.data, a.centralized_critic, a.grace_s) == (2, 3, ["a.pcap", "b.parquet"], False, 20.0)
    assert a.lr == MappoArgs().lr and a.out_dir == "runs"


@pytest.mark.parametrize("component", ["edge", "fog", "cloud"])
def test_deploy_example_configs_load(component, monkeypatch, tmp_path):
    """Each example in deploy/config is accepted by its command (files it names need not exist here)."""
    import cloud.api.main
    import edge.daemon
    import edge.transport.tls
    import fog.server

    seen = {}
    monkeypatch.setattr(edge.daemon, "run_edge", lambda cfg, **kw: seen.update(cfg=cfg) or SimpleNamespace(
        slots=0, observations=0, buffered=0, dropped=0, reconnects=0))
    monkeypatch.setattr(fog.server, "serve_fog", lambda cfg, **kw: seen.update(cfg=cfg) or {
        "ticks_closed": 0, "decisions": 0, "alerts": 0, "late_observations": 0, "outbox_pending": 0})
    monkeypatch.setattr(cloud.api.main, "serve", lambda settings, log_level="info": seen.update(cfg=settings))
    monkeypatch.setattr(edge.transport.tls, "resolve_security", lambda **kw: None)
    monkeypatch.setenv("MARLIDS_INGEST_KEY", "k" * 32)
    text = (REPO / "deploy" / "config" / f"{component}.toml").read_text()
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in re.findall(r"/etc/marlids/pki/([\w.]+)", text):
        (pki / name).write_text("-----BEGIN CERTIFICATE-----\n")  # where the example expects files to exist
    conf = tmp_path / f"{component}.toml"
    conf.write_text(text.replace("/etc/marlids/pki/", f"{pki}/").replace("/var/lib/marlids/", f"{tmp_path}/"))
    args = {"edge": ["edge", "run"], "fog": ["fog", "serve"], "cloud": ["cloud", "serve"]}[component]
    res = runner.invoke(app, [*args, "--config", str(conf)])
    assert res.exit_code == 0, res.output
    assert seen["cfg"] is not None
