"""CNI result types (interfaces, ips, routes, dns) and their JSON in each version."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from libcni import version
from libcni.errors import InvalidConfig, shown

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _get(
    obj: dict[str, Any], key: str, kind: type, where: str, default: Any = None
) -> Any:
    value = obj.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidConfig(
            f"{where}.{key}: expected {kind.__name__}, got {shown(value)}"
        )
    return value


def parse_interface_addr(text: Any, where: str) -> IPInterface:
    if not isinstance(text, str) or "/" not in text:
        raise InvalidConfig(
            f"{where}: {shown(text)} is not an address with a prefix length"
        )
    _refuse_scope(text, where)
    try:
        return ipaddress.ip_interface(text)
    except ValueError as exc:
        raise InvalidConfig(f"{where}: {shown(text)} is not an address/prefix") from exc


def _refuse_scope(text: str, where: str) -> None:
    # Python's ipaddress accepts "fd00::1%eth0" (RFC 4007) and keeps the zone apart,
    # so it would vanish from what we pass on; no CNI address carries a zone.
    if "%" in text:
        raise InvalidConfig(
            f"{where}: {shown(text)} has a zone index; pod addresses have none"
        )


def parse_address(text: Any, where: str) -> IPAddress:
    if not isinstance(text, str):
        raise InvalidConfig(
            f"{where}: expected an IP address string, got {shown(text)}"
        )
    _refuse_scope(text, where)
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise InvalidConfig(f"{where}: {shown(text)} is not an IP address") from exc


def parse_network(text: Any, where: str) -> IPNetwork:
    if not isinstance(text, str):
        raise InvalidConfig(f"{where}: expected a CIDR string, got {shown(text)}")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise InvalidConfig(f"{where}: {shown(text)} is not a CIDR") from exc


def parse_mac(text: Any, where: str) -> str:
    """A unicast Ethernet address, returned as lowercase aa:bb:cc:dd:ee:ff."""
    parts = text.replace("-", ":").split(":") if isinstance(text, str) else []
    if len(parts) != 6 or not all(
        len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p) for p in parts
    ):
        raise InvalidConfig(f"{where}: {shown(text)} is not a MAC address")
    if int(parts[0], 16) & 1:
        raise InvalidConfig(f"{where}: {text} is a multicast MAC address")
    return ":".join(p.lower() for p in parts)


@dataclass(frozen=True)
class Interface:
    name: str
    mac: str = ""
    sandbox: str = ""
    mtu: int | None = None

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> Interface:
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")
        name = _get(obj, "name", str, where, "")
        if not name:
            raise InvalidConfig(f"{where}.name: missing")
        return cls(
            name=name,
            mac=_get(obj, "mac", str, where, ""),
            sandbox=_get(obj, "sandbox", str, where, ""),
            mtu=_get(obj, "mtu", int, where),
        )

    def to_dict(self, ver: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.mtu is not None and version.at_least(ver, "1.1.0"):
            out["mtu"] = self.mtu
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


@dataclass(frozen=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> IPConfig:
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")
        address = parse_interface_addr(obj.get("address"), f"{where}.address")
        gateway = None
        if obj.get("gateway") is not None:
            gateway = parse_address(obj["gateway"], f"{where}.gateway")
            if gateway.version != address.version:
                raise InvalidConfig(
                    f"{where}.gateway: {gateway} is IPv{gateway.version}, the address "
                    f"{address} IPv{address.version}"
                )
        interface = _get(obj, "interface", int, where)
        if interface is not None and interface < 0:
            raise InvalidConfig(f"{where}.interface: {interface} is negative")
        return cls(address=address, gateway=gateway, interface=interface)

    def to_dict(self, ver: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not version.at_least(ver, "1.0.0"):
            out["version"] = str(self.address.version)
        out["address"] = str(self.address)
        if self.gateway is not None:
            out["gateway"] = str(self.gateway)
        if self.interface is not None:
            out["interface"] = self.interface
        return out


@dataclass(frozen=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> Route:
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")
        dst = parse_network(obj.get("dst"), f"{where}.dst")
        gw = None
        if obj.get("gw") is not None:
            gw = parse_address(obj["gw"], f"{where}.gw")
            if gw.version != dst.version:
                raise InvalidConfig(f"{where}.gw: {gw} is not of the family of {dst}")
        return cls(dst=dst, gw=gw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dst": str(self.dst)}
        if self.gw is not None:
            out["gw"] = str(self.gw)
        return out


@dataclass(frozen=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> DNS:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")

        def strings(key: str) -> tuple[str, ...]:
            items = _get(obj, key, list, where, [])
            if not all(isinstance(i, str) for i in items):
                raise InvalidConfig(f"{where}.{key}: expected a list of strings")
            return tuple(items)

        return cls(
            nameservers=strings("nameservers"),
            domain=_get(obj, "domain", str, where, ""),
            search=strings("search"),
            options=strings("options"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.nameservers:
            out["nameservers"] = list(self.nameservers)
        if self.domain:
            out["domain"] = self.domain
        if self.search:
            out["search"] = list(self.search)
        if self.options:
            out["options"] = list(self.options)
        return out


@dataclass(frozen=True)
class Result:
    """A plugin's ADD result; the same shape serves 0.3.0 to 1.1.0 on output."""

    cni_version: str = version.LATEST
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = field(default_factory=DNS)

    @classmethod
    def from_dict(cls, obj: Any, where: str = "result") -> Result:
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")
        ver = obj.get("cniVersion", version.LATEST)
        if not isinstance(ver, str):
            raise InvalidConfig(
                f"{where}.cniVersion: expected a string, got {shown(ver)}"
            )

        def items(key: str) -> list[Any]:
            value = _get(obj, key, list, where, [])
            return list(value)

        interfaces = tuple(
            Interface.from_dict(o, f"{where}.interfaces[{i}]")
            for i, o in enumerate(items("interfaces"))
        )
        ips = tuple(
            IPConfig.from_dict(o, f"{where}.ips[{i}]")
            for i, o in enumerate(items("ips"))
        )
        for i, ip in enumerate(ips):
            if ip.interface is not None and ip.interface >= len(interfaces):
                raise InvalidConfig(
                    f"{where}.ips[{i}].interface: index {ip.interface} is out of range "
                    f"({len(interfaces)} interfaces)"
                )
        routes = tuple(
            Route.from_dict(o, f"{where}.routes[{i}]")
            for i, o in enumerate(items("routes"))
        )
        dns = DNS.from_dict(obj.get("dns"), f"{where}.dns")
        return cls(ver, interfaces, ips, routes, dns)

    def to_dict(self, ver: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": ver}
        if self.interfaces:
            out["interfaces"] = [i.to_dict(ver) for i in self.interfaces]
        if self.ips:
            out["ips"] = [ip.to_dict(ver) for ip in self.ips]
        if self.routes:
            out["routes"] = [r.to_dict() for r in self.routes]
        dns = self.dns.to_dict()
        if dns:
            out["dns"] = dns
        return out

    def host_interface(self) -> Interface | None:
        """The first interface outside any sandbox: by convention the host end."""
        return next((i for i in self.interfaces if not i.sandbox), None)

    def ips_on(self, index: int) -> tuple[IPConfig, ...]:
        return tuple(ip for ip in self.ips if ip.interface == index)


@dataclass(frozen=True)
class PassThrough:
    """A chained plugin's answer when it adds nothing: prevResult exactly as the
    runtime sent it, fields this library does not model (CNI 1.1 route mtu, table,
    interface socketPath...) included."""

    data: dict[str, Any]

    def to_dict(self, ver: str) -> dict[str, Any]:
        return {**self.data, "cniVersion": ver}


def pass_through(config: dict[str, Any], ver: str) -> PassThrough | Result | None:
    """prevResult to hand on: untouched in the request's version, else converted."""
    prev = config.get("prevResult")
    if not isinstance(prev, dict) or not prev:
        return None
    if prev.get("cniVersion", ver) == ver:
        return PassThrough(prev)
    return Result.from_dict(prev, "prevResult")


def prev_result(config: dict[str, Any]) -> Result | None:
    """The prevResult of a chained call, or None when the runtime sent none or {}."""
    prev = config.get("prevResult")
    if prev is None or prev == {}:
        return None
    return Result.from_dict(prev, "prevResult")
