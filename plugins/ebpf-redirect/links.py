"""Looking up a link of the current network namespace by name: its ifindex and MAC."""

from __future__ import annotations

import array
import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from libcni.errors import IOFailure

SIOCGIFHWADDR = 0x8927  # include/uapi/linux/sockios.h
SIOCGIFINDEX = 0x8933
SIOCETHTOOL = 0x8946
ETHTOOL_GDRVINFO = 0x03  # include/uapi/linux/ethtool.h
DRVINFO_SIZE = 196  # sizeof(struct ethtool_drvinfo)
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


def name_of(index: int) -> str | None:
    """The name of the link with this ifindex in this netns, or None."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return None


def _index_and_address(name: str) -> tuple[int, bytes]:
    ifreq = struct.pack("16s16x", name.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        by_index = fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, ifreq)
        by_address = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, ifreq)
    # struct ifreq: name[16], then a union: int ifindex, or struct sockaddr with
    # a 2-byte family before the address bytes.
    (index,) = struct.unpack_from("=i", by_index, IFNAMSIZ)
    return index, by_address[IFNAMSIZ + 2 : IFNAMSIZ + 8]


def driver(name: str) -> str:
    """The kernel driver behind a link ("veth", "bridge", ...), by ETHTOOL_GDRVINFO."""
    info = array.array(
        "B", struct.pack("=I", ETHTOOL_GDRVINFO) + bytes(DRVINFO_SIZE - 4)
    )
    address, _ = info.buffer_info()
    # struct ifreq: name[16], then ifr_data, a pointer to the ethtool request.
    ifreq = struct.pack("16sP", name.encode(), address).ljust(40, b"\0")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)
        except OSError as exc:
            raise IOFailure(
                f"failed to ask {name} for its driver: {exc.strerror}"
            ) from exc
    # struct ethtool_drvinfo: __u32 cmd, then char driver[32].
    return info.tobytes()[4:36].split(b"\0", 1)[0].decode("ascii", "replace")
