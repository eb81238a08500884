"""An in-memory Store for unit tests: same contract as the SQLite store, no disk."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

from libcni.types import IPAddress
from mycni_ipam.store import Lease


class MemoryStore:
    def __init__(self, boot_id: str = "boot-1") -> None:
        self.boot_id = boot_id  # tests change it to simulate a reboot
        self._leases: dict[tuple[str, IPAddress], Lease] = {}
        self._last: dict[tuple[str, int], IPAddress] = {}
        self._boots: dict[str, str] = {}
        self._in_txn = False
        self.lookups = 0  # addresses looked up by taken(), for cost assertions

    def snapshot(self) -> AbstractContextManager[None]:
        return self.transaction()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # Snapshot and restore on error, so a failed ADD leaves nothing behind here
        # just as a rolled-back SQLite transaction does.
        assert not self._in_txn, "transactions do not nest"
        saved = (
            copy.copy(self._leases),
            copy.copy(self._last),
            copy.copy(self._boots),
        )
        self._in_txn = True
        try:
            yield
        except BaseException:
            self._leases, self._last, self._boots = saved
            raise
        finally:
            self._in_txn = False

    def leases_of(self, network: str, container_id: str, ifname: str) -> list[Lease]:
        self._check()
        return sorted(
            (
                lease
                for lease in self._leases.values()
                if (lease.network, lease.container_id, lease.ifname)
                == (network, container_id, ifname)
            ),
            key=lambda lease: lease.range_set,
        )

    def leases_in(self, network: str) -> list[Lease]:
        self._check()
        return [lease for lease in self._leases.values() if lease.network == network]

    def holder(self, network: str, address: IPAddress) -> Lease | None:
        self._check()
        return self._leases.get((network, address))

    def taken(self, network: str, addresses: Sequence[IPAddress]) -> set[IPAddress]:
        self._check()
        self.lookups += len(addresses)
        return {a for a in addresses if (network, a) in self._leases}

    def reserve(self, lease: Lease) -> None:
        self._check()
        key = (lease.network, lease.address)
        if key in self._leases:
            raise AssertionError(f"{lease.address} is already leased")
        for other in self._leases.values():
            if (other.network, other.container_id, other.ifname, other.range_set) == (
                lease.network,
                lease.container_id,
                lease.ifname,
                lease.range_set,
            ):
                raise AssertionError(
                    f"{lease} already holds range set {lease.range_set}"
                )
        self._leases[key] = dataclasses.replace(lease, boot_id=self.boot_id)

    def release(
        self, network: str, container_id: str, ifname: str, range_set: int | None = None
    ) -> list[Lease]:
        dropped = [
            lease
            for lease in self.leases_of(network, container_id, ifname)
            if range_set is None or lease.range_set == range_set
        ]
        for lease in dropped:
            del self._leases[(lease.network, lease.address)]
        return dropped

    def reclaim_earlier_boots(self, network: str) -> list[Lease]:
        self._check()
        if self._boots.get(network) == self.boot_id:
            return []
        self._boots[network] = self.boot_id
        dropped = [
            lease
            for lease in self._leases.values()
            if lease.network == network and lease.boot_id != self.boot_id
        ]
        for lease in dropped:
            del self._leases[(lease.network, lease.address)]
        return dropped

    def last_reserved(self, network: str, range_set: int) -> IPAddress | None:
        self._check()
        return self._last.get((network, range_set))

    def set_last_reserved(
        self, network: str, range_set: int, address: IPAddress
    ) -> None:
        self._check()
        self._last[(network, range_set)] = address

    def all_leases(self) -> list[Lease]:
        return list(self._leases.values())

    def _check(self) -> None:
        assert self._in_txn, "store used outside a transaction"
