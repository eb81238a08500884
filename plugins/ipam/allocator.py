"""Choosing addresses: one per range set, a repeated ADD gets its old ones back."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator, Sequence, Set
from dataclasses import dataclass

from libcni.errors import AddressExhausted, ConflictingState, InvalidEnvironment
from libcni.types import IPAddress, IPConfig
from mycni_ipam.config import IpamConf, Range, RangeSet
from mycni_ipam.store import Lease, Store

log = logging.getLogger(__name__)

# Candidates are looked up in growing batches: the first one is usually free, and
# a crowded range should not cost one query per address.
_FIRST_BATCH = 8
_MAX_BATCH = 512


@dataclass(frozen=True)
class Allocation:
    range_set: int
    address: IPAddress
    range: Range

    def to_ip_config(self) -> IPConfig:
        iface = ipaddress.ip_interface(f"{self.address}/{self.range.subnet.prefixlen}")
        return IPConfig(address=iface, gateway=self.range.gateway)


@dataclass(frozen=True)
class Owner:
    network: str
    container_id: str
    ifname: str

    def describe(self) -> str:
        return f"container {self.container_id} ifname {self.ifname}"


def allocate(
    store: Store, conf: IpamConf, owner: Owner, requested: Sequence[IPAddress] = ()
) -> tuple[Allocation, ...]:
    """Lease one address from each range set, all or nothing, in one transaction."""
    wanted = match_requested(conf, requested)
    with store.transaction():
        if conf.reclaim_after_reboot:
            _reclaim(store, conf.network)
        held = {
            lease.range_set: lease
            for lease in store.leases_of(
                owner.network, owner.container_id, owner.ifname
            )
        }
        return tuple(
            _allocate_in_set(store, conf, owner, idx, held.get(idx), wanted.get(idx))
            for idx in range(len(conf.range_sets))
        )


def _reclaim(store: Store, network: str) -> None:
    dropped = store.reclaim_earlier_boots(network)
    if dropped:
        log.info(
            "reclaimed %d leases of network %s made before this boot: %s",
            len(dropped),
            network,
            ", ".join(str(lease.address) for lease in dropped),
        )


@dataclass(frozen=True)
class FreeCount:
    range_set: int
    range: Range
    free: int


def count_free(store: Store, conf: IpamConf, boot_id: str) -> list[FreeCount]:
    """Free addresses per range; with reboot reclaim on, leases of other boots than
    boot_id count as free, since the next ADD drops them."""
    with store.snapshot():
        leases = store.leases_in(conf.network)
    used: dict[tuple[int, Range], int] = {}
    for lease in leases:
        if conf.reclaim_after_reboot and boot_id and lease.boot_id != boot_id:
            continue
        if lease.range_set >= len(conf.range_sets):
            continue
        rng = conf.range_sets[lease.range_set].range_for(lease.address)
        if rng is not None:
            used[(lease.range_set, rng)] = used.get((lease.range_set, rng), 0) + 1
    return [
        FreeCount(idx, rng, rng.size() - used.get((idx, rng), 0))
        for idx, rset in enumerate(conf.range_sets)
        for rng in rset.ranges
    ]


def release(store: Store, owner: Owner) -> list[Lease]:
    with store.transaction():
        return store.release(owner.network, owner.container_id, owner.ifname)


def release_all_but(
    store: Store, network: str, keep: Set[tuple[str, str]]
) -> list[Lease]:
    """Drop every lease whose (container, ifname) is not in keep (CNI GC)."""
    with store.transaction():
        dropped = []
        for lease in store.leases_in(network):
            if (lease.container_id, lease.ifname) not in keep:
                dropped += store.release(
                    network, lease.container_id, lease.ifname, lease.range_set
                )
        return dropped


def find(store: Store, conf: IpamConf, owner: Owner) -> tuple[Allocation, ...]:
    """The owner's current leases that still fit the config; no change is made."""
    with store.snapshot():
        leases = store.leases_of(owner.network, owner.container_id, owner.ifname)
    found = []
    for lease in leases:
        if lease.range_set >= len(conf.range_sets):
            continue
        rng = conf.range_sets[lease.range_set].range_for(lease.address)
        if rng is not None:
            found.append(Allocation(lease.range_set, lease.address, rng))
    return tuple(found)


