"""What the fast path needs from prevResult: host veth, pod MAC and IP addresses."""

from __future__ import annotations

from dataclasses import dataclass

from libcni.errors import InvalidConfig
from libcni.types import IPAddress, IPInterface, Result
from libcni.types import parse_mac as unicast_mac

from .maps import parse_mac


@dataclass(frozen=True)
class Attachment:
    host_veth: str
    pod_mac: bytes
    ips: tuple[IPAddress, ...]
    # Where host_veth came from, for errors: "prevResult.interfaces[0].name".
    host_field: str = "prevResult.interfaces[0].name"

    @classmethod
    def from_prev_result(cls, prev: Result, ifname: str) -> Attachment:
        host = prev.host_interface()
        if host is None:
            raise InvalidConfig(
                "prevResult.interfaces: no host-side interface (one without sandbox)"
            )
        index = next(
            (
                i
                for i, iface in enumerate(prev.interfaces)
                if iface.sandbox and iface.name == ifname
            ),
            None,
        )
        if index is None:
            raise InvalidConfig(
                f"prevResult.interfaces: no interface {ifname} inside a sandbox"
            )
        where = f"prevResult.interfaces[{index}].mac"
        # Unicast only: it becomes the destination MAC of every redirected frame.
        pod_mac = parse_mac(unicast_mac(prev.interfaces[index].mac, where))
        if not any(pod_mac):
            raise InvalidConfig(f"{where}: 00:00:00:00:00:00 is not a MAC address")
        # An ips entry without "interface" is taken to belong to the pod (spec
        # 1.0 "ips": the field is optional).
        mine = [
            (i, ip) for i, ip in enumerate(prev.ips) if ip.interface in (None, index)
        ]
        for i, ip in mine:
            _check_pod_address(prev, i, ip.address)
        ips = tuple(ip.address.ip for _, ip in mine)
        return cls(
            host_veth=host.name,
            pod_mac=pod_mac,
            ips=ips,
            host_field=f"prevResult.interfaces[{prev.interfaces.index(host)}].name",
        )


def _check_pod_address(prev: Result, i: int, address: IPInterface) -> None:
    """Refuse an address that would steal traffic once in the endpoint map: frames
    to it would be redirected into this pod instead of reaching their owner."""
    ip = address.ip
    why = ""
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        why = "is not a unicast pod address"
    elif (
        ip.version == 4
        and address.network.prefixlen < 31
        and ip
        in (
            address.network.network_address,
            address.network.broadcast_address,
        )
    ):
        why = f"is the network or broadcast address of {address.network}"
    elif any(other.gateway == ip for other in prev.ips):
        why = "is a gateway in prevResult.ips"
    if why:
        raise InvalidConfig(f"prevResult.ips[{i}].address: {ip} {why}")
