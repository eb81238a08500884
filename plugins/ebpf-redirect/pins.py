"""The layout of our objects under the pin root: one program and its maps, per node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROGRAM = "from_pod"
EP4_MAP = "mycni_ep4"
STATS_MAP = "mycni_stats"


@dataclass(frozen=True)
class Pins:
    root: Path

    @property
    def progs(self) -> Path:
        return self.root / "progs"

    @property
    def maps(self) -> Path:
        return self.root / "maps"

    @property
    def program(self) -> Path:
        return self.progs / PROGRAM

    def map(self, name: str) -> Path:
        return self.maps / name

    @property
    def ep4(self) -> Path:
        return self.map(EP4_MAP)

    @property
    def stats(self) -> Path:
        return self.map(STATS_MAP)
