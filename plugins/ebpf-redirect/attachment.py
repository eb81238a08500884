"""What the fast path needs from prevResult: host veth, pod MAC and IP addresses."""

from __future__ import annotations

from dataclasses import dataclass

from libcni.errors import InvalidConfig
from libcni.types import IPAddress, Result

from .maps import parse_mac


@dataclass(frozen=True)
class Attachment:
    host_veth: str
    pod_mac: bytes
    ips: tuple[IPAddress, ...]

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
        try:
            pod_mac = parse_mac(prev.interfaces[index].mac)
        except ValueError as exc:
            raise InvalidConfig(
                f"{where}: {prev.interfaces[index].mac!r} is not a MAC address"
            ) from exc
        # An ips entry without "interface" is taken to belong to the pod (spec
        # 1.0 "ips": the field is optional).
        ips = tuple(ip.address.ip for ip in prev.ips if ip.interface in (None, index))
        return cls(host_veth=host.name, pod_mac=pod_mac, ips=ips)
