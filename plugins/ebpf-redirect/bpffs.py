"""The bpf filesystem under the pin root: detecting it and mounting it when missing."""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

from libcni.errors import IOFailure
from libcni.libc import libc

from . import command
from .lock import locked

log = logging.getLogger(__name__)

BPF_FS_MAGIC = 0xCAFE4A11  # include/uapi/linux/magic.h
SYS_FS_BPF = Path("/sys/fs/bpf")


def fs_magic(path: Path) -> int:
    """statfs(2) f_type of path; Python's os module has no statfs."""
    # struct statfs starts with f_type (__fsword_t, a long on the 64-bit ABIs we
    # run on) and is 120 bytes on x86_64 and arm64; 32 longs leave room.
    buf = (ctypes.c_long * 32)()
    if libc().statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise IOFailure(f"failed to statfs {path}: {os.strerror(err)}")
    return int(buf[0]) & 0xFFFFFFFF


def nearest_existing(path: Path) -> Path:
    """path itself or its closest ancestor that exists."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def is_on_bpffs(path: Path) -> bool:
    return fs_magic(nearest_existing(path)) == BPF_FS_MAGIC


def mount_target(pin_root: Path) -> Path:
    """Where to mount: /sys/fs/bpf for a pin root under it, else the pin root itself."""
    if pin_root == SYS_FS_BPF or SYS_FS_BPF in pin_root.parents:
        return SYS_FS_BPF
    return pin_root


def ensure_mounted(pin_root: Path) -> None:
    """Put pin_root on a bpffs, mounting one as production CNIs do when missing."""
    if is_on_bpffs(pin_root):
        return
    target = mount_target(pin_root)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IOFailure(
            f"failed to create bpffs mount point {target}: {exc.strerror}"
        ) from exc
    # Two ADDs racing here would stack two mounts; the lock on the underlying
    # directory and the re-check make the second one see the first's mount.
    with locked(target):
        if fs_magic(target) == BPF_FS_MAGIC:
            return
        log.debug("mounting bpffs at %s", target)
        command.run(
            f"mount bpffs at {target}", ["mount", "-t", "bpf", "bpf", str(target)]
        )
