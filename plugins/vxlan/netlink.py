"""Netlink sessions in a given namespace, and the errno rules of `ensure_*` steps."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from libcni import netns, skel
from libcni.errors import KernelFailure

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# Flags and states from linux/rtnetlink.h and linux/neighbour.h.
RTNH_F_ONLINK = 0x4
NUD_PERMANENT = 0x80
NTF_SELF = 0x02
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200
RT_SCOPE_LINK = 253
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4


@contextlib.contextmanager
def session(netns_fd: int | None = None) -> Iterator[IPRoute]:
    """An IPRoute socket bound to `netns_fd` (or to ours): sockets keep their netns."""
    # pyroute2's import costs ~200 ms; only commands that touch the kernel pay it.
    from pyroute2 import IPRoute

    skel.quiet_libraries()
    if netns_fd is None:
        ipr = IPRoute()
    else:
        with netns.entered(netns_fd):
            ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Name the kernel change in the error the runtime sees, with the reason."""
    try:
        yield
    except Exception as exc:
        code = errno_of(exc)
        if not is_netlink_error(exc) or code is None:
            raise
        raise KernelFailure(f"failed to {what}: {os.strerror(abs(code))}") from exc


def errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, int) else None


def is_netlink_error(exc: BaseException) -> bool:
    from pyroute2.netlink.exceptions import NetlinkError

    return isinstance(exc, NetlinkError)


def tolerate(ipr_call: Any, *codes: int) -> bool:
    """Run a netlink call; True if it did something, False on one of `codes`."""
    try:
        ipr_call()
    except Exception as exc:
        if is_netlink_error(exc) and errno_of(exc) in codes:
            return False
        raise
    return True


def link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def link_name(ipr: IPRoute, index: int) -> str | None:
    found = ipr.get_links(index) if index else []
    return str(found[0].get_attr("IFLA_IFNAME")) if found else None


def delete_link_quietly(ipr: IPRoute, name: str) -> bool:
    """Delete a link by name; a missing link is fine. True if one was deleted."""
    index = link_index(ipr, name)
    if index is None:
        return False
    return tolerate(lambda: ipr.link("del", index=index), errno.ENODEV, errno.ENOENT)
