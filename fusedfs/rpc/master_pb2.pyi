from fusedfs.rpc import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Attr(_message.Message):
    __slots__ = ("inode", "mode", "nlink", "uid", "gid", "size", "atime_ns", "mtime_ns", "ctime_ns", "chunk_size", "has_xattrs", "rdev", "goal", "stored_bytes", "ctime_before_ns")
    INODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    HAS_XATTRS_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CTIME_BEFORE_NS_FIELD_NUMBER: _ClassVar[int]
    inode: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    chunk_size: int
    has_xattrs: bool
    rdev: int
    goal: int
    stored_bytes: int
    ctime_before_ns: int
    def __init__(self, inode: _Optional[int] = ..., mode: _Optional[int] = ..., nlink: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., chunk_size: _Optional[int] = ..., has_xattrs: _Optional[bool] = ..., rdev: _Optional[int] = ..., goal: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., ctime_before_ns: _Optional[int] = ...) -> None: ...

class EntryRequest(_message.Message):
    __slots__ = ("parent", "name", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    request_id: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., request_id: _Optional[int] = ...) -> None: ...

class PathRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class InodeRequest(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: int
    def __init__(self, inode: _Optional[int] = ...) -> None: ...

class SetAttrRequest(_message.Message):
    __slots__ = ("inode", "mode", "uid", "gid", "size", "atime_ns", "mtime_ns", "atime_now", "mtime_now", "named", "request_id")
    INODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    ATIME_NOW_FIELD_NUMBER: _ClassVar[int]
    MTIME_NOW_FIELD_NUMBER: _ClassVar[int]
    NAMED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    inode: int
    mode: int
    uid: int
    gid: int
    size: int
    atime_ns: int
    mtime_ns: int
    atime_now: bool
    mtime_now: bool
    named: bool
    request_id: int
    def __init__(self, inode: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., atime_now: _Optional[bool] = ..., mtime_now: _Optional[bool] = ..., named: _Optional[bool] = ..., request_id: _Optional[int] = ...) -> None: ...

class ReadDirRequest(_message.Message):
    __slots__ = ("inode", "after", "limit", "with_small_chunks")
    INODE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WITH_SMALL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    inode: int
    after: int
    limit: int
    with_small_chunks: bool
    def __init__(self, inode: _Optional[int] = ..., after: _Optional[int] = ..., limit: _Optional[int] = ..., with_small_chunks: _Optional[bool] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("name", "attr", "cursor", "small_chunk")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTR_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    SMALL_CHUNK_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    attr: Attr
    cursor: int
    small_chunk: ChunkRef
    def __init__(self, name: _Optional[bytes] = ..., attr: _Optional[_Union[Attr, _Mapping]] = ..., cursor: _Optional[int] = ..., small_chunk: _Optional[_Union[ChunkRef, _Mapping]] = ...) -> None: ...

class ReadDirReply(_message.Message):
    __slots__ = ("entries", "more", "parent", "folder")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    more: bool
    parent: int
    folder: Attr
    def __init__(self, entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ..., more: _Optional[bool] = ..., parent: _Optional[int] = ..., folder: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class MakeNodeRequest(_message.Message):
    __slots__ = ("parent", "name", "mode", "uid", "gid", "exclusive", "rdev", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    EXCLUSIVE_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    mode: int
    uid: int
    gid: int
    exclusive: bool
    rdev: int
    request_id: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., exclusive: _Optional[bool] = ..., rdev: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class NodeReply(_message.Message):
    __slots__ = ("attr", "folder", "folder_ctime_before_ns")
    ATTR_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    FOLDER_CTIME_BEFORE_NS_FIELD_NUMBER: _ClassVar[int]
    attr: Attr
    folder: Attr
    folder_ctime_before_ns: int
    def __init__(self, attr: _Optional[_Union[Attr, _Mapping]] = ..., folder: _Optional[_Union[Attr, _Mapping]] = ..., folder_ctime_before_ns: _Optional[int] = ...) -> None: ...

class SymlinkRequest(_message.Message):
    __slots__ = ("parent", "name", "target", "uid", "gid", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    target: bytes
    uid: int
    gid: int
    request_id: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., target: _Optional[bytes] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class ReadLinkReply(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: bytes
    def __init__(self, target: _Optional[bytes] = ...) -> None: ...

class LinkRequest(_message.Message):
    __slots__ = ("inode", "new_parent", "new_name", "request_id")
    INODE_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    inode: int
    new_parent: int
    new_name: bytes
    request_id: int
    def __init__(self, inode: _Optional[int] = ..., new_parent: _Optional[int] = ..., new_name: _Optional[bytes] = ..., request_id: _Optional[int] = ...) -> None: ...

class RenameRequest(_message.Message):
    __slots__ = ("parent", "name", "new_parent", "new_name", "flags", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_PARENT_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    new_parent: int
    new_name: bytes
    flags: int
    request_id: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., new_parent: _Optional[int] = ..., new_name: _Optional[bytes] = ..., flags: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class RenameReply(_message.Message):
    __slots__ = ("folder", "folder_ctime_before_ns", "new_folder", "new_folder_ctime_before_ns", "node")
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    FOLDER_CTIME_BEFORE_NS_FIELD_NUMBER: _ClassVar[int]
    NEW_FOLDER_FIELD_NUMBER: _ClassVar[int]
    NEW_FOLDER_CTIME_BEFORE_NS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    folder: Attr
    folder_ctime_before_ns: int
    new_folder: Attr
    new_folder_ctime_before_ns: int
    node: Attr
    def __init__(self, folder: _Optional[_Union[Attr, _Mapping]] = ..., folder_ctime_before_ns: _Optional[int] = ..., new_folder: _Optional[_Union[Attr, _Mapping]] = ..., new_folder_ctime_before_ns: _Optional[int] = ..., node: _Optional[_Union[Attr, _Mapping]] = ...) -> None: ...

class StatFsReply(_message.Message):
    __slots__ = ("capacity_bytes", "free_bytes", "files")
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    capacity_bytes: int
    free_bytes: int
    files: int
    def __init__(self, capacity_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., files: _Optional[int] = ...) -> None: ...

class ChunkRef(_message.Message):
    __slots__ = ("index", "chunk_id", "length", "stored_length", "crc32c", "replicas", "lost")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    STORED_LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    index: int
    chunk_id: str
    length: int
    stored_length: int
    crc32c: int
    replicas: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeeperRef]
    lost: bool
    def __init__(self, index: _Optional[int] = ..., chunk_id: _Optional[str] = ..., length: _Optional[int] = ..., stored_length: _Optional[int] = ..., crc32c: _Optional[int] = ..., replicas: _Optional[_Iterable[_Union[_common_pb2.KeeperRef, _Mapping]]] = ..., lost: _Optional[bool] = ...) -> None: ...

class GetChunksRequest(_message.Message):
    __slots__ = ("inode", "first_index", "count")
    INODE_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    inode: int
    first_index: int
    count: int
    def __init__(self, inode: _Optional[int] = ..., first_index: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class GetChunksReply(_message.Message):
    __slots__ = ("attr", "chunks")
    ATTR_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    attr: Attr
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRef]
    def __init__(self, attr: _Optional[_Union[Attr, _Mapping]] = ..., chunks: _Optional[_Iterable[_Union[ChunkRef, _Mapping]]] = ...) -> None: ...

class AllocateChunksRequest(_message.Message):
    __slots__ = ("exclude_keepers", "length", "count", "goal", "derive_from")
    EXCLUDE_KEEPERS_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    DERIVE_FROM_FIELD_NUMBER: _ClassVar[int]
    exclude_keepers: _containers.RepeatedScalarFieldContainer[str]
    length: int
    count: int
    goal: int
    derive_from: str
    def __init__(self, exclude_keepers: _Optional[_Iterable[str]] = ..., length: _Optional[int] = ..., count: _Optional[int] = ..., goal: _Optional[int] = ..., derive_from: _Optional[str] = ...) -> None: ...

class ChunkAllocation(_message.Message):
    __slots__ = ("chunk_id", "pipeline")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    pipeline: _containers.RepeatedCompositeFieldContainer[_common_pb2.KeeperRef]
    def __init__(self, chunk_id: _Optional[str] = ..., pipeline: _Optional[_Iterable[_Union[_common_pb2.KeeperRef, _Mapping]]] = ...) -> None: ...

class AllocateChunksReply(_message.Message):
    __slots__ = ("chunks", "min_copies", "open_keepers")
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MIN_COPIES_FIELD_NUMBER: _ClassVar[int]
    OPEN_KEEPERS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkAllocation]
    min_copies: int
    open_keepers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkAllocation, _Mapping]]] = ..., min_copies: _Optional[int] = ..., open_keepers: _Optional[_Iterable[str]] = ...) -> None: ...

class AbandonChunksRequest(_message.Message):
    __slots__ = ("chunk_ids",)
    CHUNK_IDS_FIELD_NUMBER: _ClassVar[int]
    chunk_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class NewChunk(_message.Message):
    __slots__ = ("index", "chunk_id", "length", "crc32c", "stored_on", "replaces")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    STORED_ON_FIELD_NUMBER: _ClassVar[int]
    REPLACES_FIELD_NUMBER: _ClassVar[int]
    index: int
    chunk_id: str
    length: int
    crc32c: int
    stored_on: _containers.RepeatedScalarFieldContainer[str]
    replaces: str
    def __init__(self, index: _Optional[int] = ..., chunk_id: _Optional[str] = ..., length: _Optional[int] = ..., crc32c: _Optional[int] = ..., stored_on: _Optional[_Iterable[str]] = ..., replaces: _Optional[str] = ...) -> None: ...

class CommitChunksRequest(_message.Message):
    __slots__ = ("inode", "size", "chunks", "mtime_ns", "appended_at", "request_id")
    INODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    APPENDED_AT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    inode: int
    size: int
    chunks: _containers.RepeatedCompositeFieldContainer[NewChunk]
    mtime_ns: int
    appended_at: int
    request_id: int
    def __init__(self, inode: _Optional[int] = ..., size: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[NewChunk, _Mapping]]] = ..., mtime_ns: _Optional[int] = ..., appended_at: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class PutFileRequest(_message.Message):
    __slots__ = ("parent", "name", "mode", "uid", "gid", "size", "chunk_size", "chunks", "mtime_ns", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: int
    name: bytes
    mode: int
    uid: int
    gid: int
    size: int
    chunk_size: int
    chunks: _containers.RepeatedCompositeFieldContainer[NewChunk]
    mtime_ns: int
    request_id: int
    def __init__(self, parent: _Optional[int] = ..., name: _Optional[bytes] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., size: _Optional[int] = ..., chunk_size: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[NewChunk, _Mapping]]] = ..., mtime_ns: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class BadReplicaRequest(_message.Message):
    __slots__ = ("chunk_id", "keeper_id", "reason")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    keeper_id: str
    reason: str
    def __init__(self, chunk_id: _Optional[str] = ..., keeper_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ConfigReply(_message.Message):
    __slots__ = ("chunk_size", "goal", "min_copies")
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    MIN_COPIES_FIELD_NUMBER: _ClassVar[int]
    chunk_size: int
    goal: int
    min_copies: int
    def __init__(self, chunk_size: _Optional[int] = ..., goal: _Optional[int] = ..., min_copies: _Optional[int] = ...) -> None: ...

class KeeperStatus(_message.Message):
    __slots__ = ("keeper_id", "address", "alive", "capacity_bytes", "used_bytes", "free_bytes", "chunks", "load", "seconds_since_heartbeat", "scrub_checked", "scrub_bad", "failure_domain", "draining", "chunks_to_move", "disk_stalled_seconds", "damaged_copies")
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    SECONDS_SINCE_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SCRUB_CHECKED_FIELD_NUMBER: _ClassVar[int]
    SCRUB_BAD_FIELD_NUMBER: _ClassVar[int]
    FAILURE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_TO_MOVE_FIELD_NUMBER: _ClassVar[int]
    DISK_STALLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_COPIES_FIELD_NUMBER: _ClassVar[int]
    keeper_id: str
    address: str
    alive: bool
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    chunks: int
    load: int
    seconds_since_heartbeat: float
    scrub_checked: int
    scrub_bad: int
    failure_domain: str
    draining: bool
    chunks_to_move: int
    disk_stalled_seconds: float
    damaged_copies: int
    def __init__(self, keeper_id: _Optional[str] = ..., address: _Optional[str] = ..., alive: _Optional[bool] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., load: _Optional[int] = ..., seconds_since_heartbeat: _Optional[float] = ..., scrub_checked: _Optional[int] = ..., scrub_bad: _Optional[int] = ..., failure_domain: _Optional[str] = ..., draining: _Optional[bool] = ..., chunks_to_move: _Optional[int] = ..., disk_stalled_seconds: _Optional[float] = ..., damaged_copies: _Optional[int] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("keeper", "undo")
    KEEPER_FIELD_NUMBER: _ClassVar[int]
    UNDO_FIELD_NUMBER: _ClassVar[int]
    keeper: str
    undo: bool
    def __init__(self, keeper: _Optional[str] = ..., undo: _Optional[bool] = ...) -> None: ...

class DrainReply(_message.Message):
    __slots__ = ("keeper_id", "address")
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    keeper_id: str
    address: str
    def __init__(self, keeper_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class ChunkHealth(_message.Message):
    __slots__ = ("total", "under_replicated", "over_replicated", "lost", "repairs_in_flight", "garbage", "misplaced", "pending", "unavailable")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    OVER_REPLICATED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    REPAIRS_IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    GARBAGE_FIELD_NUMBER: _ClassVar[int]
    MISPLACED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_FIELD_NUMBER: _ClassVar[int]
    total: int
    under_replicated: int
    over_replicated: int
    lost: int
    repairs_in_flight: int
    garbage: int
    misplaced: int
    pending: int
    unavailable: int
    def __init__(self, total: _Optional[int] = ..., under_replicated: _Optional[int] = ..., over_replicated: _Optional[int] = ..., lost: _Optional[int] = ..., repairs_in_flight: _Optional[int] = ..., garbage: _Optional[int] = ..., misplaced: _Optional[int] = ..., pending: _Optional[int] = ..., unavailable: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("keepers", "chunks", "files", "directories", "goal", "chunk_size", "mounts", "open_orphans", "cluster_id", "metadata_copy_taken_ns", "metadata_copy_keepers", "metadata_changes_unsent", "trash_files", "trash_bytes", "trash_hours", "metadata_room_bytes", "metadata_reserve_bytes", "connected_mounts")
    KEEPERS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    DIRECTORIES_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    MOUNTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_ORPHANS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    METADATA_COPY_TAKEN_NS_FIELD_NUMBER: _ClassVar[int]
    METADATA_COPY_KEEPERS_FIELD_NUMBER: _ClassVar[int]
    METADATA_CHANGES_UNSENT_FIELD_NUMBER: _ClassVar[int]
    TRASH_FILES_FIELD_NUMBER: _ClassVar[int]
    TRASH_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRASH_HOURS_FIELD_NUMBER: _ClassVar[int]
    METADATA_ROOM_BYTES_FIELD_NUMBER: _ClassVar[int]
    METADATA_RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_MOUNTS_FIELD_NUMBER: _ClassVar[int]
    keepers: _containers.RepeatedCompositeFieldContainer[KeeperStatus]
    chunks: ChunkHealth
    files: int
    directories: int
    goal: int
    chunk_size: int
    mounts: int
    open_orphans: int
    cluster_id: str
    metadata_copy_taken_ns: int
    metadata_copy_keepers: int
    metadata_changes_unsent: int
    trash_files: int
    trash_bytes: int
    trash_hours: float
    metadata_room_bytes: int
    metadata_reserve_bytes: int
    connected_mounts: _containers.RepeatedCompositeFieldContainer[MountStatus]
    def __init__(self, keepers: _Optional[_Iterable[_Union[KeeperStatus, _Mapping]]] = ..., chunks: _Optional[_Union[ChunkHealth, _Mapping]] = ..., files: _Optional[int] = ..., directories: _Optional[int] = ..., goal: _Optional[int] = ..., chunk_size: _Optional[int] = ..., mounts: _Optional[int] = ..., open_orphans: _Optional[int] = ..., cluster_id: _Optional[str] = ..., metadata_copy_taken_ns: _Optional[int] = ..., metadata_copy_keepers: _Optional[int] = ..., metadata_changes_unsent: _Optional[int] = ..., trash_files: _Optional[int] = ..., trash_bytes: _Optional[int] = ..., trash_hours: _Optional[float] = ..., metadata_room_bytes: _Optional[int] = ..., metadata_reserve_bytes: _Optional[int] = ..., connected_mounts: _Optional[_Iterable[_Union[MountStatus, _Mapping]]] = ...) -> None: ...

class MountStatus(_message.Message):
    __slots__ = ("info", "silent_seconds", "open_files")
    INFO_FIELD_NUMBER: _ClassVar[int]
    SILENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    info: MountInfo
    silent_seconds: float
    open_files: int
    def __init__(self, info: _Optional[_Union[MountInfo, _Mapping]] = ..., silent_seconds: _Optional[float] = ..., open_files: _Optional[int] = ...) -> None: ...

class DamagedRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class DamagedFile(_message.Message):
    __slots__ = ("inode", "path", "lost_chunks", "under_replicated_chunks", "unavailable_chunks")
    INODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LOST_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    inode: int
    path: bytes
    lost_chunks: int
    under_replicated_chunks: int
    unavailable_chunks: int
    def __init__(self, inode: _Optional[int] = ..., path: _Optional[bytes] = ..., lost_chunks: _Optional[int] = ..., under_replicated_chunks: _Optional[int] = ..., unavailable_chunks: _Optional[int] = ...) -> None: ...

class DamagedReply(_message.Message):
    __slots__ = ("files", "lost_chunks", "under_replicated_chunks", "truncated", "unavailable_chunks")
    FILES_FIELD_NUMBER: _ClassVar[int]
    LOST_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UNDER_REPLICATED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[DamagedFile]
    lost_chunks: int
    under_replicated_chunks: int
    truncated: bool
    unavailable_chunks: int
    def __init__(self, files: _Optional[_Iterable[_Union[DamagedFile, _Mapping]]] = ..., lost_chunks: _Optional[int] = ..., under_replicated_chunks: _Optional[int] = ..., truncated: _Optional[bool] = ..., unavailable_chunks: _Optional[int] = ...) -> None: ...

class SpaceUsage(_message.Message):
    __slots__ = ("files", "folders", "bytes", "chunks", "stored_bytes", "kept_bytes")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    KEPT_BYTES_FIELD_NUMBER: _ClassVar[int]
    files: int
    folders: int
    bytes: int
    chunks: int
    stored_bytes: int
    kept_bytes: int
    def __init__(self, files: _Optional[int] = ..., folders: _Optional[int] = ..., bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., stored_bytes: _Optional[int] = ..., kept_bytes: _Optional[int] = ...) -> None: ...

class FolderUsage(_message.Message):
    __slots__ = ("name", "usage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    name: bytes
    usage: SpaceUsage
    def __init__(self, name: _Optional[bytes] = ..., usage: _Optional[_Union[SpaceUsage, _Mapping]] = ...) -> None: ...

class UsageReply(_message.Message):
    __slots__ = ("total", "folders", "others", "goal")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    OTHERS_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    total: SpaceUsage
    folders: _containers.RepeatedCompositeFieldContainer[FolderUsage]
    others: SpaceUsage
    goal: int
    def __init__(self, total: _Optional[_Union[SpaceUsage, _Mapping]] = ..., folders: _Optional[_Iterable[_Union[FolderUsage, _Mapping]]] = ..., others: _Optional[_Union[SpaceUsage, _Mapping]] = ..., goal: _Optional[int] = ...) -> None: ...

class GoalReply(_message.Message):
    __slots__ = ("goal", "own", "cluster_goal")
    GOAL_FIELD_NUMBER: _ClassVar[int]
    OWN_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_GOAL_FIELD_NUMBER: _ClassVar[int]
    goal: int
    own: bool
    cluster_goal: int
    def __init__(self, goal: _Optional[int] = ..., own: _Optional[bool] = ..., cluster_goal: _Optional[int] = ...) -> None: ...

class SetGoalRequest(_message.Message):
    __slots__ = ("path", "goal", "recursive")
    PATH_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    path: str
    goal: int
    recursive: bool
    def __init__(self, path: _Optional[str] = ..., goal: _Optional[int] = ..., recursive: _Optional[bool] = ...) -> None: ...

class SetGoalReply(_message.Message):
    __slots__ = ("files", "folders", "chunks")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    files: int
    folders: int
    chunks: int
    def __init__(self, files: _Optional[int] = ..., folders: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class SetChunkSizeRequest(_message.Message):
    __slots__ = ("path", "chunk_size", "recursive")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    RECURSIVE_FIELD_NUMBER: _ClassVar[int]
    path: str
    chunk_size: int
    recursive: bool
    def __init__(self, path: _Optional[str] = ..., chunk_size: _Optional[int] = ..., recursive: _Optional[bool] = ...) -> None: ...

class SetChunkSizeReply(_message.Message):
    __slots__ = ("folders",)
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    folders: int
    def __init__(self, folders: _Optional[int] = ...) -> None: ...

class SetQuotaRequest(_message.Message):
    __slots__ = ("path", "max_entries", "max_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_entries: int
    max_bytes: int
    def __init__(self, path: _Optional[str] = ..., max_entries: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class QuotaReply(_message.Message):
    __slots__ = ("max_entries", "max_bytes", "entries", "bytes")
    MAX_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    max_entries: int
    max_bytes: int
    entries: int
    bytes: int
    def __init__(self, max_entries: _Optional[int] = ..., max_bytes: _Optional[int] = ..., entries: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class SnapshotRequest(_message.Message):
    __slots__ = ("source", "destination")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    source: str
    destination: str
    def __init__(self, source: _Optional[str] = ..., destination: _Optional[str] = ...) -> None: ...

class SnapshotReply(_message.Message):
    __slots__ = ("files", "folders", "chunks")
    FILES_FIELD_NUMBER: _ClassVar[int]
    FOLDERS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    files: int
    folders: int
    chunks: int
    def __init__(self, files: _Optional[int] = ..., folders: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class TrashEntry(_message.Message):
    __slots__ = ("inode", "path", "size", "deleted_ns", "expires_ns")
    INODE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DELETED_NS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_NS_FIELD_NUMBER: _ClassVar[int]
    inode: int
    path: bytes
    size: int
    deleted_ns: int
    expires_ns: int
    def __init__(self, inode: _Optional[int] = ..., path: _Optional[bytes] = ..., size: _Optional[int] = ..., deleted_ns: _Optional[int] = ..., expires_ns: _Optional[int] = ...) -> None: ...

class ListTrashRequest(_message.Message):
    __slots__ = ("path", "limit")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    path: str
    limit: int
    def __init__(self, path: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTrashReply(_message.Message):
    __slots__ = ("entries", "files", "bytes", "truncated")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[TrashEntry]
    files: int
    bytes: int
    truncated: bool
    def __init__(self, entries: _Optional[_Iterable[_Union[TrashEntry, _Mapping]]] = ..., files: _Optional[int] = ..., bytes: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class RestoreTrashRequest(_message.Message):
    __slots__ = ("path", "inode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    inode: int
    def __init__(self, path: _Optional[str] = ..., inode: _Optional[int] = ...) -> None: ...

class RestoreTrashReply(_message.Message):
    __slots__ = ("restored", "skipped")
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    restored: _containers.RepeatedCompositeFieldContainer[TrashEntry]
    skipped: _containers.RepeatedCompositeFieldContainer[TrashEntry]
    def __init__(self, restored: _Optional[_Iterable[_Union[TrashEntry, _Mapping]]] = ..., skipped: _Optional[_Iterable[_Union[TrashEntry, _Mapping]]] = ...) -> None: ...

class PurgeTrashRequest(_message.Message):
    __slots__ = ("path", "inode")
    PATH_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    path: str
    inode: int
    def __init__(self, path: _Optional[str] = ..., inode: _Optional[int] = ...) -> None: ...

class PurgeTrashReply(_message.Message):
    __slots__ = ("files", "bytes")
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    files: int
    bytes: int
    def __init__(self, files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class SetXattrRequest(_message.Message):
    __slots__ = ("inode", "name", "value", "flags", "request_id")
    INODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    inode: int
    name: bytes
    value: bytes
    flags: int
    request_id: int
    def __init__(self, inode: _Optional[int] = ..., name: _Optional[bytes] = ..., value: _Optional[bytes] = ..., flags: _Optional[int] = ..., request_id: _Optional[int] = ...) -> None: ...

class XattrRequest(_message.Message):
    __slots__ = ("inode", "name", "request_id")
    INODE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    inode: int
    name: bytes
    request_id: int
    def __init__(self, inode: _Optional[int] = ..., name: _Optional[bytes] = ..., request_id: _Optional[int] = ...) -> None: ...

class XattrReply(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    def __init__(self, value: _Optional[bytes] = ...) -> None: ...

class ListXattrReply(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class MountSessionRequest(_message.Message):
    __slots__ = ("session_id", "open_inodes", "ending", "info")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_INODES_FIELD_NUMBER: _ClassVar[int]
    ENDING_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    open_inodes: _containers.RepeatedScalarFieldContainer[int]
    ending: bool
    info: MountInfo
    def __init__(self, session_id: _Optional[str] = ..., open_inodes: _Optional[_Iterable[int]] = ..., ending: _Optional[bool] = ..., info: _Optional[_Union[MountInfo, _Mapping]] = ...) -> None: ...

class MountInfo(_message.Message):
    __slots__ = ("host", "mount_point", "pid", "version", "mounted_ns", "writeback_bytes", "failed_saves")
    HOST_FIELD_NUMBER: _ClassVar[int]
    MOUNT_POINT_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MOUNTED_NS_FIELD_NUMBER: _ClassVar[int]
    WRITEBACK_BYTES_FIELD_NUMBER: _ClassVar[int]
    FAILED_SAVES_FIELD_NUMBER: _ClassVar[int]
    host: str
    mount_point: str
    pid: int
    version: str
    mounted_ns: int
    writeback_bytes: int
    failed_saves: int
    def __init__(self, host: _Optional[str] = ..., mount_point: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., mounted_ns: _Optional[int] = ..., writeback_bytes: _Optional[int] = ..., failed_saves: _Optional[int] = ...) -> None: ...

class MountSessionReply(_message.Message):
    __slots__ = ("timeout_seconds",)
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    timeout_seconds: float
    def __init__(self, timeout_seconds: _Optional[float] = ...) -> None: ...

class RegisterKeeperRequest(_message.Message):
    __slots__ = ("keeper", "capacity_bytes", "used_bytes", "free_bytes", "chunk_ids", "cluster_id", "failure_domain")
    KEEPER_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_IDS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    keeper: _common_pb2.KeeperRef
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    chunk_ids: _containers.RepeatedScalarFieldContainer[str]
    cluster_id: str
    failure_domain: str
    def __init__(self, keeper: _Optional[_Union[_common_pb2.KeeperRef, _Mapping]] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., chunk_ids: _Optional[_Iterable[str]] = ..., cluster_id: _Optional[str] = ..., failure_domain: _Optional[str] = ...) -> None: ...

class RegisterKeeperReply(_message.Message):
    __slots__ = ("cluster_id",)
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    cluster_id: str
    def __init__(self, cluster_id: _Optional[str] = ...) -> None: ...

class CopyResult(_message.Message):
    __slots__ = ("chunk_id", "target_id", "ok", "error")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    target_id: str
    ok: bool
    error: str
    def __init__(self, chunk_id: _Optional[str] = ..., target_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("keeper_id", "capacity_bytes", "used_bytes", "free_bytes", "load", "added", "removed", "copies_done", "scrub_checked", "scrub_bad", "disk_stalled_seconds", "damaged_copies")
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    COPIES_DONE_FIELD_NUMBER: _ClassVar[int]
    SCRUB_CHECKED_FIELD_NUMBER: _ClassVar[int]
    SCRUB_BAD_FIELD_NUMBER: _ClassVar[int]
    DISK_STALLED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_COPIES_FIELD_NUMBER: _ClassVar[int]
    keeper_id: str
    capacity_bytes: int
    used_bytes: int
    free_bytes: int
    load: int
    added: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    copies_done: _containers.RepeatedCompositeFieldContainer[CopyResult]
    scrub_checked: int
    scrub_bad: int
    disk_stalled_seconds: float
    damaged_copies: int
    def __init__(self, keeper_id: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., load: _Optional[int] = ..., added: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ..., copies_done: _Optional[_Iterable[_Union[CopyResult, _Mapping]]] = ..., scrub_checked: _Optional[int] = ..., scrub_bad: _Optional[int] = ..., disk_stalled_seconds: _Optional[float] = ..., damaged_copies: _Optional[int] = ...) -> None: ...

class CopyCommand(_message.Message):
    __slots__ = ("chunk_id", "target")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    target: _common_pb2.KeeperRef
    def __init__(self, chunk_id: _Optional[str] = ..., target: _Optional[_Union[_common_pb2.KeeperRef, _Mapping]] = ...) -> None: ...

class VerifyCommand(_message.Message):
    __slots__ = ("chunk_id", "length", "crc32c")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    length: int
    crc32c: int
    def __init__(self, chunk_id: _Optional[str] = ..., length: _Optional[int] = ..., crc32c: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("reregister", "delete", "copy", "verify")
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    reregister: bool
    delete: _containers.RepeatedScalarFieldContainer[str]
    copy: _containers.RepeatedCompositeFieldContainer[CopyCommand]
    verify: _containers.RepeatedCompositeFieldContainer[VerifyCommand]
    def __init__(self, reregister: _Optional[bool] = ..., delete: _Optional[_Iterable[str]] = ..., copy: _Optional[_Iterable[_Union[CopyCommand, _Mapping]]] = ..., verify: _Optional[_Iterable[_Union[VerifyCommand, _Mapping]]] = ...) -> None: ...
