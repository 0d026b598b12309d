"""TLS and mutual TLS for the edge → fog gRPC stream, and the explicit plaintext opt-out.

Server (fog): ``--tls-cert``/``--tls-key`` are its certificate chain and key (PEM); with ``--tls-ca``
it also *requires* a client certificate signed by that CA (mTLS) and rejects clients without one.
Client (edge): ``--tls-ca`` is the CA that signed the fog's certificate (its name must match the host
in ``--fog``); ``--tls-cert``/``--tls-key`` are the edge's own certificate for mTLS.
Plaintext needs ``--insecure`` and logs a warning: observations then travel unencrypted and any
process that reaches the port can inject them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INSECURE_WARNING = ("plaintext gRPC (--insecure): observations travel unencrypted and unauthenticated; "
                    "use --tls-cert/--tls-key/--tls-ca outside a test bench")


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one side of the stream.

    Attributes
    ----------
    cert, key : Path or None
        This side's certificate chain and private key (server: required; client: for mTLS).
    ca : Path or None
        CA bundle that verifies the other side (server: enables mTLS; client: required).
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def read(self) -> tuple[bytes | None, bytes | None, bytes | None]:
        """Contents of ``(cert, key, ca)`` (None where unset).

        Raises
        ------
        FileNotFoundError, PermissionError
            Naming the option whose file cannot be read.
        """
        out = []
        for opt, p in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-ca", self.ca)):
            if p is None:
                out.append(None)
                continue
            try:
                out.append(Path(p).read_bytes())
            except FileNotFoundError:
                raise FileNotFoundError(f"{opt} {p}: no such file") from None
            except PermissionError:
                raise PermissionError(f"{opt} {p}: permission denied") from None
        return out[0], out[1], out[2]


def resolve_security(*, role: str, cert: Path | None, key: Path | None, ca: Path | None,
                     insecure: bool) -> TlsFiles | None:
    """Check the TLS options of one side; ``None`` means plaintext (after a logged warning).

    Parameters
    ----------
    role : {"server", "client"}
    cert, key, ca : Path or None
        ``--tls-cert``, ``--tls-key``, ``--tls-ca``.
    insecure : bool
        ``--insecure``.

    Raises
    ------
    ValueError
        For a missing or contradictory combination (one line naming the options).
    """
    if role not in ("server", "client"):
        raise ValueError(f"role must be 'server' or 'client', got {role!r}")
    given = any(p is not None for p in (cert, key, ca))
    if insecure:
        if given:
            raise ValueError("--insecure contradicts --tls-cert/--tls-key/--tls-ca: choose one")
        log.warning(INSECURE_WARNING)
        return None
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together (certificate chain and its private key)")
    if role == "server" and cert is None:
        raise ValueError("the fog needs --tls-cert and --tls-key (add --tls-ca to require client certificates), "
                         "or --insecure for plaintext")
    if role == "client" and ca is None:
        raise ValueError("the edge needs --tls-ca (the CA of the fog's certificate; add --tls-cert/--tls-key "
                         "for mTLS), or --insecure for plaintext")
    tls = TlsFiles(cert, key, ca)
    tls.read()  # fail early, naming the unreadable file
    return tls


def server_credentials(tls: TlsFiles):
    """gRPC server credentials; a CA makes client certificates mandatory (mTLS)."""
    import grpc

    cert, key, ca = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(tls: TlsFiles):
    """gRPC channel credentials verifying the server with ``tls.ca`` (and presenting ``cert`` if set)."""
    import grpc

    cert, key, ca = tls.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def parse_hostport(value: str, option: str) -> tuple[str, int]:
    """``"host:port"`` (``[v6]:port`` for IPv6) → ``(host, port)``.

    Raises
    ------
    ValueError
        Naming ``option`` when the value is not HOST:PORT with a port in 0–65535.
    """
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} {value!r} is invalid: expected HOST:PORT, e.g. 127.0.0.1:50051")
    return host, int(port)


#: Files :func:`make_pki` writes (keys 0600), and what each is for.
PKI_FILES = {"ca.crt": "the CA every side trusts", "ca.key": "the CA's key (keep it offline to issue more)",
             "fog.crt": "fog gRPC server", "fog.key": "its key", "cloud.crt": "cloud HTTPS server",
             "cloud.key": "its key", "edge.crt": "edge client (mTLS to the fog)", "edge.key": "its key"}


def make_pki(out: str | Path, *, fog_names: list[str], cloud_names: list[str], edge_name: str = "edge",
             days: int = 825) -> dict[str, Path]:
    """A private CA and the certificates of a deployment (:data:`PKI_FILES`): the fog's gRPC server
    certificate, the cloud's HTTPS certificate and an edge client certificate for mTLS. ECDSA P-256,
    SHA-256, ``days`` of validity; every server certificate also names ``localhost`` and 127.0.0.1 (the
    containers' own health checks). Keys are written 0600. Idempotent: when ``ca.crt`` exists nothing is
    written (delete the folder to issue anew).

    Parameters
    ----------
    out : str or Path
        Folder (created 0700 when missing).
    fog_names, cloud_names : list of str
        DNS names (or IP addresses) the edges use for the fog and the fog uses for the cloud.
    edge_name : str
        Common name of the edge certificate.
    days : int
        Validity, 1 … 3650 days.

    Returns
    -------
    dict
        File name → path.

    Raises
    ------
    ValueError
        For empty name lists or ``days`` out of range.
    """
    import datetime as dt
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not fog_names or not cloud_names:
        raise ValueError(f"fog_names={fog_names!r} and cloud_names={cloud_names!r}: give at least one name each")
    if not 1 <= days <= 3650:
        raise ValueError(f"days={days!r}: allowed 1 … 3650")
    folder = Path(out)
    paths = {name: folder / name for name in PKI_FILES}
    if paths["ca.crt"].exists():
        log.info("%s already holds a CA; nothing written", folder)
        return paths
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    now = dt.datetime.now(dt.UTC)

    def write_key(name: str, key) -> None:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
        fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)

    def issue(subject: str, key, issuer, issuer_key, *, ca: bool = False, names: list[str] = (),
              usage=None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
        if ca:
            b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                              content_commitment=False, key_encipherment=False,
                                              data_encipherment=False, key_agreement=False, encipher_only=False,
                                              decipher_only=False), critical=True)
        if names:
            alt = []
            for n in dict.fromkeys([*names, "localhost", "127.0.0.1"]):
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(n)))
                except ValueError:
                    alt.append(x509.DNSName(n))
            b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        if usage is not None:
            b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "marlids deployment CA")])
    ca_cert = issue("marlids deployment CA", ca_key, ca_name, ca_key, ca=True)
    write_key("ca.key", ca_key)
    for who, names, usage in (("fog", fog_names, ExtendedKeyUsageOID.SERVER_AUTH),
                              ("cloud", cloud_names, ExtendedKeyUsageOID.SERVER_AUTH),
                              ("edge", [], ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(names[0] if names else edge_name, key, ca_name, ca_key, names=list(names), usage=usage)
        write_key(f"{who}.key", key)
        paths[f"{who}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["ca.crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))  # last: marks completion
    log.info("wrote a CA and the fog, cloud and edge certificates to %s (valid %d days)", folder, days)
    return paths
