"""Network namespaces by file descriptor: open one safely, and step into it and back."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
from collections.abc import Iterator

from libcni.errors import InvalidEnvironment
from libcni.libc import libc

CLONE_NEWNET = 0x40000000
# ioctl(2) on an nsfs file: returns the namespace type (linux/nsfs.h, since 4.11).
NS_GET_NSTYPE = 0xB703


def _setns(fd: int) -> None:
    # os.setns exists only from Python 3.12; call libc directly.
    if libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def is_netns(fd: int) -> bool:
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def open_netns(path: str) -> int:
    """Open CNI_NETNS read-only; never creates anything. Raise naming the variable."""
    if not path:
        raise InvalidEnvironment("invalid CNI_NETNS: empty")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidEnvironment(
            f"failed to open CNI_NETNS {path}: {exc.strerror}"
        ) from exc
    if not is_netns(fd):
        os.close(fd)
        raise InvalidEnvironment(f"invalid CNI_NETNS {path}: not a network namespace")
    if is_current(fd):
        os.close(fd)
        raise InvalidEnvironment(
            f"invalid CNI_NETNS {path}: it is the namespace the plugin runs in, "
            "not a pod's"
        )
    return fd


def is_current(fd: int) -> bool:
    """Whether fd is the network namespace this thread is in (same nsfs inode)."""
    mine = os.stat("/proc/thread-self/ns/net")
    theirs = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)


def open_netns_if_present(path: str) -> int | None:
    """For DEL: a missing, empty or stale CNI_NETNS means the netns is already gone."""
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EINVAL):
            return None
        raise
    if not is_netns(fd):
        os.close(fd)
        return None
    return fd


@contextlib.contextmanager
def entered(fd: int) -> Iterator[None]:
    """Run the block in the namespace `fd` (this thread only), then switch back."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
