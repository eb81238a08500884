"""The "ipam" section of a network config: range sets, routes and where leases live."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from libcni.errors import InvalidConfig, shown
from libcni.types import IPAddress, IPNetwork, Route, parse_address, parse_network

DEFAULT_DATA_DIR = Path("/var/lib/cni/mycni-ipam")
DEFAULT_LOCK_TIMEOUT = 10.0

# The legacy single-range keys host-local accepts directly under "ipam".
_LEGACY_KEYS = ("subnet", "rangeStart", "rangeEnd", "gateway")


@dataclass(frozen=True)
class Range:
    """A subnet and the span of it we lease; never gateway, network or broadcast."""

    subnet: IPNetwork
    start: IPAddress
    end: IPAddress
    gateway: IPAddress

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Range:
        if not isinstance(obj, dict):
            raise InvalidConfig(f"{where}: expected an object, got {shown(obj)}")
        subnet = _parse_subnet(obj.get("subnet"), f"{where}.subnet")
        start = _parse_member(obj, "rangeStart", subnet, where)
        end = _parse_member(obj, "rangeEnd", subnet, where)
        gateway = _parse_member(obj, "gateway", subnet, where)
        if start is None:
            start = subnet.network_address + 1
        if end is None:
            end = _last_usable(subnet)
        if gateway is None:
            gateway = subnet.network_address + 1
        if int(start) > int(end):
            raise InvalidConfig(f"{where}.rangeStart: {start} is after rangeEnd {end}")
        rng = cls(subnet=subnet, start=start, end=end, gateway=gateway)
        if rng.usable_span() is None:
            raise InvalidConfig(
                f"{where}: {start}-{end} of {subnet} holds no address to hand out once "
                f"gateway {gateway}, network and broadcast are skipped"
            )
        return rng

    @property
    def version(self) -> int:
        return self.subnet.version

    def spans(self, addr: IPAddress) -> bool:
        """Whether addr lies within rangeStart..rangeEnd (reserved ones included)."""
        if addr.version != self.version:
            return False
        return int(self.start) <= int(addr) <= int(self.end)

    def contains(self, addr: IPAddress) -> bool:
        """Whether addr may be handed out from this range."""
        return self.spans(addr) and not self.is_reserved(addr)

    def is_reserved(self, addr: IPAddress) -> bool:
        """Gateway, network address and (IPv4) broadcast are never leased."""
        if addr == self.gateway or addr == self.subnet.network_address:
            return True
        return self.version == 4 and addr == self.subnet.broadcast_address

    def overlaps(self, other: Range) -> bool:
        if self.version != other.version:
            return False
        return int(self.start) <= int(other.end) and int(other.start) <= int(self.end)

    def usable_span(self) -> tuple[IPAddress, IPAddress] | None:
        """First and last address that may be handed out, None when there is none."""
        # At most three addresses are reserved, so a few steps from each end suffice.
        first = next((a for a in self._ends(self.start, 1) if self.contains(a)), None)
        last = next((a for a in self._ends(self.end, -1) if self.contains(a)), None)
        return None if first is None or last is None else (first, last)

    def _ends(self, addr: IPAddress, step: int) -> list[IPAddress]:
        out: list[IPAddress] = []
        for i in range(4):
            candidate = int(addr) + i * step
            if not int(self.start) <= candidate <= int(self.end):
                break
            out.append(type(addr)(candidate))
        return out

    def size(self) -> int:
        """How many addresses this range may hand out."""
        reserved = {self.gateway, self.subnet.network_address}
        if self.version == 4:
            reserved.add(self.subnet.broadcast_address)
        inside = sum(1 for addr in reserved if self.spans(addr))
        return int(self.end) - int(self.start) + 1 - inside

    def describe(self) -> str:
        span = self.usable_span()
        first, last = span if span is not None else (self.start, self.end)
        return f"{self.subnet} ({first}-{last})"


@dataclass(frozen=True)
class RangeSet:
    """Ranges of one family; ADD takes exactly one address from each set."""

    ranges: tuple[Range, ...]

    @classmethod
    def from_json(cls, obj: Any, where: str) -> RangeSet:
        if not isinstance(obj, list):
            raise InvalidConfig(f"{where}: expected a list of ranges, got {shown(obj)}")
        if not obj:
            raise InvalidConfig(f"{where}: empty range set")
        ranges = tuple(Range.from_json(r, f"{where}[{i}]") for i, r in enumerate(obj))
        first = ranges[0]
        for i, rng in enumerate(ranges):
            if rng.version != first.version:
                raise InvalidConfig(
                    f"{where}[{i}].subnet: {rng.subnet} mixes address families with "
                    f"{first.subnet} in one range set"
                )
            for j in range(i):
                if rng.overlaps(ranges[j]):
                    raise InvalidConfig(
                        f"{where}[{i}]: {rng.describe()} overlaps "
                        f"{where}[{j}] {ranges[j].describe()}"
                    )
        return cls(ranges)

    @property
    def version(self) -> int:
        return self.ranges[0].version

    def range_for(self, addr: IPAddress) -> Range | None:
        return next((r for r in self.ranges if r.contains(addr)), None)

    def overlaps(self, other: RangeSet) -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    def describe(self) -> str:
        return ", ".join(r.describe() for r in self.ranges)


@dataclass(frozen=True)
class StoreConf:
    """Where a network's leases live: all DEL needs, so DEL survives a broken range."""

    network: str
    data_dir: Path
    lock_timeout: float

    @classmethod
    def from_json(cls, config: Any) -> StoreConf:
        ipam = _ipam_section(config)
        return cls(
            network=config["name"],
            data_dir=_parse_data_dir(ipam.get("dataDir")),
            lock_timeout=_parse_lock_timeout(ipam.get("lockTimeout")),
        )


