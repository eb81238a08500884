"""tcx links: our programs on a device's ingress without a qdisc (kernel 6.6+), and
the other bpf syscalls that spare ADD a bpftool process (a pinned program's id).

Debian's bpftool (7.1) and tc (iproute2 6.1) cannot make tcx links, so this speaks
the bpf syscall itself (include/uapi/linux/bpf.h; offsets below are from there).
A link lives as long as something holds it: we pin it under <pinRoot>/links/, and
unpinning it detaches the program. The kernel detaches it by itself when the device
goes, leaving a pin whose link reports ifindex 0.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass
from pathlib import Path

from libcni.errors import BpfFailure
from libcni.libc import libc

# The syscall number is per architecture (arch/*/include/uapi/asm/unistd*.h).
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}

# enum bpf_cmd
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34
# enum bpf_attach_type and enum bpf_link_type (kernel 6.6, commit e420bed02507)
BPF_TCX_INGRESS = 46
BPF_LINK_TYPE_TCX = 11
# BPF_PROG_QUERY on a tcx hook fails with EINVAL on kernels before 6.6.
_NO_TCX = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOSYS)
# union bpf_attr is larger; the kernel takes a shorter one if the rest would be 0.
_ATTR_SIZE = 128
_INFO_SIZE = 256
MAX_QUERY = 64


class TcxError(BpfFailure):
    """A bpf syscall for a tcx link failed; .errno says why."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = err


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel says of a pinned link: the program it runs and where."""

    id: int
    type: int
    prog_id: int
    ifindex: int  # 0 once the device is gone or the link was detached
    attach_type: int

    @property
    def attached(self) -> bool:
        return self.type == BPF_LINK_TYPE_TCX and self.ifindex != 0


def supported(ifindex: int) -> bool:
    """Whether this kernel has tcx, asked read-only of an existing device."""
    try:
        attached_ids(ifindex)
    except TcxError as exc:
        if exc.errno in _NO_TCX:
            return False
        raise
    return True


def attached_ids(ifindex: int) -> list[int]:
    """Ids of the programs on the device's tcx ingress, in the order they run."""
    ids = (ctypes.c_uint32 * MAX_QUERY)()
    attr = _attr()
    struct.pack_into("=III", attr, 0, ifindex, BPF_TCX_INGRESS, 0)
    struct.pack_into("=Q", attr, 16, ctypes.addressof(ids))
    struct.pack_into("=I", attr, 24, MAX_QUERY)
    _bpf(BPF_PROG_QUERY, attr, f"query tcx programs of ifindex {ifindex}")
    (count,) = struct.unpack_from("=I", attr, 24)
    return list(ids[: min(count, MAX_QUERY)])


def create(program_pin: Path, ifindex: int, link_pin: Path) -> LinkInfo:
    """Attach the pinned program to the device's tcx ingress, after any programs
    already there, and pin the link; returns what the kernel made."""
    with _open(program_pin) as prog_fd:
        attr = _attr()
        struct.pack_into("=IIII", attr, 0, prog_fd, ifindex, BPF_TCX_INGRESS, 0)
        link_fd = _bpf(BPF_LINK_CREATE, attr, f"attach {program_pin.name} by tcx")
    try:
        _pin(link_fd, link_pin)
        return _link_info(link_fd)
    finally:
        os.close(link_fd)


def update(link_pin: Path, program_pin: Path) -> None:
    """Swap the program of a pinned link in place (BPF_LINK_UPDATE is atomic: every
    frame sees the old or the new program)."""
    with _open(link_pin) as link_fd, _open(program_pin) as prog_fd:
        attr = _attr()
        struct.pack_into("=II", attr, 0, link_fd, prog_fd)
        _bpf(BPF_LINK_UPDATE, attr, f"update tcx link {link_pin.name}")


