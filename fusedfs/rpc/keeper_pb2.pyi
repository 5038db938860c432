from fusedfs.rpc import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataFolder(_message.Message):
    __slots__ = ("keeper_id", "path")
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    keeper_id: str
    path: str
    def __init__(self, keeper_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class MetadataCopyHeader(_message.Message):
    __slots__ = ("cluster_id", "taken_ns", "length", "crc32c", "journal_seq")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    TAKEN_NS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    taken_ns: int
    length: int
    crc32c: int
    journal_seq: int
    def __init__(self, cluster_id: _Optional[str] = ..., taken_ns: _Optional[int] = ..., length: _Optional[int] = ..., crc32c: _Optional[int] = ..., journal_seq: _Optional[int] = ...) -> None: ...

class MetadataCopyPiece(_message.Message):
    __slots__ = ("header", "data", "journal")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    header: MetadataCopyHeader
    data: bytes
    journal: MetadataJournal
    def __init__(self, header: _Optional[_Union[MetadataCopyHeader, _Mapping]] = ..., data: _Optional[bytes] = ..., journal: _Optional[_Union[MetadataJournal, _Mapping]] = ...) -> None: ...

class JournalValue(_message.Message):
    __slots__ = ("integer", "blob", "text")
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    integer: int
    blob: bytes
    text: str
    def __init__(self, integer: _Optional[int] = ..., blob: _Optional[bytes] = ..., text: _Optional[str] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("seq", "table", "deleted", "values")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    seq: int
    table: str
    deleted: bool
    values: _containers.RepeatedCompositeFieldContainer[JournalValue]
    def __init__(self, seq: _Optional[int] = ..., table: _Optional[str] = ..., deleted: _Optional[bool] = ..., values: _Optional[_Iterable[_Union[JournalValue, _Mapping]]] = ...) -> None: ...

class MetadataJournal(_message.Message):
    __slots__ = ("cluster_id", "copy_taken_ns", "entries")
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    COPY_TAKEN_NS_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    copy_taken_ns: int
    entries: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    def __init__(self, cluster_id: _Optional[str] = ..., copy_taken_ns: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ...) -> None: ...

class JournalAck(_message.Message):
    __slots__ = ("last_seq",)
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    last_seq: int
    def __init__(self, last_seq: _Optional[int] = ...) -> None: ...

class WriteChunkHeader(_message.Message):
    __slots__ = ("chunk_id", "length", "crc32c", "downstream")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    DOWNSTREAM_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    length: int
    crc32c: int
    downstream: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeeperRef]
    def __init__(self, chunk_id: _Optional[str] = ..., length: _Optional[int] = ..., crc32c: _Optional[int] = ..., downstream: _Optional[_Iterable[_Union[_common_pb2.KeeperRef, _Mapping]]] = ...) -> None: ...

class WriteChunkMessage(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: WriteChunkHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[WriteChunkHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class PipelineFailure(_message.Message):
    __slots__ = ("keeper", "code", "message")
    KEEPER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    keeper: _common_pb2.KeeperRef
    code: str
    message: str
    def __init__(self, keeper: _Optional[_Union[_common_pb2.KeeperRef, _Mapping]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class WriteChunkReply(_message.Message):
    __slots__ = ("stored_on", "failures", "crc32c")
    STORED_ON_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    stored_on: _containers.RepeatedScalarFieldContainer[str]
    failures: _containers.RepeatedCompositeFieldContainer[PipelineFailure]
    crc32c: int
    def __init__(self, stored_on: _Optional[_Iterable[str]] = ..., failures: _Optional[_Iterable[_Union[PipelineFailure, _Mapping]]] = ..., crc32c: _Optional[int] = ...) -> None: ...

class ChunkPatch(_message.Message):
    __slots__ = ("offset", "data", "crc32c")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    crc32c: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., crc32c: _Optional[int] = ...) -> None: ...

class DeriveChunkRequest(_message.Message):
    __slots__ = ("chunk_id", "length", "base_chunk_id", "base_kept", "patches")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    BASE_CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_KEPT_FIELD_NUMBER: _ClassVar[int]
    PATCHES_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    length: int
    base_chunk_id: str
    base_kept: int
    patches: _containers.RepeatedCompositeFieldContainer[ChunkPatch]
    def __init__(self, chunk_id: _Optional[str] = ..., length: _Optional[int] = ..., base_chunk_id: _Optional[str] = ..., base_kept: _Optional[int] = ..., patches: _Optional[_Iterable[_Union[ChunkPatch, _Mapping]]] = ...) -> None: ...

class ChunkLink(_message.Message):
    __slots__ = ("chunk_id", "source_id")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    source_id: str
    def __init__(self, chunk_id: _Optional[str] = ..., source_id: _Optional[str] = ...) -> None: ...

class LinkChunksRequest(_message.Message):
    __slots__ = ("links",)
    LINKS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[ChunkLink]
    def __init__(self, links: _Optional[_Iterable[_Union[ChunkLink, _Mapping]]] = ...) -> None: ...

class LinkChunksReply(_message.Message):
    __slots__ = ("linked",)
    LINKED_FIELD_NUMBER: _ClassVar[int]
    linked: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, linked: _Optional[_Iterable[str]] = ...) -> None: ...

class ReadChunkRequest(_message.Message):
    __slots__ = ("chunk_id", "offset", "length")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    offset: int
    length: int
    def __init__(self, chunk_id: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ChunkPiece(_message.Message):
    __slots__ = ("offset", "data", "block_crc32c", "block_size", "chunk_length", "chunk_crc32c")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    BLOCK_CRC32C_FIELD_NUMBER: _ClassVar[int]
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CRC32C_FIELD_NUMBER: _ClassVar[int]
    offset: int
    data: bytes
    block_crc32c: _containers.RepeatedScalarFieldContainer[int]
    block_size: int
    chunk_length: int
    chunk_crc32c: int
    def __init__(self, offset: _Optional[int] = ..., data: _Optional[bytes] = ..., block_crc32c: _Optional[_Iterable[int]] = ..., block_size: _Optional[int] = ..., chunk_length: _Optional[int] = ..., chunk_crc32c: _Optional[int] = ...) -> None: ...
