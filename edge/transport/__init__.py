"""Edge → fog transport: the protobuf wire contract (``observation.proto`` and its generated modules),
message conversion (:mod:`edge.transport.wire`), the bounded on-disk buffer
(:mod:`edge.transport.buffer`) and TLS settings (:mod:`edge.transport.tls`)."""
