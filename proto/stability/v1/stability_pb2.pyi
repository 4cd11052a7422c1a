from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(_message.Message):
    __slots__ = ("id", "cluster_id", "outcome", "is_stable", "stability_check_data_json", "error", "checked_at", "duration_s", "policy_uri", "trigger", "nodes")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    IS_STABLE_FIELD_NUMBER: _ClassVar[int]
    STABILITY_CHECK_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    POLICY_URI_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    id: int
    cluster_id: str
    outcome: str
    is_stable: bool
    stability_check_data_json: str
    error: str
    checked_at: float
    duration_s: float
    policy_uri: str
    trigger: str
    nodes: int
    def __init__(self, id: _Optional[int] = ..., cluster_id: _Optional[str] = ..., outcome: _Optional[str] = ..., is_stable: _Optional[bool] = ..., stability_check_data_json: _Optional[str] = ..., error: _Optional[str] = ..., checked_at: _Optional[float] = ..., duration_s: _Optional[float] = ..., policy_uri: _Optional[str] = ..., trigger: _Optional[str] = ..., nodes: _Optional[int] = ...) -> None: ...

class GetLatestVerdictRequest(_message.Message):
    __slots__ = ("check_now",)
    CHECK_NOW_FIELD_NUMBER: _ClassVar[int]
    check_now: bool
    def __init__(self, check_now: _Optional[bool] = ...) -> None: ...

class GetLatestVerdictResponse(_message.Message):
    __slots__ = ("verdict",)
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    verdict: Verdict
    def __init__(self, verdict: _Optional[_Union[Verdict, _Mapping]] = ...) -> None: ...

class ListVerdictsRequest(_message.Message):
    __slots__ = ("limit", "before_id")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_ID_FIELD_NUMBER: _ClassVar[int]
    limit: int
    before_id: int
    def __init__(self, limit: _Optional[int] = ..., before_id: _Optional[int] = ...) -> None: ...

class ListVerdictsResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[Verdict]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[Verdict, _Mapping]]] = ...) -> None: ...

class WatchVerdictsRequest(_message.Message):
    __slots__ = ("every_verdict",)
    EVERY_VERDICT_FIELD_NUMBER: _ClassVar[int]
    every_verdict: bool
    def __init__(self, every_verdict: _Optional[bool] = ...) -> None: ...
