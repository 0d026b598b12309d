"""``marlids cloud …`` commands: keys, migrate, export, ATT&CK table; user errors are one line, exit 2."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from marlids.cli import app, main
from tests.cloud.conftest import fog_alert
from tests.conftest import SHARED_DATA

runner = CliRunner()


def run(*args: str):
    result = runner.invoke(app, ["cloud", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_root_help_lists_the_cloud_group():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "cloud" in result.output and "analyst API" in result.output
    assert "serve" in runner.invoke(app, ["cloud", "--help"]).output


def test_key_lifecycle_and_export(tmp_path, make_api):
    db = tmp_path / "cli.db"
    run("migrate", "--db", str(db))
    key = run("create-key", "--role", "analyst", "--name", "alice", "--db", str(db)).stdout.strip().splitlines()[-1]
    assert key.startswith("mk_") and len(key) > 40
    listing = run("list-keys", "--db", str(db)).stdout
    assert "alice" in listing and "analyst" in listing and key not in listing
    # the key works against a service on that database
    api = make_api(database_url=f"sqlite:///{db}")
    assert api.client.get("/api/v1/alerts", headers={"X-API-Key": key}).status_code == 200
    api.post(fog_alert())
    api.wait_explained()
    ecs = tmp_path / "alerts.ndjson"
    run("export", "--format", "ecs", "--out", str(ecs), "--db", str(db))
    (doc,) = [json.loads(line) for line in ecs.read_text().splitlines()]
    assert doc["threat"]["technique"]["id"] == ["T1046"] and doc["marlids"]["explanation_source"] == "builtin"
    bundle = json.loads(run("export", "--format", "stix", "--db", str(db)).stdout)
    assert [o["type"] for o in bundle["objects"]].count("sighting") == 1
    run("revoke-key", "1", "--db", str(db))
    assert api.client.get("/api/v1/alerts", headers={"X-API-Key": key}).status_code == 401


@pytest.mark.parametrize(("args", "message"), [
    (["create-key", "--role", "root"], "role='root'; allowed: ingest, analyst"),
    (["create-key", "--role", "ingest", "--key", "tooshort"], "24–256 characters"),
    (["revoke-key", "42"], "no API key with id 42"),
])
def test_user_errors_are_one_line(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.setattr(sys, "argv", ["marlids", "cloud", *args, "--db", str(tmp_path / "e.db")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("marlids: error:") and message in err and "\n" not in err


def test_bad_export_format(tmp_path):
    result = runner.invoke(app, ["cloud", "export", "--format", "csv", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2 and "allowed: ecs, stix" in result.output


@pytest.mark.needs_shared
def test_build_attack_table_command(tmp_path):
    source = SHARED_DATA / "attack"
    if not (source / "ics-attack.json").is_file():
        pytest.skip(f"ATT&CK STIX data not found at {source} (../shared/data is absent)")
    out = tmp_path / "t.json"
    run("build-attack-table", "--source", str(source), "--out", str(out))
    assert json.loads(out.read_text())["techniques"]["T1046"]["name"] == "Network Service Discovery"
    assert (tmp_path / "LICENSE.txt").is_file()
