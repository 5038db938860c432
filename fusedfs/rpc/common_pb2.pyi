from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class KeeperRef(_message.Message):
    __slots__ = ("keeper_id", "address")
    KEEPER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    keeper_id: str
    address: str
    def __init__(self, keeper_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...