@dataclass(frozen=True)
class IpamConf:
    """Everything mycni-ipam needs from the network config."""

    store: StoreConf
    range_sets: tuple[RangeSet, ...]
    routes: tuple[Route, ...]
    resolv_conf: Path | None = None
    # The first ADD after a reboot drops the leases made before it: their pods are
    # gone, and no DEL came for them.
    reclaim_after_reboot: bool = True

    @classmethod
    def from_json(cls, config: Any) -> IpamConf:
        """Parse the whole network config (name + ipam); unknown keys are tolerated."""
        ipam = _ipam_section(config)
        return cls(
            store=StoreConf.from_json(config),
            range_sets=_parse_range_sets(ipam),
            routes=_parse_routes(ipam.get("routes")),
            resolv_conf=_parse_resolv_conf(ipam.get("resolvConf")),
            reclaim_after_reboot=_parse_bool(ipam, "reclaimAfterReboot", True),
        )

    @property
    def network(self) -> str:
        return self.store.network


def _ipam_section(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise InvalidConfig(f"network config: expected an object, got {shown(config)}")
    network = config.get("name")
    if not isinstance(network, str) or not network:
        raise InvalidConfig(f"name: expected a network name, got {shown(network)}")
    ipam = config.get("ipam")
    if not isinstance(ipam, dict):
        raise InvalidConfig(f"ipam: expected an object, got {shown(ipam)}")
    return ipam


def _parse_range_sets(ipam: dict[str, Any]) -> tuple[RangeSet, ...]:
    sets: list[RangeSet] = []
    # Like host-local, the legacy single range becomes the first range set.
    if ipam.get("subnet") is not None:
        legacy = {k: ipam[k] for k in _LEGACY_KEYS if k in ipam}
        sets.append(RangeSet((Range.from_json(legacy, "ipam"),)))
    else:
        for key in _LEGACY_KEYS[1:]:
            if ipam.get(key) is not None:
                raise InvalidConfig(
                    f"ipam.{key}: {shown(ipam[key])} given without ipam.subnet"
                )
    raw = ipam.get("ranges", [])
    if not isinstance(raw, list):
        raise InvalidConfig(
            f"ipam.ranges: expected a list of range sets, got {shown(raw)}"
        )
    sets.extend(RangeSet.from_json(s, f"ipam.ranges[{i}]") for i, s in enumerate(raw))
    if not sets:
        raise InvalidConfig("ipam: no ranges given (need ipam.ranges or ipam.subnet)")

    offset = len(sets) - len(raw)
    for i, rset in enumerate(sets):
        for j in range(i):
            if rset.overlaps(sets[j]):
                raise InvalidConfig(
                    f"{_set_path(i, offset)}: {rset.describe()} overlaps "
                    f"{_set_path(j, offset)} {sets[j].describe()}"
                )
    return tuple(sets)


def _set_path(index: int, offset: int) -> str:
    return "ipam" if index < offset else f"ipam.ranges[{index - offset}]"


def _parse_subnet(text: Any, where: str) -> IPNetwork:
    if text is None:
        raise InvalidConfig(f"{where}: missing")
    if not isinstance(text, str) or "/" not in text:
        raise InvalidConfig(f"{where}: {shown(text)} is not a CIDR")
    subnet = parse_network(text, where)
    if ipaddress.ip_interface(text).ip != subnet.network_address:
        raise InvalidConfig(
            f"{where}: {text} has host bits set (the network is {subnet})"
        )
    # /31 and /32 (/127, /128) leave nothing once network and gateway are skipped.
    if subnet.prefixlen > subnet.max_prefixlen - 2:
        raise InvalidConfig(f"{where}: {subnet} is too small to allocate from")
    return subnet


def _parse_member(
    obj: dict[str, Any], key: str, subnet: IPNetwork, where: str
) -> IPAddress | None:
    if obj.get(key) is None:
        return None
    addr = parse_address(obj[key], f"{where}.{key}")
    if addr not in subnet:
        raise InvalidConfig(f"{where}.{key}: {addr} is outside {subnet}")
    return addr


def _last_usable(subnet: IPNetwork) -> IPAddress:
    # IPv4 keeps its broadcast address; IPv6 has none.
    if subnet.version == 4:
        return subnet.broadcast_address - 1
    return subnet.broadcast_address


def _parse_routes(raw: Any) -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidConfig(f"ipam.routes: expected a list of routes, got {shown(raw)}")
    return tuple(Route.from_dict(r, f"ipam.routes[{i}]") for i, r in enumerate(raw))


def _parse_data_dir(raw: Any) -> Path:
    if raw is None:
        return DEFAULT_DATA_DIR
    if not isinstance(raw, str) or not raw.startswith("/"):
        # A relative path would be a different store in every working directory,
        # and so hand out one address twice.
        raise InvalidConfig(
            f"ipam.dataDir: expected an absolute path, got {shown(raw)}"
        )
    return Path(raw)


def _parse_lock_timeout(raw: Any) -> float:
    if raw is None:
        return DEFAULT_LOCK_TIMEOUT
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 300:
        raise InvalidConfig(
            f"ipam.lockTimeout: expected seconds in (0, 300], got {shown(raw)}"
        )
    return float(raw)


def _parse_resolv_conf(raw: Any) -> Path | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise InvalidConfig(f"ipam.resolvConf: expected a file path, got {shown(raw)}")
    return Path(raw)


def _parse_bool(ipam: dict[str, Any], key: str, default: bool) -> bool:
    raw = ipam.get(key)
    if raw is None:
        return default
    if not isinstance(raw, bool):
        raise InvalidConfig(f"ipam.{key}: expected true or false, got {shown(raw)}")
    return raw
