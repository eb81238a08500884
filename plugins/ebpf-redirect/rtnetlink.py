"""Read-only rtnetlink questions asked without pyroute2: where a link's peer is
(IFLA_LINK, IFLA_LINK_NETNSID), which id this netns gives another netns, and where
the node routes an address (RTM_GETROUTE, as `ip route get`)."""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import TypeVar

from libcni.errors import IOFailure

# include/uapi/linux/netlink.h, rtnetlink.h, if_link.h, net_namespace.h
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
RTM_NEWLINK = 16
RTM_GETLINK = 18
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTM_NEWNSID = 88
RTM_GETNSID = 90
IFLA_LINK = 5
IFLA_LINK_NETNSID = 37
RTA_DST = 1
RTA_OIF = 4
RTN_UNICAST = 1
RTN_LOCAL = 2
NETNSA_NSID = 1
NETNSA_FD = 3
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
RTGENMSG = struct.Struct("=Bxxx")  # family, padded to NLMSG_ALIGNTO
# family, dst_len, src_len, tos, table, protocol, scope, type, flags
RTMSG = struct.Struct("=BBBBBBBBI")
NLATTR = struct.Struct("=HH")  # len, type
ERRMSG = struct.Struct("=i")  # struct nlmsgerr starts with a negative errno
S32 = struct.Struct("=i")
U32 = struct.Struct("=I")
# A link message carries stats and more; a few KiB in practice.
RECV_SIZE = 65536

T = TypeVar("T")


@dataclass(frozen=True)
class LinkPeer:
    """Where a link's other end is, as the link's own netns sees it."""

    index: int
    peer_index: int  # in the netns named by peer_nsid, or in ours when that is None
    peer_nsid: int | None


def link_peer(index: int) -> LinkPeer:
    """IFLA_LINK and IFLA_LINK_NETNSID of the link with this ifindex, in this netns.

    Asking allocates an id for the peer's netns when it has none yet (the kernel's
    rtnl_fill_link_netnsid uses peernet2id_alloc), so nsid_of() called afterwards
    finds it.
    """
    body = IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    return _ask(RTM_GETLINK, body, RTM_NEWLINK, f"link {index}", decode_link)


def nsid_of(fd: int) -> int | None:
    """The id this netns gives the netns open at fd, or None when it gave none."""
    body = RTGENMSG.pack(socket.AF_UNSPEC) + encode_attribute(NETNSA_FD, U32.pack(fd))
    return _ask(RTM_GETNSID, body, RTM_NEWNSID, "a namespace's id", decode_nsid)


@dataclass(frozen=True)
class RouteTo:
    """The node's answer to "where does a packet to this address go"."""

    kind: int  # rtm_type: RTN_UNICAST, RTN_LOCAL (an address of the node), ...
    oif: int | None  # the outgoing ifindex, when the route names one


def route_to(ip: IPv4Address | IPv6Address) -> RouteTo:
    """The route this netns would take to ip; IOFailure when it has none
    (ENETUNREACH, EHOSTUNREACH) or the kernel refused the question."""
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    body = RTMSG.pack(family, ip.max_prefixlen, 0, 0, 0, 0, 0, 0, 0)
    body += encode_attribute(RTA_DST, ip.packed)
    return _ask(RTM_GETROUTE, body, RTM_NEWROUTE, f"the route to {ip}", decode_route)


def _ask(
    kind: int, body: bytes, answer: int, what: str, decode: Callable[[bytes], T]
) -> T:
    seq = 1  # a fresh socket: the only request it ever sends
    kind_of_socket = socket.SOCK_RAW | socket.SOCK_CLOEXEC
    try:
        with socket.socket(socket.AF_NETLINK, kind_of_socket, NETLINK_ROUTE) as sock:
            sock.sendto(encode_request(kind, seq, body), (0, 0))
            data = sock.recv(RECV_SIZE)
        return decode(decode_reply(data, seq, answer))
    except OSError as exc:
        cause = exc.strerror or os.strerror(exc.errno or errno.EIO)
        raise IOFailure(f"failed to ask the kernel for {what}: {cause}") from exc


