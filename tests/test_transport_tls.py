"""TLS / mTLS on the edge → fog stream with certificates generated here (``cryptography``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.daemon import EdgeConfig, EdgeDaemon
from edge.transport.tls import TlsFiles, channel_credentials
from edge.transport.wire import hello_message, raw_stream_callable
from fog.server import FogConfig, FogServer
from tests.transport_support import CAPTURES, KEY, bundled_windows, make_policy, port_is_free, shared_embedder


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key, issuer_cert, issuer_key, *, ca: bool = False, server: bool = False):
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def _write(directory: Path, name: str, cert, key) -> tuple[Path, Path]:
    c, k = directory / f"{name}.crt", directory / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a fog certificate (localhost, 127.0.0.1), an edge certificate, and an edge certificate of
    another CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, rogue_key = _key(), _key()
    ca = _cert("marlids test CA", ca_key, None, None, ca=True)
    rogue = _cert("rogue CA", rogue_key, None, None, ca=True)
    out = {"ca": _write(d, "ca", ca, ca_key)[0]}
    k = _key()
    out["server_crt"], out["server_key"] = _write(d, "fog", _cert("fog", k, ca, ca_key, server=True), k)
    k = _key()
    out["client_crt"], out["client_key"] = _write(d, "edge", _cert("edge-site_a", k, ca, ca_key), k)
    k = _key()
    out["rogue_crt"], out["rogue_key"] = _write(d, "rogue", _cert("edge-rogue", k, rogue, rogue_key), k)
    return out


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    return make_policy(tmp_path_factory.mktemp("policy"), bundled_windows("site_b"))


def _fog(tmp_path: Path, policy: Path, tls: TlsFiles) -> FogServer:
    return FogServer(FogConfig(listen="127.0.0.1:0", policy_dir=policy, cloud_url="http://127.0.0.1:9",
                               ingest_key=KEY, sites=1, outbox_path=tmp_path / "outbox.sqlite", tls=tls,
                               drain_s=0)).start()


def _first_ack(port: int, creds) -> int:
    """Open a stream, send a Hello, return the fog's first Ack (raises grpc.RpcError when refused)."""
    channel = grpc.insecure_channel(f"localhost:{port}") if creds is None else \
        grpc.secure_channel(f"localhost:{port}", creds)
    hello = hello_message(site_id="site_b", edge_id="tls-test", window_s=5.0, grace_s=60.0).SerializeToString()
    try:
        call = raw_stream_callable(channel)(iter([hello]), timeout=10)
        return next(iter(call)).ack_seq
    finally:
        channel.close()


def test_mtls_accepts_a_client_certificate_and_rejects_the_others(tmp_path, pki, policy):
    fog = _fog(tmp_path, policy, TlsFiles(pki["server_crt"], pki["server_key"], pki["ca"]))
    try:
        good = channel_credentials(TlsFiles(pki["client_crt"], pki["client_key"], pki["ca"]))
        assert _first_ack(fog.port, good) == 0
        for creds, who in ((channel_credentials(TlsFiles(None, None, pki["ca"])), "no client certificate"),
                           (channel_credentials(TlsFiles(pki["rogue_crt"], pki["rogue_key"], pki["ca"])),
                            "a certificate of another CA"),
                           (None, "plaintext")):
            with pytest.raises(grpc.RpcError) as exc:
                _first_ack(fog.port, creds)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE, who
        # a client that does not trust the fog's CA refuses the fog
        with pytest.raises(grpc.RpcError):
            _first_ack(fog.port, channel_credentials(TlsFiles(pki["client_crt"], pki["client_key"],
                                                              pki["rogue_crt"])))
        assert fog.coordinator.stats()["sites"] == ["site_b"], "only the authenticated client got through"
    finally:
        fog.stop()
    assert port_is_free(fog.port)


def test_server_tls_without_client_certificates(tmp_path, pki, policy):
    fog = _fog(tmp_path, policy, TlsFiles(pki["server_crt"], pki["server_key"], None))
    try:
        assert _first_ack(fog.port, channel_credentials(TlsFiles(None, None, pki["ca"]))) == 0
        with pytest.raises(grpc.RpcError):
            _first_ack(fog.port, None)
    finally:
        fog.stop()


def test_edge_daemon_streams_over_mtls(tmp_path, pki, policy):
    fog = _fog(tmp_path, policy, TlsFiles(pki["server_crt"], pki["server_key"], pki["ca"]))
    edge = EdgeDaemon(EdgeConfig(site_id="site_b", fog=f"localhost:{fog.port}", pcap=CAPTURES / "site_b.pcap",
                                 replay_speed=0, fusion_dir=policy, buffer_path=tmp_path / "edge.sqlite",
                                 baseline_path=tmp_path / "edge.baseline.json", tls=TlsFiles(pki["client_crt"], pki["client_key"], pki["ca"])),
                      embedder=shared_embedder())
    try:
        edge.start()
        assert edge.wait(timeout=120)
        st = fog.coordinator.stats()
        assert st["decisions"] + st["grace_observations"] == len(bundled_windows("site_b")) and st["decisions"] > 100
    finally:
        edge.stop()
        fog.stop()


def test_fog_serve_refuses_plaintext_unless_asked(tmp_path):
    import subprocess
    import sys

    marlids = str(Path(sys.executable).with_name("marlids"))
    r = subprocess.run([marlids, "fog", "serve", "--cloud", "http://127.0.0.1:9", "--ingest-key", KEY, "--sites", "1"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 2 and "the fog needs --tls-cert and --tls-key" in r.stderr and "--insecure" in r.stderr