def remove_quietly(link_pin: Path) -> None:
    """Detach the pinned link and remove its pin; tolerate either being gone.

    Only unpinning would detach too, but later: bpffs frees the inode after an RCU
    grace period, and the link with it. BPF_LINK_DETACH takes the program off the
    device now, so DEL returns with the hook as it found it.
    """
    try:
        with _open(link_pin) as link_fd:
            attr = _attr()
            struct.pack_into("=I", attr, 0, link_fd)
            try:
                _bpf(BPF_LINK_DETACH, attr, f"detach tcx link {link_pin.name}")
            except TcxError as exc:
                # ENOLINK: detached already (its device went first).
                if exc.errno != errno.ENOLINK:
                    raise
    except TcxError as exc:
        if exc.errno != errno.ENOENT:
            raise
    link_pin.unlink(missing_ok=True)


def info(link_pin: Path) -> LinkInfo | None:
    """The pinned link's state, or None when there is no such pin."""
    try:
        with _open(link_pin) as fd:
            return _link_info(fd)
    except TcxError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


@dataclass(frozen=True)
class ProgInfo:
    type: int  # enum bpf_prog_type
    id: int
    tag: str  # hex, as bpftool and tc print it


def program_info(program_pin: Path) -> ProgInfo:
    """Type, id and tag of a pinned program (struct bpf_prog_info: type, id, tag[8]).

    A syscall rather than `bpftool prog show`: ADD asks this of each program, and a
    process start costs more than the whole answer.
    """
    with _open(program_pin) as fd:
        raw = _info_by_fd(fd, f"read pinned program {program_pin}")
    prog_type, prog_id = struct.unpack_from("=II", raw, 0)
    return ProgInfo(int(prog_type), int(prog_id), raw[8:16].hex())


def _link_info(fd: int) -> LinkInfo:
    raw = _info_by_fd(fd, "read tcx link")
    # struct bpf_link_info: type, id, prog_id, then at 16 the per-type union,
    # whose tcx member is { ifindex, attach_type }.
    link_type, link_id, prog_id = struct.unpack_from("=III", raw, 0)
    ifindex, attach_type = struct.unpack_from("=II", raw, 16)
    return LinkInfo(link_id, link_type, prog_id, ifindex, attach_type)


def _info_by_fd(fd: int, what: str) -> bytes:
    buf = ctypes.create_string_buffer(_INFO_SIZE)
    attr = _attr()
    struct.pack_into("=IIQ", attr, 0, fd, _INFO_SIZE, ctypes.addressof(buf))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, what)
    return buf.raw


def _pin(fd: int, path: Path) -> None:
    name = ctypes.create_string_buffer(os.fsencode(path))
    attr = _attr()
    struct.pack_into("=QI", attr, 0, ctypes.addressof(name), fd)
    _bpf(BPF_OBJ_PIN, attr, f"pin tcx link at {path}")


class _open:
    """A file descriptor for a pinned object (BPF_OBJ_GET), closed on exit."""

    def __init__(self, path: Path) -> None:
        name = ctypes.create_string_buffer(os.fsencode(path))
        attr = _attr()
        struct.pack_into("=QI", attr, 0, ctypes.addressof(name), 0)
        self.fd = _bpf(BPF_OBJ_GET, attr, f"open pinned object {path}")

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def _attr() -> ctypes.Array[ctypes.c_char]:
    return ctypes.create_string_buffer(_ATTR_SIZE)


def _bpf(cmd: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    number = _SYS_BPF.get(platform.machine())
    if number is None:
        raise TcxError(errno.ENOSYS, f"failed to {what}: unknown architecture")
    call = libc().syscall
    call.restype = ctypes.c_long
    ret = call(
        ctypes.c_long(number), ctypes.c_int(cmd), attr, ctypes.c_uint(_ATTR_SIZE)
    )
    if ret < 0:
        err = ctypes.get_errno()
        raise TcxError(err, f"failed to {what}: {os.strerror(err)}")
    return int(ret)
