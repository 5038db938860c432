"""The one error type that crosses part boundaries, and its mapping to gRPC statuses.

A master or keeper raises `FsError(errno.X, "...")`; the servicer turns it into a gRPC status
with the errno in trailing metadata; the client library turns that back into the same FsError.
The mount answers the kernel with `.errno`, the CLI prints `.message`.
"""

from __future__ import annotations

import errno as errno_mod
import os
from typing import NoReturn

import grpc

ERRNO_METADATA_KEY = "fusedfs-errno"

_CODE_FOR_ERRNO = {
    errno_mod.ENOENT: grpc.StatusCode.NOT_FOUND,
    errno_mod.EEXIST: grpc.StatusCode.ALREADY_EXISTS,
    errno_mod.EACCES: grpc.StatusCode.PERMISSION_DENIED,
    errno_mod.EPERM: grpc.StatusCode.PERMISSION_DENIED,
    errno_mod.ENOSPC: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno_mod.EDQUOT: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errno_mod.EINVAL: grpc.StatusCode.INVALID_ARGUMENT,
    errno_mod.ENAMETOOLONG: grpc.StatusCode.INVALID_ARGUMENT,
    errno_mod.EIO: grpc.StatusCode.UNAVAILABLE,
    errno_mod.ENOTSUP: grpc.StatusCode.UNIMPLEMENTED,
    errno_mod.EBADMSG: grpc.StatusCode.DATA_LOSS,  # a replica failed its checksum
    errno_mod.ECANCELED: grpc.StatusCode.CANCELLED,
}

_ERRNO_FOR_CODE = {
    grpc.StatusCode.NOT_FOUND: errno_mod.ENOENT,
    grpc.StatusCode.ALREADY_EXISTS: errno_mod.EEXIST,
    grpc.StatusCode.PERMISSION_DENIED: errno_mod.EACCES,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errno_mod.ENOSPC,
    grpc.StatusCode.INVALID_ARGUMENT: errno_mod.EINVAL,
    grpc.StatusCode.UNIMPLEMENTED: errno_mod.ENOTSUP,
    grpc.StatusCode.DATA_LOSS: errno_mod.EIO,
}


class FsError(Exception):
    """A failure with a POSIX errno and a message a person can read."""

    def __init__(self, errno: int, message: str = "") -> None:
        self.errno = errno
        self.message = message or os.strerror(errno)
        super().__init__(self.message)


def status_code_for(errno: int) -> grpc.StatusCode:
    return _CODE_FOR_ERRNO.get(errno, grpc.StatusCode.FAILED_PRECONDITION)


def abort_with(context: grpc.ServicerContext, error: FsError) -> NoReturn:
    """Ends the RPC with error's status and errno; raises, as context.abort does."""
    context.set_trailing_metadata(((ERRNO_METADATA_KEY, str(error.errno)),))
    context.abort(status_code_for(error.errno), error.message)


def sent_errno(error: grpc.RpcError) -> int | None:
    """The errno a servicer ended the call with (abort_with), or None: then the failure is
    gRPC's own (a dropped connection, a deadline) or another server's."""
    if isinstance(error, grpc.Call):
        for key, value in error.trailing_metadata() or ():
            if key == ERRNO_METADATA_KEY:
                return int(value)
    return None


def from_rpc_error(error: grpc.RpcError, what: str = "") -> FsError:
    """The FsError a failed call stands for; transport failures become EIO."""
    code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
    details = (error.details() if isinstance(error, grpc.Call) else None) or str(code.name)
    errno = sent_errno(error)
    if errno is None:
        errno = _ERRNO_FOR_CODE.get(code, errno_mod.EIO)
    prefix = f"{what}: " if what else ""
    return FsError(errno, prefix + details)
