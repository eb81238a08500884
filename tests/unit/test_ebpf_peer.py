"""Telling whether a host link's peer is the pod's interface, from what the kernel
reports about each end."""

from __future__ import annotations

import pytest

from mycni_ebpf_redirect.peer import mismatch
from mycni_ebpf_redirect.rtnetlink import LinkPeer

POD_NSID = 3


@pytest.mark.parametrize(
    ("peer", "pod_nsid", "pod_index", "words"),
    [
        (LinkPeer(9, 2, None), POD_NSID, 2, "in the node's own namespace"),
        (LinkPeer(9, 2, 5), POD_NSID, 2, "(ifindex 2) is in another namespace"),
        (LinkPeer(9, 2, 5), None, 2, "(ifindex 2) is in another namespace"),
        (LinkPeer(9, 3, POD_NSID), POD_NSID, 2, "its peer is ifindex 3, eth0 is 2"),
        (LinkPeer(9, 2, POD_NSID), POD_NSID, None, "CNI_NETNS has no eth0"),
        (LinkPeer(9, 2, -1), POD_NSID, 2, "gave its peer's namespace no id"),
    ],
    ids=[
        "peer-on-the-node",
        "peer-in-another-netns",
        "pod-netns-without-id",
        "another-link-of-the-pod",
        "no-such-ifname-in-the-pod",
        "peer-nsid-unassigned",
    ],
)
def test_a_mismatch_says_where_the_peer_is(
    peer: LinkPeer, pod_nsid: int | None, pod_index: int | None, words: str
) -> None:
    assert words in mismatch(peer, pod_nsid, pod_index, "eth0")


def test_the_pods_interface_in_the_pods_namespace_matches() -> None:
    assert mismatch(LinkPeer(9, 2, POD_NSID), POD_NSID, 2, "eth0") == ""


def test_equal_ifindexes_on_both_ends_match() -> None:
    """Ifindexes are per namespace: the host end and the pod end may share one."""
    assert mismatch(LinkPeer(2, 2, POD_NSID), POD_NSID, 2, "eth0") == ""
