"""Encoding rtnetlink requests and decoding the answers about a link's peer and a
namespace's id; one read-only question about lo in our own namespace."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from libcni.errors import IOFailure
from mycni_ebpf_redirect import rtnetlink as rt
from mycni_ebpf_redirect.rtnetlink import LinkPeer


def message(kind: int, seq: int, payload: bytes) -> bytes:
    return struct.pack("=IHHII", 16 + len(payload), kind, 0, seq, 4242) + payload


def attribute(kind: int, value: bytes) -> bytes:
    return rt.encode_attribute(kind, value)


def link_message(index: int, *attrs: bytes) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, 0, 0) + b"".join(attrs)


def test_a_request_carries_its_length_type_flags_and_seq() -> None:
    body = rt.RTGENMSG.pack(0) + attribute(rt.NETNSA_FD, struct.pack("=I", 7))
    raw = rt.encode_request(rt.RTM_GETNSID, 1, body)
    assert struct.unpack_from("=IHHII", raw) == (len(raw), 90, 1, 1, 0)
    # rtgenmsg padded to 4, then the attribute: len 8, type 3, the fd.
    assert raw[16:] == b"\0\0\0\0" + struct.pack("=HHI", 8, 3, 7)


def test_attributes_are_padded_to_four_bytes() -> None:
    assert attribute(3, b"eth0\0") == struct.pack("=HH", 9, 3) + b"eth0\0\0\0\0"


def test_attributes_decode_by_type_without_the_nested_flag() -> None:
    data = attribute(3, b"eth0\0") + attribute(0x8000 | 18, b"\1\2\3\4")
    assert rt.decode_attributes(data) == {3: b"eth0\0", 18: b"\1\2\3\4"}


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("=HH", 40, 5) + b"\0\0\0\0",  # claims more than there is
        struct.pack("=HH", 2, 5) + b"\0\0\0\0",  # shorter than its own header
        b"\1\0",  # half a header
    ],
    ids=["overlong", "undersized", "half-header"],
)
def test_a_truncated_attribute_ends_the_list(data: bytes) -> None:
    assert rt.decode_attributes(attribute(37, b"\0\0\0\0") + data) == {37: bytes(4)}


def test_a_veth_in_another_namespace_names_peer_index_and_nsid() -> None:
    payload = link_message(
        9,
        attribute(3, b"mc1234\0"),
        attribute(rt.IFLA_LINK, struct.pack("=I", 2)),
        attribute(rt.IFLA_LINK_NETNSID, struct.pack("=i", 4)),
    )
    assert rt.decode_link(payload) == LinkPeer(index=9, peer_index=2, peer_nsid=4)


def test_a_missing_ifla_link_means_the_peer_has_the_links_own_index() -> None:
    """rtnl_fill_ifinfo omits IFLA_LINK when it equals the ifindex: across
    namespaces a veth's two ends can both be, say, ifindex 2."""
    payload = link_message(2, attribute(rt.IFLA_LINK_NETNSID, struct.pack("=i", 0)))
    assert rt.decode_link(payload) == LinkPeer(index=2, peer_index=2, peer_nsid=0)


def test_without_ifla_link_netnsid_the_peer_is_in_our_namespace() -> None:
    payload = link_message(5, attribute(rt.IFLA_LINK, struct.pack("=I", 6)))
    assert rt.decode_link(payload) == LinkPeer(index=5, peer_index=6, peer_nsid=None)


def test_a_short_link_message_is_a_protocol_error() -> None:
    with pytest.raises(OSError) as err:
        rt.decode_link(b"\0" * 8)
    assert err.value.errno == errno.EPROTO


@pytest.mark.parametrize(
    ("nsid", "want"), [(0, 0), (7, 7), (-1, None)], ids=["zero", "seven", "unassigned"]
)
def test_nsid_answers(nsid: int, want: int | None) -> None:
    payload = rt.RTGENMSG.pack(0) + attribute(rt.NETNSA_NSID, struct.pack("=i", nsid))
    assert rt.decode_nsid(payload) == want


def test_an_nsid_answer_without_the_id_is_a_protocol_error() -> None:
    with pytest.raises(OSError) as err:
        rt.decode_nsid(rt.RTGENMSG.pack(0))
    assert err.value.errno == errno.EPROTO


def test_the_reply_to_our_seq_is_found_after_other_messages() -> None:
    noise = message(rt.RTM_NEWLINK, 99, link_message(1))
    mine = message(rt.RTM_NEWLINK, 1, link_message(3))
    assert rt.decode_reply(noise + mine, 1, rt.RTM_NEWLINK) == link_message(3)


def test_a_netlink_error_becomes_its_errno() -> None:
    refused = message(rt.NLMSG_ERROR, 1, struct.pack("=i", -errno.ENODEV) + bytes(16))
    with pytest.raises(OSError) as err:
        rt.decode_reply(refused, 1, rt.RTM_NEWLINK)
    assert err.value.errno == errno.ENODEV


@pytest.mark.parametrize(
    "data",
    [
        b"",
        message(rt.NLMSG_ERROR, 1, struct.pack("=i", 0) + bytes(16)),  # a bare ack
        message(rt.RTM_NEWLINK, 1, link_message(3))[:-4],  # cut short
    ],
    ids=["empty", "ack-only", "truncated"],
)
def test_no_answer_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(OSError) as err:
        rt.decode_reply(data, 1, rt.RTM_NEWLINK)
    assert err.value.errno == errno.EPROTO


def test_lo_in_our_own_namespace_is_its_own_peer() -> None:
    """Read-only: the kernel accepts our encoding and we read its answer."""
    index = socket.if_nametoindex("lo")
    assert rt.link_peer(index) == LinkPeer(
        index=index, peer_index=index, peer_nsid=None
    )


def test_asking_about_a_missing_link_is_an_io_failure() -> None:
    with pytest.raises(IOFailure) as err:
        rt.link_peer(2**31 - 1)
    assert "No such device" in err.value.msg