def encode_request(kind: int, seq: int, body: bytes) -> bytes:
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def encode_attribute(kind: int, value: bytes) -> bytes:
    size = NLATTR.size + len(value)
    return NLATTR.pack(size, kind) + value + bytes(_align(size) - size)


def decode_reply(data: bytes, seq: int, answer: int) -> bytes:
    """The payload of the reply to request seq; OSError when the kernel refused it."""
    at = 0
    while at + NLMSGHDR.size <= len(data):
        size, kind, _, got_seq, _ = NLMSGHDR.unpack_from(data, at)
        if size < NLMSGHDR.size or at + size > len(data):
            break
        payload = data[at + NLMSGHDR.size : at + size]
        if got_seq == seq and kind == NLMSG_ERROR and len(payload) >= ERRMSG.size:
            (error,) = ERRMSG.unpack_from(payload)
            code = -error if error else errno.EPROTO  # 0 is an ack: no answer came
            raise OSError(code, os.strerror(code))
        if got_seq == seq and kind == answer:
            return payload
        at += _align(size)
    raise OSError(errno.EPROTO, "no answer in the netlink reply")


def decode_attributes(data: bytes) -> dict[int, bytes]:
    """Top-level netlink attributes by type; a truncated one ends the list."""
    found: dict[int, bytes] = {}
    at = 0
    while at + NLATTR.size <= len(data):
        size, kind = NLATTR.unpack_from(data, at)
        if size < NLATTR.size or at + size > len(data):
            break
        found.setdefault(kind & NLA_TYPE_MASK, data[at + NLATTR.size : at + size])
        at += _align(size)
    return found


def decode_link(payload: bytes) -> LinkPeer:
    if len(payload) < IFINFOMSG.size:
        raise OSError(errno.EPROTO, "short link message")
    _, _, index, _, _ = IFINFOMSG.unpack_from(payload)
    attrs = decode_attributes(payload[IFINFOMSG.size :])
    # The kernel leaves IFLA_LINK out when it equals the link's own ifindex
    # (rtnl_fill_ifinfo), which a veth whose peer lives in another netns can hit:
    # ifindexes are per netns.
    peer_index = _u32(attrs[IFLA_LINK]) if IFLA_LINK in attrs else index
    nsid = _s32(attrs[IFLA_LINK_NETNSID]) if IFLA_LINK_NETNSID in attrs else None
    return LinkPeer(index=index, peer_index=peer_index, peer_nsid=nsid)


def decode_nsid(payload: bytes) -> int | None:
    attrs = decode_attributes(payload[RTGENMSG.size :])
    if NETNSA_NSID not in attrs:
        raise OSError(errno.EPROTO, "no NETNSA_NSID in the answer")
    nsid = _s32(attrs[NETNSA_NSID])
    return None if nsid < 0 else nsid  # NETNSA_NSID_NOT_ASSIGNED is -1


def decode_route(payload: bytes) -> RouteTo:
    if len(payload) < RTMSG.size:
        raise OSError(errno.EPROTO, "short route message")
    kind = RTMSG.unpack_from(payload)[7]
    attrs = decode_attributes(payload[RTMSG.size :])
    oif = _u32(attrs[RTA_OIF]) if RTA_OIF in attrs else None
    return RouteTo(kind=int(kind), oif=oif)


def _u32(value: bytes) -> int:
    if len(value) < U32.size:
        raise OSError(errno.EPROTO, "short netlink attribute")
    (number,) = U32.unpack_from(value)
    return int(number)


def _s32(value: bytes) -> int:
    if len(value) < S32.size:
        raise OSError(errno.EPROTO, "short netlink attribute")
    (number,) = S32.unpack_from(value)
    return int(number)


def _align(size: int) -> int:
    return (size + 3) & ~3
