"""Edge → fog transport: the protobuf wire contract (``observation.proto`` and its generated modules),
message conversion (:mod:`edge.transport.wire`), the bounded on-disk buffer
(:mod:`edge.transport.buffer`) and TLS settings (:mod:`edge.transport.tls`)."""

import os

# The edge forks NFStream's metering processes while gRPC threads run; those children never use gRPC, so
# gRPC's fork handlers are not needed (they would only log "skipping fork() handlers" on every fork).
# Read once, when gRPC initialises: every gRPC user in marlids imports this package first.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
