"""Rules for names, paths and attribute names, shared by the master (which enforces them) and clients."""

from __future__ import annotations

import errno
import os

from fusedfs.errors import FsError

NAME_MAX = 255
PATH_MAX = 4096
XATTR_NAME_MAX = 255  # as Linux
XATTR_NAMESPACES = (b"user.", b"trusted.", b"security.")
RENAME_NOREPLACE = 1  # rename flags, as in renameat2(2)
RENAME_EXCHANGE = 2


def validate_name(name: bytes) -> None:
    """A directory entry name: 1..255 bytes, no '/', no NUL, not '.' or '..'."""
    if not name or name in (b".", b".."):
        raise FsError(errno.EINVAL, f"invalid name {name!r}")
    if b"/" in name or b"\0" in name:
        raise FsError(errno.EINVAL, f"invalid name {name!r}: contains '/' or NUL")
    validate_name_length(name)


def validate_name_length(name: bytes) -> None:
    """ENAMETOOLONG for a name of more than NAME_MAX (255) bytes."""
    if len(name) > NAME_MAX:
        raise FsError(errno.ENAMETOOLONG, f"name is {len(name)} bytes; the limit is {NAME_MAX}")


def validate_xattr_name(name: bytes) -> None:
    """An extended attribute's name: 1..255 bytes in one of Linux's namespaces (user., trusted.,
    security.), with a name after it, as ext4 takes them; not system.* (POSIX ACLs and the like
    are not supported, as on a tmpfs without ACLs)."""
    if not name:
        raise FsError(errno.EINVAL, "empty attribute name")
    if len(name) > XATTR_NAME_MAX:
        raise FsError(errno.ERANGE, f"attribute name longer than {XATTR_NAME_MAX} bytes")
    namespace = next((n for n in XATTR_NAMESPACES if name.startswith(n)), None)
    if namespace is None:
        raise FsError(errno.EOPNOTSUPP, f"{name.decode(errors='replace')} is not in a namespace supported here")
    if len(name) == len(namespace):
        raise FsError(errno.EINVAL, f"no attribute name after {namespace.decode()}")


def xattr_listed_to(name: bytes, uid: int) -> bool:
    """Whether listxattr shows the attribute to a process of this user: trusted.* only to root
    (Linux shows them only to CAP_SYS_ADMIN; getting or setting one is the kernel's to refuse)."""
    return uid == 0 or not name.startswith(b"trusted.")


def split_path(path: str) -> list[bytes]:
    """Components of an absolute DFS path; '.' and empty components are dropped, '..' refused."""
    if not path.startswith("/"):
        raise FsError(errno.EINVAL, f"path {path!r} must be absolute (start with '/')")
    parts = [os.fsencode(p) for p in path.split("/") if p not in ("", ".")]
    for part in parts:
        if part == b"..":
            raise FsError(errno.EINVAL, f"path {path!r}: '..' is not allowed")
        validate_name(part)
    return parts
