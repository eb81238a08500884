"""The pod's veth pair: a name derived from the attachment, born in the pod netns."""

from __future__ import annotations

import errno
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libcni.errors import ConflictingState
from mycni_vxlan import netlink

if TYPE_CHECKING:
    from pyroute2 import IPRoute

log = logging.getLogger(__name__)

IFNAMSIZ = 16


def host_name(prefix: str, network: str, container_id: str, ifname: str) -> str:
    """A stable host-side name, so DEL finds the veth without any prevResult."""
    digest = hashlib.sha256(f"{network}\0{container_id}\0{ifname}".encode()).hexdigest()
    return prefix + digest[: IFNAMSIZ - 1 - len(prefix)]


@dataclass(frozen=True)
class VethPair:
    host_name: str
    host_index: int
    host_mac: str
    pod_name: str
    pod_index: int
    pod_mac: str


@dataclass(frozen=True)
class PairSpec:
    host: str
    ifname: str
    mtu: int
    pod_mac: str | None = None


def create_pair(node: IPRoute, pod: IPRoute, pod_fd: int, spec: PairSpec) -> VethPair:
    """Create host<->pod veths; the pod end is born in the pod namespace."""
    host, ifname, mtu = spec.host, spec.ifname, spec.mtu
    if netlink.delete_link_quietly(node, host):
        log.warning(
            "removed stale host veth %s left by an earlier ADD of the same attachment",
            host,
        )
    peer: dict[str, object] = {"ifname": ifname, "net_ns_fd": pod_fd, "mtu": mtu}
    if spec.pod_mac:
        peer["address"] = spec.pod_mac
    try:
        node.link("add", ifname=host, kind="veth", mtu=mtu, peer=peer)
    except Exception as exc:
        if netlink.is_netlink_error(exc) and netlink.errno_of(exc) == errno.EEXIST:
            raise ConflictingState(
                f"failed to create veth {host}/{ifname}: an interface exists"
            ) from exc
        raise
    log.debug("created veth %s with peer %s (mtu %d)", host, ifname, mtu)
    host_link = node.get_links(ifname=host)[0]
    pod_link = pod.get_links(ifname=ifname)[0]
    return VethPair(
        host_name=host,
        host_index=int(host_link["index"]),
        host_mac=str(host_link.get("address")),
        pod_name=ifname,
        pod_index=int(pod_link["index"]),
        pod_mac=str(pod_link.get("address")),
    )
