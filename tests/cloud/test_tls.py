"""Secure by default (issue 17), cloud side: HTTPS from ``--tls-cert/--tls-key`` (certificates from
``marlids fog init-certs``), a warning when bound off loopback without TLS, the fog posting over HTTPS to
a private CA, the database created 0600."""

from __future__ import annotations

import logging
import stat
import time

import httpx
import pytest

from tests.cloud.conftest import cloud_settings, fog_alert


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from edge.transport.tls import make_pki

    return make_pki(tmp_path_factory.mktemp("pki"), fog_names=["fog"], cloud_names=["cloud"], days=2)


def test_init_certs_writes_private_keys_and_is_idempotent(pki, tmp_path):
    from cryptography import x509

    for name, path in pki.items():
        if name.endswith(".key"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    cert = x509.load_pem_x509_certificate(pki["cloud.crt"].read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"cloud", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    before = pki["ca.crt"].read_bytes()
    from edge.transport.tls import make_pki

    make_pki(pki["ca.crt"].parent, fog_names=["x"], cloud_names=["y"])
    assert pki["ca.crt"].read_bytes() == before


def test_the_api_serves_https_and_the_fog_posts_to_it_with_the_private_ca(tmp_path, pki, caplog):
    from cloud.api.main import BackgroundServer
    from fog.outbox import AlertOutbox, CloudPoster

    settings = cloud_settings(tmp_path / "cloud.db", port=0, bootstrap_keys_file=tmp_path / "keys.json",
                              tls_cert=pki["cloud.crt"], tls_key=pki["cloud.key"], explain=False)
    with caplog.at_level(logging.WARNING, logger="cloud.api.main"), BackgroundServer(settings) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        assert httpx.get(f"{srv.url}/healthz", verify=str(pki["ca.crt"])).json()["status"] == "ok"
        with pytest.raises(httpx.ConnectError):  # not trusted without the private CA
            httpx.get(f"{srv.url}/healthz")
        r = httpx.post(f"{srv.url}/dashboard/session", data={"key": srv.keys["analyst"]}, verify=str(pki["ca.crt"]))
        assert "; secure" in r.headers["set-cookie"].lower(), "the session cookie is Secure over HTTPS"
        box = AlertOutbox(tmp_path / "outbox.sqlite")
        box.commit([fog_alert(alert_id="a" * 32)], {})
        poster = CloudPoster(box, srv.url, srv.keys["ingest"], cloud_ca=pki["ca.crt"]).start()
        deadline = time.monotonic() + 20
        while box.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        poster.stop()
        assert box.pending == 0 and poster.posted == 1
        box.close()
    assert "without TLS" not in caplog.text


@pytest.mark.parametrize(("host", "tls", "warned"), [("0.0.0.0", False, True), ("10.1.2.3", False, True),
                                                     ("127.0.0.1", False, False), ("::1", False, False),
                                                     ("localhost", False, False), ("0.0.0.0", True, False)])
def test_a_warning_when_bound_off_loopback_without_tls(tmp_path, pki, caplog, host, tls, warned):
    from cloud.api.main import warn_if_exposed

    extra = {"tls_cert": pki["cloud.crt"], "tls_key": pki["cloud.key"]} if tls else {}
    with caplog.at_level(logging.WARNING, logger="cloud.api.main"):
        assert warn_if_exposed(cloud_settings(tmp_path / "c.db", host=host, **extra)) is warned
    assert ("without TLS" in caplog.text) is warned


def test_tls_settings_come_in_pairs(tmp_path, pki):
    with pytest.raises(ValueError, match="give both"):
        cloud_settings(tmp_path / "c.db", tls_cert=pki["cloud.crt"])


def test_the_database_file_is_private(tmp_path):
    from cloud.core.db import make_engine, run_migrations

    engine = make_engine(f"sqlite:///{tmp_path / 'sub' / 'cloud.db'}")
    run_migrations(engine)
    engine.dispose()
    files = list((tmp_path / "sub").iterdir())
    assert files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), \
        [(p.name, oct(p.stat().st_mode)) for p in files]
