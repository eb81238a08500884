"""The narrow storage interface the allocator sees: leases by address and owner."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from libcni.types import IPAddress


@dataclass(frozen=True)
class Lease:
    """One address held by (network, container, ifname) from one range set."""

    network: str
    range_set: int
    address: IPAddress
    container_id: str
    ifname: str
    # Where and when it was made: for reboot reclaim and the inspect command; two
    # leases are the same lease whatever these say.
    boot_id: str = field(default="", compare=False)
    created: str = field(default="", compare=False)


class Store(Protocol):
    """Lease storage; every other method is called inside `transaction()`.

    A transaction is all-or-nothing and excludes other writers for its whole length,
    so a scan followed by a reserve cannot race another process.
    """

    def transaction(self) -> AbstractContextManager[None]: ...

    def snapshot(self) -> AbstractContextManager[None]:
        """A consistent read that never waits for a writer (CHECK, STATUS, inspect)."""
        ...

    def leases_of(
        self, network: str, container_id: str, ifname: str
    ) -> list[Lease]: ...

    def leases_in(self, network: str) -> list[Lease]:
        """Every lease of the network: for GC only, which must look at them all."""
        ...

    def holder(self, network: str, address: IPAddress) -> Lease | None: ...

    def taken(self, network: str, addresses: Sequence[IPAddress]) -> set[IPAddress]:
        """The subset of addresses already leased in network (point lookups)."""
        ...

    def reserve(self, lease: Lease) -> None: ...

    def release(
        self, network: str, container_id: str, ifname: str, range_set: int | None = None
    ) -> list[Lease]:
        """Drop the owner's leases (of one range set, or all); return the dropped."""
        ...

    def reclaim_earlier_boots(self, network: str) -> list[Lease]:
        """On the first call after a reboot, drop the leases of earlier boots."""
        ...

    def last_reserved(self, network: str, range_set: int) -> IPAddress | None: ...

    def set_last_reserved(
        self, network: str, range_set: int, address: IPAddress
    ) -> None: ...
