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
