from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hello(_message.Message):
    __slots__ = ("site_id", "edge_id", "obs_dim", "window_s", "feature_names", "software_version", "grace_s")
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    OBS_DIM_FIELD_NUMBER: _ClassVar[int]
    WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    site_id: str
    edge_id: str
    obs_dim: int
    window_s: float
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    software_version: str
    grace_s: float
    def __init__(self, site_id: _Optional[str] = ..., edge_id: _Optional[str] = ..., obs_dim: _Optional[int] = ..., window_s: _Optional[float] = ..., feature_names: _Optional[_Iterable[str]] = ..., software_version: _Optional[str] = ..., grace_s: _Optional[float] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("seq", "site_id", "device_id", "t_start", "t_end", "vector", "features", "features_z", "proto_text", "anomaly_score", "score_available", "attention", "attention_t", "learning", "baseline", "baseline_spread", "baseline_scope", "peers")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    T_START_FIELD_NUMBER: _ClassVar[int]
    T_END_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    FEATURES_Z_FIELD_NUMBER: _ClassVar[int]
    PROTO_TEXT_FIELD_NUMBER: _ClassVar[int]
    ANOMALY_SCORE_FIELD_NUMBER: _ClassVar[int]
    SCORE_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_T_FIELD_NUMBER: _ClassVar[int]
    LEARNING_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SPREAD_FIELD_NUMBER: _ClassVar[int]
    BASELINE_SCOPE_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    site_id: str
    device_id: str
    t_start: float
    t_end: float
    vector: _containers.RepeatedScalarFieldContainer[float]
    features: _containers.RepeatedScalarFieldContainer[float]
    features_z: _containers.RepeatedScalarFieldContainer[float]
    proto_text: str
    anomaly_score: float
    score_available: bool
    attention: _containers.RepeatedScalarFieldContainer[float]
    attention_t: _containers.RepeatedScalarFieldContainer[float]
    learning: bool
    baseline: _containers.RepeatedScalarFieldContainer[float]
    baseline_spread: _containers.RepeatedScalarFieldContainer[float]
    baseline_scope: str
    peers: _containers.RepeatedCompositeFieldContainer[Peer]
    def __init__(self, seq: _Optional[int] = ..., site_id: _Optional[str] = ..., device_id: _Optional[str] = ..., t_start: _Optional[float] = ..., t_end: _Optional[float] = ..., vector: _Optional[_Iterable[float]] = ..., features: _Optional[_Iterable[float]] = ..., features_z: _Optional[_Iterable[float]] = ..., proto_text: _Optional[str] = ..., anomaly_score: _Optional[float] = ..., score_available: _Optional[bool] = ..., attention: _Optional[_Iterable[float]] = ..., attention_t: _Optional[_Iterable[float]] = ..., learning: _Optional[bool] = ..., baseline: _Optional[_Iterable[float]] = ..., baseline_spread: _Optional[_Iterable[float]] = ..., baseline_scope: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[Peer, _Mapping]]] = ...) -> None: ...

class Peer(_message.Message):
    __slots__ = ("address", "port", "direction", "packets", "bytes", "ports")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    address: str
    port: int
    direction: str
    packets: int
    bytes: int
    ports: int
    def __init__(self, address: _Optional[str] = ..., port: _Optional[int] = ..., direction: _Optional[str] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., ports: _Optional[int] = ...) -> None: ...

class Watermark(_message.Message):
    __slots__ = ("seq", "site_id", "t_end", "n_observations", "learning", "grace_elapsed_s", "grace_s", "grace_windows", "devices_own")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SITE_ID_FIELD_NUMBER: _ClassVar[int]
    T_END_FIELD_NUMBER: _ClassVar[int]
    N_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_FIELD_NUMBER: _ClassVar[int]
    GRACE_ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    GRACE_WINDOWS_FIELD_NUMBER: _ClassVar[int]
    DEVICES_OWN_FIELD_NUMBER: _ClassVar[int]
    seq: int
    site_id: str
    t_end: float
    n_observations: int
    learning: bool
    grace_elapsed_s: float
    grace_s: float
    grace_windows: int
    devices_own: int
    def __init__(self, seq: _Optional[int] = ..., site_id: _Optional[str] = ..., t_end: _Optional[float] = ..., n_observations: _Optional[int] = ..., learning: _Optional[bool] = ..., grace_elapsed_s: _Optional[float] = ..., grace_s: _Optional[float] = ..., grace_windows: _Optional[int] = ..., devices_own: _Optional[int] = ...) -> None: ...

class EdgeMessage(_message.Message):
    __slots__ = ("hello", "observation", "watermark")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    observation: Observation
    watermark: Watermark
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., watermark: _Optional[_Union[Watermark, _Mapping]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("edge_id", "ack_seq", "alerted_seqs")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_SEQ_FIELD_NUMBER: _ClassVar[int]
    ALERTED_SEQS_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    ack_seq: int
    alerted_seqs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, edge_id: _Optional[str] = ..., ack_seq: _Optional[int] = ..., alerted_seqs: _Optional[_Iterable[int]] = ...) -> None: ...
