"""Conversions between numpy Observations and the protobuf messages of ``observation.proto``.

The gRPC method is called through a raw (bytes in, :class:`Ack` out) stub so the edge can send the
serialized messages of its buffer without parsing them again.
"""

from __future__ import annotations

import numpy as np

from edge.features import FEATURE_NAMES
from edge.observation import OBS_DIM
from edge.transport import observation_pb2 as pb

#: Full name of the streaming method (``package.Service/Method``).
STREAM_METHOD = "/marlids.v1.FogIngest/Stream"
#: Keepalive settings of the edge's channel: a dead fog is noticed within ~15 s even without traffic.
CHANNEL_OPTIONS = [("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000),
                   ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
                   ("grpc.max_receive_message_length", 4 * 1024 * 1024)]


def hello_message(*, site_id: str, edge_id: str, window_s: float, grace_s: float = 0.0) -> pb.EdgeMessage:
    """The stream header (``Hello``) of one edge daemon; ``software_version`` is the installed distribution's
    version (``importlib.metadata``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        software = version("marlids")
    except PackageNotFoundError:  # a source tree on sys.path without an install
        software = "unknown"
    h = pb.Hello(site_id=site_id, edge_id=edge_id, obs_dim=OBS_DIM, window_s=float(window_s),
                 feature_names=list(FEATURE_NAMES), software_version=software, grace_s=float(grace_s))
    return pb.EdgeMessage(hello=h)


def observation_messages(batch) -> list[pb.EdgeMessage]:
    """One ``EdgeMessage(observation=…)`` per row of an :class:`edge.online.ObservationBatch` (seq unset).

    Windows of the grace period (``batch.learning``) carry only their key, raw statistics and text, with
    ``learning = true``.
    """
    out = []
    for i in range(len(batch)):
        o = pb.Observation(site_id=str(batch.site_id), device_id=str(batch.device_id[i]),
                           t_start=float(batch.t_start[i]), t_end=float(batch.t_end[i]),
                           proto_text=str(batch.proto_text[i]))
        o.features.extend(batch.x[i].tolist())
        if batch.learning[i]:
            o.learning = True
            out.append(pb.EdgeMessage(observation=o))
            continue
        o.vector.extend(batch.vectors[i].tolist())
        o.features_z.extend(batch.z[i].tolist())
        o.baseline.extend(np.asarray(batch.baseline[i], dtype=np.float32).tolist())
        o.baseline_spread.extend(np.asarray(batch.spread[i], dtype=np.float32).tolist())
        o.baseline_scope = str(batch.scope[i])
        if batch.top_peers is not None:
            for p in batch.top_peers[i]:
                o.peers.add(address=str(p["address"]), port=int(p["port"]), direction=str(p["direction"]),
                            packets=max(0, int(p["packets"])), bytes=max(0, int(p["bytes"])),
                            ports=max(0, int(p.get("ports", 0))))
        s = batch.scores[i]
        if not np.isnan(s):
            o.anomaly_score = float(s)
            o.score_available = True
            if batch.attention is not None:
                o.attention.extend(batch.attention[i].tolist())
                o.attention_t.extend(batch.attention_t[i].tolist())
        out.append(pb.EdgeMessage(observation=o))
    return out


def watermark_message(site_id: str, t_end: float, n_observations: int, progress: dict | None = None) -> pb.EdgeMessage:
    """``EdgeMessage(watermark=…)``: every window of the site ending at or before ``t_end`` was sent.

    ``progress`` is :meth:`edge.online.SiteFusion.progress` (the site's baseline state).
    """
    w = pb.Watermark(site_id=site_id, t_end=float(t_end), n_observations=int(n_observations))
    if progress:
        w.learning = progress.get("state") == "learning"
        w.grace_elapsed_s = float(progress.get("grace_elapsed_s") or 0.0)
        w.grace_s = float(progress.get("grace_s") or 0.0)
        w.grace_windows = int(progress.get("grace_windows") or 0)
        w.devices_own = int(progress.get("devices_own") or 0)
    return pb.EdgeMessage(watermark=w)


def observation_arrays(o: pb.Observation) -> dict:
    """The numeric parts of a received Observation as numpy arrays.

    Returns
    -------
    dict
        ``learning`` (bool), ``vector (OBS_DIM,) float32, features (F,) float32, features_z (F,) float32,
        baseline (F,), baseline_spread (F,), attention (T,) float32 or None, attention_t (T,) float64 or
        None``; a learning observation has only ``features`` (the rest are None).

    Raises
    ------
    ValueError
        If the lengths do not match this version's layout, or a number is not finite.
    """
    f = len(FEATURE_NAMES)
    x = np.asarray(o.features, dtype=np.float32)
    where = f"observation {o.site_id}/{o.device_id}@{o.t_start}"
    if x.shape != (f,):
        raise ValueError(f"{where}: {x.size} features, expected {f}")
    if not np.isfinite(x).all():
        raise ValueError(f"{where}: features hold NaN or infinite values")
    if o.learning:
        return {"learning": True, "vector": None, "features": x, "features_z": None, "baseline": None,
                "baseline_spread": None, "attention": None, "attention_t": None}
    v = np.asarray(o.vector, dtype=np.float32)
    if v.shape != (OBS_DIM,):
        raise ValueError(f"{where}: vector has {v.size} values, expected {OBS_DIM}")
    z = np.asarray(o.features_z, dtype=np.float32)
    base = np.asarray(o.baseline, dtype=np.float64)
    spread = np.asarray(o.baseline_spread, dtype=np.float64)
    if z.shape != (f,) or base.shape != (f,) or spread.shape != (f,):
        raise ValueError(f"{where}: {z.size} z values and {base.size}/{spread.size} baseline values, expected {f}")
    for name, arr in (("vector", v), ("features_z", z), ("baseline", base), ("baseline_spread", spread)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}: {name} holds NaN or infinite values")
    att = np.asarray(o.attention, dtype=np.float32) if len(o.attention) else None
    att_t = np.asarray(o.attention_t, dtype=np.float64) if len(o.attention_t) else None
    if att is not None and (att_t is None or att_t.shape != att.shape):
        raise ValueError(f"observation {o.site_id}/{o.device_id}@{o.t_start}: attention and attention_t differ "
                         "in length")
    if att is not None and not (np.isfinite(att).all() and np.isfinite(att_t).all()):
        raise ValueError(f"{where}: attention holds NaN or infinite values")
    if o.score_available and not (np.isfinite(o.anomaly_score) and 0.0 <= o.anomaly_score <= 1.0):
        raise ValueError(f"{where}: anomaly_score {o.anomaly_score!r} is not a probability")
    return {"learning": False, "vector": v, "features": x, "features_z": z, "baseline": base, "baseline_spread": spread,
            "attention": att, "attention_t": att_t}


def observation_peers(o: pb.Observation) -> list[dict]:
    """The ``peers`` of a received Observation as ``{"address", "port", "direction", "packets", "bytes",
    "ports"}`` dicts, in the edge's order (unchecked: :func:`fog.alerts.peer_evidence` bounds them)."""
    return [{"address": p.address, "port": p.port, "direction": p.direction, "packets": p.packets,
             "bytes": p.bytes, "ports": p.ports} for p in o.peers]


def raw_stream_callable(channel):
    """The bidi-streaming method on ``channel`` taking serialized ``EdgeMessage`` bytes, yielding ``Ack``."""
    return channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=pb.Ack.FromString)