def match_requested(
    conf: IpamConf, requested: Sequence[IPAddress]
) -> dict[int, IPAddress]:
    """Map each requested address to the range set whose span holds it."""
    wanted: dict[int, IPAddress] = {}
    for addr in requested:
        idx = next(
            (
                i
                for i, rset in enumerate(conf.range_sets)
                if any(r.spans(addr) for r in rset.ranges)
            ),
            None,
        )
        if idx is None:
            raise InvalidEnvironment(
                f"failed to allocate for network {conf.network}: requested address "
                f"{addr} is not in any range"
            )
        if idx in wanted:
            raise InvalidEnvironment(
                f"failed to allocate for network {conf.network}: requested addresses "
                f"{wanted[idx]} and {addr} are both in range set {idx}"
            )
        wanted[idx] = addr
    return wanted


def _allocate_in_set(
    store: Store,
    conf: IpamConf,
    owner: Owner,
    idx: int,
    held: Lease | None,
    wanted: IPAddress | None,
) -> Allocation:
    rset = conf.range_sets[idx]
    if held is not None:
        rng = rset.range_for(held.address)
        if rng is not None and wanted in (None, held.address):
            log.debug("%s already holds %s", owner.describe(), held.address)
            return Allocation(idx, held.address, rng)
        if rng is not None:
            raise ConflictingState(
                f"failed to allocate for network {conf.network}: {owner.describe()} "
                f"already holds {held.address}, not the requested {wanted}"
            )
        log.warning(
            "lease %s of %s in network %s is outside range set %d since the config "
            "changed; replacing it",
            held.address,
            owner.describe(),
            conf.network,
            idx,
        )
        store.release(owner.network, owner.container_id, owner.ifname, idx)

    if wanted is not None:
        addr = _check_requested(store, conf, rset, wanted)
    else:
        addr = _scan(store, conf, idx, rset)

    store.reserve(Lease(owner.network, idx, addr, owner.container_id, owner.ifname))
    store.set_last_reserved(owner.network, idx, addr)
    log.debug("leased %s to %s", addr, owner.describe())
    rng = rset.range_for(addr)
    assert rng is not None
    return Allocation(idx, addr, rng)


def _check_requested(
    store: Store, conf: IpamConf, rset: RangeSet, addr: IPAddress
) -> IPAddress:
    if rset.range_for(addr) is None:
        raise InvalidEnvironment(
            f"failed to allocate for network {conf.network}: requested address {addr} "
            "is a gateway, network or broadcast address"
        )
    holder = store.holder(conf.network, addr)
    if holder is not None:
        raise ConflictingState(
            f"failed to allocate for network {conf.network}: requested address {addr} "
            f"is held by container {holder.container_id} ifname {holder.ifname}"
        )
    return addr


def _scan(store: Store, conf: IpamConf, idx: int, rset: RangeSet) -> IPAddress:
    # Start after the last address handed out, like host-local, so a released
    # address is not reused at once; wrap around once.
    candidates = iter_candidates(rset, store.last_reserved(conf.network, idx))
    size = _FIRST_BATCH
    while batch := _take(candidates, size):
        taken = store.taken(conf.network, batch)
        free = next((a for a in batch if a not in taken), None)
        if free is not None:
            return free
        size = min(size * 4, _MAX_BATCH)
    noun = "range" if len(rset.ranges) == 1 else "ranges"
    raise AddressExhausted(
        f"failed to allocate for network {conf.network}: {noun} {rset.describe()} "
        f"{'has' if noun == 'range' else 'have'} no free address"
    )


def iter_candidates(rset: RangeSet, last: IPAddress | None) -> Iterator[IPAddress]:
    """Every address of the set once, beginning just after last (or at the start)."""
    ranges = rset.ranges
    first = next(
        (i for i, r in enumerate(ranges) if last is not None and r.spans(last)),
        None,
    )
    if first is None or last is None:
        for rng in ranges:
            yield from _span(rng, rng.start, rng.end)
        return
    here = ranges[first]
    if last != here.end:
        yield from _span(here, last + 1, here.end)
    for rng in ranges[first + 1 :] + ranges[:first]:
        yield from _span(rng, rng.start, rng.end)
    yield from _span(here, here.start, last)


def _span(rng: Range, start: IPAddress, end: IPAddress) -> Iterator[IPAddress]:
    addr = start
    while int(addr) <= int(end):
        if not rng.is_reserved(addr):
            yield addr
        if addr == end:  # end may be the family's last address: never step past it
            return
        addr = addr + 1


def _take(it: Iterator[IPAddress], n: int) -> list[IPAddress]:
    batch: list[IPAddress] = []
    for addr in it:
        batch.append(addr)
        if len(batch) == n:
            break
    return batch
