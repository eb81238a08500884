"""The layout of our objects under the pin root: the programs and their shared maps.

Pins live under <pinRoot>/v<LAYOUT_VERSION>/{progs,maps}. A release that changes a
map's shape or meaning bumps LAYOUT_VERSION, so a node upgraded in place finds the
older layout beside the new one and ADD migrates it (upgrade.py). Version 1 is the
layout from before versioning: <pinRoot>/progs and <pinRoot>/maps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from .bpfobj import FROM_OVERLAY, FROM_POD, ObjectSpec

# 3: mycni_ep6 (IPv6 endpoints) beside mycni_ep4; the programs take IPv6 and leave
# frames to the stack with TC_ACT_UNSPEC.
LAYOUT_VERSION = 3
EP4_MAP = "mycni_ep4"
EP6_MAP = "mycni_ep6"
STATS_MAP = "mycni_stats"
OVL_MAP = "mycni_ovl"
# (key size, value size) that this layout's programs expect of each map: a pin of
# that name with another shape was left by something else and cannot be reused.
MAP_SHAPES = {
    EP4_MAP: (4, 16),
    EP6_MAP: (16, 16),
    STATS_MAP: (4, 8),
    OVL_MAP: (4, 4),
}
# The endpoint map of each address family (IP version).
ENDPOINT_MAPS = {4: EP4_MAP, 6: EP6_MAP}

_VERSION_DIR = re.compile(r"^v([0-9]+)$")
# A current layout set aside because a map in it had the wrong shape.
STALE_PREFIX = "stale-"


@dataclass(frozen=True)
class Pins:
    root: Path
    version: int = LAYOUT_VERSION

    @property
    def base(self) -> Path:
        """Where this layout's progs/ and maps/ are."""
        return self.root if self.version == 1 else self.root / f"v{self.version}"

    @property
    def progs(self) -> Path:
        return self.base / "progs"

    @property
    def maps(self) -> Path:
        return self.base / "maps"

    def prog(self, spec: ObjectSpec) -> Path:
        return self.progs / spec.name

    @property
    def program(self) -> Path:
        """from_pod, on every pod's host veth."""
        return self.prog(FROM_POD)

    @property
    def overlay_program(self) -> Path:
        """from_overlay, on the VXLAN device."""
        return self.prog(FROM_OVERLAY)

    def map(self, name: str) -> Path:
        return self.maps / name

    @property
    def ep4(self) -> Path:
        return self.map(EP4_MAP)

    @property
    def ep6(self) -> Path:
        return self.map(EP6_MAP)

    def endpoint_map(self, ip: IPv4Address | IPv6Address) -> Path:
        """mycni_ep4 or mycni_ep6, by the address's family."""
        return self.map(ENDPOINT_MAPS[ip.version])

    @property
    def endpoint_maps(self) -> tuple[Path, ...]:
        return tuple(self.map(name) for name in ENDPOINT_MAPS.values())

    @property
    def stats(self) -> Path:
        return self.map(STATS_MAP)

    @property
    def ovl(self) -> Path:
        return self.map(OVL_MAP)


def older_layouts(root: Path) -> list[Pins]:
    """Every layout under root other than the current one, oldest first.

    Each is returned as a version-1 Pins of its own directory (progs/ and maps/
    directly below it), which is how every older layout is shaped.
    A set-aside current layout (stale-*) counts as older: its maps have the wrong
    shape but its programs may still run on pods' veths.
    """
    try:
        names = sorted(p.name for p in root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    if "progs" in names or "maps" in names:
        found.append(Pins(root, 1))
    for name in names:
        match = _VERSION_DIR.match(name)
        older = match is not None and int(match[1]) not in (1, LAYOUT_VERSION)
        if older or name.startswith(STALE_PREFIX):
            found.append(Pins(root / name, 1))
    return found
