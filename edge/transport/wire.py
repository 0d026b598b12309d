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


def hello_message(*, site_id: str, edge_id: str, window_s: float, baseline_mean: np.ndarray,
                  baseline_std: np.ndarray) -> pb.EdgeMessage:
    """The stream header (``Hello``) of one edge daemon."""
    from marlids import __version__

    h = pb.Hello(site_id=site_id, edge_id=edge_id, obs_dim=OBS_DIM, window_s=float(window_s),
                 feature_names=list(FEATURE_NAMES), software_version=__version__)
    h.baseline_mean.extend(np.asarray(baseline_mean, dtype=np.float32).tolist())
    h.baseline_std.extend(np.asarray(baseline_std, dtype=np.float32).tolist())
    return pb.EdgeMessage(hello=h)


def observation_messages(batch) -> list[pb.EdgeMessage]:
    """One ``EdgeMessage(observation=…)`` per row of an :class:`edge.online.ObservationBatch` (seq unset)."""
    out = []
    keys = batch.keys
    for i in range(len(batch)):
        o = pb.Observation(site_id=str(keys["site_id"].iat[i]), device_id=str(keys["device_id"].iat[i]),
                           t_start=float(keys["t_start"].iat[i]), t_end=float(keys["t_end"].iat[i]),
                           proto_text=str(keys["proto_text"].iat[i]))
        o.vector.extend(batch.vectors[i].tolist())
        o.features.extend(batch.x[i].tolist())
        o.features_z.extend(batch.z[i].tolist())
        s = batch.scores[i]
        if not np.isnan(s):
            o.anomaly_score = float(s)
            o.score_available = True
            if batch.attention is not None:
                o.attention.extend(batch.attention[i].tolist())
                o.attention_t.extend(batch.attention_t[i].tolist())
        out.append(pb.EdgeMessage(observation=o))
    return out


def watermark_message(site_id: str, t_end: float, n_observations: int) -> pb.EdgeMessage:
    """``EdgeMessage(watermark=…)``: every window of the site ending at or before ``t_end`` was sent."""
    return pb.EdgeMessage(watermark=pb.Watermark(site_id=site_id, t_end=float(t_end),
                                                 n_observations=int(n_observations)))


def observation_arrays(o: pb.Observation) -> dict:
    """The numeric parts of a received Observation as numpy arrays.

    Returns
    -------
    dict
        ``vector (OBS_DIM,) float32, features (F,) float32, features_z (F,) float32, attention (T,)
        float32 or None, attention_t (T,) float64 or None``.

    Raises
    ------
    ValueError
        If the vector or feature lengths do not match this version's layout.
    """
    v = np.asarray(o.vector, dtype=np.float32)
    if v.shape != (OBS_DIM,):
        raise ValueError(f"observation {o.site_id}/{o.device_id}@{o.t_start}: vector has {v.size} values, "
                         f"expected {OBS_DIM}")
    x = np.asarray(o.features, dtype=np.float32)
    z = np.asarray(o.features_z, dtype=np.float32)
    if x.shape != (len(FEATURE_NAMES),) or z.shape != x.shape:
        raise ValueError(f"observation {o.site_id}/{o.device_id}@{o.t_start}: {x.size} features and {z.size} "
                         f"z values, expected {len(FEATURE_NAMES)}")
    att = np.asarray(o.attention, dtype=np.float32) if len(o.attention) else None
    att_t = np.asarray(o.attention_t, dtype=np.float64) if len(o.attention_t) else None
    if att is not None and (att_t is None or att_t.shape != att.shape):
        raise ValueError(f"observation {o.site_id}/{o.device_id}@{o.t_start}: attention and attention_t differ "
                         "in length")
    return {"vector": v, "features": x, "features_z": z, "attention": att, "attention_t": att_t}


def raw_stream_callable(channel):
    """The bidi-streaming method on ``channel`` taking serialized ``EdgeMessage`` bytes, yielding ``Ack``."""
    return channel.stream_stream(STREAM_METHOD, request_serializer=None, response_deserializer=pb.Ack.FromString)
