"""Looking up a link of the current network namespace by name: its ifindex and MAC."""

from __future__ import annotations

import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from libcni.errors import IOFailure

SIOCGIFHWADDR = 0x8927  # include/uapi/linux/sockios.h
SIOCGIFINDEX = 0x8933
IFNAMSIZ = 16


@dataclass(frozen=True)
class Link:
    name: str
    index: int
    mac: bytes


def find(name: str) -> Link | None:
    """The link called name in this netns, or None when there is none.

    ioctls rather than /sys/class/net: under nsenter --net, /sys still shows the
    root namespace's links (sysfs is tied to the mount namespace). Not
    socket.if_nametoindex either: it raises OSError without an errno.
    """
    if not name or len(name.encode()) >= IFNAMSIZ or "/" in name:
        return None
    try:
        index, mac = _index_and_address(name)
    except OSError as exc:
        if exc.errno in (errno.ENODEV, errno.ENXIO):
            return None
        raise IOFailure(f"failed to look up link {name}: {exc.strerror}") from exc
    return Link(name=name, index=index, mac=mac)


def _index_and_address(name: str) -> tuple[int, bytes]:
    ifreq = struct.pack("16s16x", name.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        by_index = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, ifreq)
        by_address = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, ifreq)
    # struct ifreq: name[16], then a union: int ifindex, or struct sockaddr with
    # a 2-byte family before the address bytes.
    (index,) = struct.unpack_from("=i", by_index, IFNAMSIZ)
    return index, by_address[IFNAMSIZ + 2 : IFNAMSIZ + 8]
