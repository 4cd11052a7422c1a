from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetClusterDocumentRequest(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class ClusterDocument(_message.Message):
    __slots__ = ("cluster_id", "document_json")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    document_json: str
    def __init__(self, cluster_id: _Optional[str] = ..., document_json: _Optional[str] = ...) -> None: ...

class PutClusterDocumentRequest(_message.Message):
    __slots__ = ("cluster_id", "document_json")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_JSON_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    document_json: str
    def __init__(self, cluster_id: _Optional[str] = ..., document_json: _Optional[str] = ...) -> None: ...

class PutClusterDocumentResponse(_message.Message):
    __slots__ = ("stored",)
    STORED_FIELD_NUMBER: _ClassVar[int]
    stored: bool
    def __init__(self, stored: _Optional[bool] = ...) -> None: ...
