"""The layout of our objects under the pin root: the programs and their shared maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .bpfobj import FROM_OVERLAY, FROM_POD, ObjectSpec

EP4_MAP = "mycni_ep4"
STATS_MAP = "mycni_stats"
OVL_MAP = "mycni_ovl"


@dataclass(frozen=True)
class Pins:
    root: Path

    @property
    def progs(self) -> Path:
        return self.root / "progs"

    @property
    def maps(self) -> Path:
        return self.root / "maps"

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
    def stats(self) -> Path:
        return self.map(STATS_MAP)

    @property
    def ovl(self) -> Path:
        return self.map(OVL_MAP)
