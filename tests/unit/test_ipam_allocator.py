"""mycni_ipam.allocator against the in-memory and the SQLite store: random range
shapes and random ADD/DEL/repeat-ADD sequences never lease an address twice."""

from __future__ import annotations

import ipaddress
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, reject, settings
from hypothesis import strategies as st

from libcni.errors import (
    AddressExhausted,
    ConflictingState,
    InvalidConfig,
    InvalidEnvironment,
)
from libcni.types import IPAddress
from mycni_ipam import allocator
from mycni_ipam.allocator import Owner, iter_candidates
from mycni_ipam.config import IpamConf, RangeSet
from mycni_ipam.memory_store import MemoryStore
from mycni_ipam.sqlite_store import SqliteStore
from mycni_ipam.store import Lease, Store

StoreFactory = Callable[[], AbstractContextManager[Store]]


@contextmanager
def memory_store() -> Iterator[Store]:
    yield MemoryStore()


@contextmanager
def sqlite_store() -> Iterator[Store]:
    with (
        tempfile.TemporaryDirectory(prefix="ipam-test-") as tmp,
        SqliteStore(Path(tmp), lock_timeout=5) as store,
    ):
        yield store


STORES = pytest.mark.parametrize(
    "open_store", [memory_store, sqlite_store], ids=["memory", "sqlite"]
)


def netconf(**ipam: Any) -> IpamConf:
    return IpamConf.from_json({"name": "mynet", "ipam": ipam})


def owner(cid: str, ifname: str = "eth0") -> Owner:
    return Owner("mynet", cid, ifname)


@st.composite
def range_shapes(draw: st.DrawFn, version: int) -> list[dict[str, str]]:
    """One or two adjacent subnets of one family, each with a small random span."""
    net_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    addr_type = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(16, 30) if version == 4 else st.integers(96, 126))
    size = 2 ** (bits - prefix)
    count = draw(st.integers(1, 2))
    base = draw(st.integers(0, 2**bits // size - count)) * size
    ranges = []
    for i in range(count):
        net = net_type((base + i * size, prefix))
        first, last = int(net.network_address), int(net.broadcast_address)
        start = draw(st.integers(first, last))
        end = min(last, start + draw(st.integers(0, 8)))
        ranges.append(
            {
                "subnet": str(net),
                "rangeStart": str(addr_type(start)),
                "rangeEnd": str(addr_type(end)),
            }
        )
    return ranges


def usable(rset: RangeSet) -> set[IPAddress]:
    return {
        addr for rng in rset.ranges for addr in iter_candidates(RangeSet((rng,)), None)
    }


@st.composite
def ipam_confs(draw: st.DrawFn) -> IpamConf:
    family = draw(st.sampled_from([4, 6]))
    sets = [draw(range_shapes(family))]
    if draw(st.booleans()):
        sets.append(draw(range_shapes(10 - family)))  # the other family
    try:
        return netconf(ranges=sets)
    except InvalidConfig:
        # A span holding only gateway, network or broadcast is rightly refused.
        reject()


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "del", "readd", "gc"]), st.integers(0, 14)),
    min_size=1,
    max_size=80,
)


def run_sequence(store: Store, conf: IpamConf, ops: list[tuple[str, int]]) -> None:
    capacity = [len(usable(rset)) for rset in conf.range_sets]
    model: dict[str, tuple[IPAddress, ...]] = {}
    for op, n in ops:
        cid = f"c{n}"
        if op == "del":
            allocator.release(store, owner(cid))
            if model.pop(cid, None) is not None:
                event("released")
            continue
        if op == "gc":
            # Keep the containers whose number shares n's parity (a GC list).
            keep = {c for c in model if int(c[1:]) % 2 == n % 2}
            dropped = allocator.release_all_but(
                store, "mynet", {(c, "eth0") for c in keep}
            )
            gone = set(model) - keep
            assert {lease.container_id for lease in dropped} == gone
            for c in gone:
                del model[c]
            event("gc")
            continue
        if op == "readd" and cid not in model:
            continue
        full = cid not in model and any(len(model) >= cap for cap in capacity)
        if full:
            with pytest.raises(AddressExhausted) as err:
                allocator.allocate(store, conf, owner(cid))
            assert "mynet" in err.value.msg and "None" not in err.value.msg
            event("exhausted")
            continue
        got = tuple(a.address for a in allocator.allocate(store, conf, owner(cid)))
        if cid in model:
            assert got == model[cid], "a repeated ADD must return the same addresses"
        model[cid] = got
        check_invariants(conf, model)
    held = {(lease.range_set, lease.address) for lease in all_leases(store)}
    expected = {(i, a) for addrs in model.values() for i, a in enumerate(addrs)}
    assert held == expected


def check_invariants(conf: IpamConf, model: dict[str, tuple[IPAddress, ...]]) -> None:
    for i, rset in enumerate(conf.range_sets):
        addrs = [addrs[i] for addrs in model.values()]
        assert len(addrs) == len(set(addrs)), "an address was leased twice"
        for addr in addrs:
            rng = rset.range_for(addr)
            assert rng is not None, f"{addr} is outside the range set"
            assert not rng.is_reserved(addr)


def all_leases(store: Store) -> list[Any]:
    if isinstance(store, MemoryStore):
        return store.all_leases()
    assert isinstance(store, SqliteStore)
    rows = store._db.execute("SELECT range_set, address FROM leases").fetchall()

    class Row:
        def __init__(self, r: tuple[int, str]) -> None:
            self.range_set, self.address = r[0], ipaddress.ip_address(r[1])

    return [Row(r) for r in rows]


@settings(max_examples=200, deadline=None)
@given(ipam_confs(), OPS)
def test_random_sequences_memory(conf: IpamConf, ops: list[tuple[str, int]]) -> None:
    run_sequence(MemoryStore(), conf, ops)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ipam_confs(), OPS)
def test_random_sequences_sqlite(conf: IpamConf, ops: list[tuple[str, int]]) -> None:
    with sqlite_store() as store:
        run_sequence(store, conf, ops)


@settings(deadline=None)
@given(ipam_confs(), st.data())
def test_candidates_cover_every_address_once(
    conf: IpamConf, data: st.DataObject
) -> None:
    rset = conf.range_sets[0]
    every = sorted(usable(rset), key=int)
    last = data.draw(st.sampled_from([None, *every]))

    seen = list(iter_candidates(rset, last))

    assert sorted(seen, key=int) == every
    if last is not None and len(every) > 1:
        assert seen[-1] == last, "the scan wraps around and ends at the last reserved"


@STORES
def test_released_address_comes_back_when_it_is_the_only_one(
    open_store: StoreFactory,
) -> None:
    conf = netconf(subnet="10.1.0.0/29")  # .2-.6 usable: 5 addresses
    with open_store() as store:
        got = [allocator.allocate(store, conf, owner(f"c{i}"))[0] for i in range(5)]
        with pytest.raises(
            AddressExhausted,
            match=(
                r"^failed to allocate for network mynet: range 10\.1\.0\.0/29 "
                r"\(10\.1\.0\.2-10\.1\.0\.6\) has no free address$"
            ),
        ):
            allocator.allocate(store, conf, owner("c9"))

        allocator.release(store, owner("c2"))
        again = allocator.allocate(store, conf, owner("c9"))

    assert [str(a.address) for a in got] == [f"10.1.0.{i}" for i in range(2, 7)]
    assert again[0].address == got[2].address


@STORES
def test_add_is_all_or_nothing(open_store: StoreFactory) -> None:
    conf = netconf(ranges=[[{"subnet": "fd00::/64"}], [{"subnet": "10.1.0.0/30"}]])
    with open_store() as store:
        allocator.allocate(store, conf, owner("c1"))
        with pytest.raises(AddressExhausted):
            allocator.allocate(store, conf, owner("c2"))
        with store.transaction():
            assert store.leases_of("mynet", "c2", "eth0") == []


@STORES
def test_requested_address(open_store: StoreFactory) -> None:
    conf = netconf(ranges=[[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]])
    want = [ipaddress.ip_address("10.1.0.77"), ipaddress.ip_address("fd00::77")]
    with open_store() as store:
        got = allocator.allocate(store, conf, owner("c1"), want)
        assert [a.address for a in got] == want
        # A repeated ADD with the same request is the same lease.
        assert allocator.allocate(store, conf, owner("c1"), want) == got

        with pytest.raises(
            ConflictingState, match=re.escape("10.1.0.77 is held by container c1")
        ):
            allocator.allocate(store, conf, owner("c2"), want[:1])
        with pytest.raises(
            InvalidEnvironment, match=re.escape("10.2.0.1 is not in any range")
        ):
            allocator.allocate(
                store, conf, owner("c3"), [ipaddress.ip_address("10.2.0.1")]
            )
        with pytest.raises(
            InvalidEnvironment, match=re.escape("10.1.0.1 is a gateway")
        ):
            allocator.allocate(
                store, conf, owner("c3"), [ipaddress.ip_address("10.1.0.1")]
            )
        with pytest.raises(
            ConflictingState, match=re.escape("already holds 10.1.0.77")
        ):
            allocator.allocate(
                store, conf, owner("c1"), [ipaddress.ip_address("10.1.0.9")]
            )


@STORES
def test_ifnames_and_networks_are_separate_owners(open_store: StoreFactory) -> None:
    conf = netconf(subnet="10.1.0.0/24")
    other = netconf(subnet="10.1.0.0/24")
    other = IpamConf(
        store=type(other.store)("othernet", other.store.data_dir, 1.0),
        range_sets=other.range_sets,
        routes=(),
    )
    with open_store() as store:
        a = allocator.allocate(store, conf, owner("c1", "eth0"))
        b = allocator.allocate(store, conf, owner("c1", "eth1"))
        c = allocator.allocate(store, other, Owner("othernet", "c1", "eth0"))
        released = allocator.release(store, owner("c1", "eth0"))

    assert a[0].address != b[0].address
    assert c[0].address == a[0].address  # another network has its own pool
    assert [lease.address for lease in released] == [a[0].address]


@STORES
def test_release_of_unknown_owner_is_a_no_op(open_store: StoreFactory) -> None:
    with open_store() as store:
        assert allocator.release(store, owner("nobody")) == []


def test_allocation_cost_does_not_grow_with_lease_count() -> None:
    conf = netconf(subnet="10.0.0.0/16")
    store = MemoryStore()
    costs = []
    for i in range(3000):
        before = store.lookups
        allocator.allocate(store, conf, owner(f"c{i}"))
        costs.append(store.lookups - before)

    assert max(costs) <= 8, "each ADD should look at one small batch of candidates"


def test_scan_continues_after_the_last_reserved_address() -> None:
    conf = netconf(subnet="10.1.0.0/24")
    store = MemoryStore()
    first = allocator.allocate(store, conf, owner("c1"))
    allocator.release(store, owner("c1"))
    second = allocator.allocate(store, conf, owner("c2"))

    # Like host-local: a just-released address is not handed out again at once.
    assert str(first[0].address) == "10.1.0.2"
    assert str(second[0].address) == "10.1.0.3"


@STORES
def test_lease_outside_a_changed_config_is_replaced(open_store: StoreFactory) -> None:
    with open_store() as store:
        old = allocator.allocate(store, netconf(subnet="10.1.0.0/24"), owner("c1"))
        new = allocator.allocate(store, netconf(subnet="10.2.0.0/24"), owner("c1"))

    assert str(old[0].address) == "10.1.0.2"
    assert str(new[0].address) == "10.2.0.2"


def fill_release_refill(store: Store, conf: IpamConf, data: st.DataObject) -> None:
    capacity = min(len(usable(rset)) for rset in conf.range_sets)
    held = {
        f"c{i}": allocator.allocate(store, conf, owner(f"c{i}"))
        for i in range(capacity)
    }
    with pytest.raises(AddressExhausted):
        allocator.allocate(store, conf, owner("late"))

    gone = data.draw(st.sets(st.sampled_from(sorted(held)), min_size=1))
    for cid in gone:
        allocator.release(store, owner(cid))
    refill = [allocator.allocate(store, conf, owner(f"new{cid}")) for cid in gone]

    for i, rset in enumerate(conf.range_sets):
        if len(usable(rset)) > capacity:
            continue  # this set was never full: any free address may come
        released = {held[cid][i].address for cid in gone}
        assert {got[i].address for got in refill} == released
    with pytest.raises(AddressExhausted):
        allocator.allocate(store, conf, owner("late"))


@settings(max_examples=100, deadline=None)
@given(ipam_confs(), st.data())
def test_released_addresses_come_back_memory(
    conf: IpamConf, data: st.DataObject
) -> None:
    fill_release_refill(MemoryStore(), conf, data)


@settings(max_examples=30, deadline=None)
@given(ipam_confs(), st.data())
def test_released_addresses_come_back_sqlite(
    conf: IpamConf, data: st.DataObject
) -> None:
    with sqlite_store() as store:
        fill_release_refill(store, conf, data)


def test_reboot_reclaims_leases_of_earlier_boots_only() -> None:
    conf = netconf(subnet="10.1.0.0/29")  # 5 addresses
    store = MemoryStore(boot_id="boot-a")
    for i in range(5):
        allocator.allocate(store, conf, owner(f"old{i}"))

    store.boot_id = "boot-b"
    new = allocator.allocate(store, conf, owner("new0"))
    allocator.allocate(store, conf, owner("new1"))

    held = {lease.container_id for lease in store.all_leases()}
    assert held == {"new0", "new1"}
    assert str(new[0].address) == "10.1.0.2"  # wrapped to the start of the range
    no_reclaim = IpamConf(conf.store, conf.range_sets, (), reclaim_after_reboot=False)
    store.boot_id = "boot-c"
    allocator.allocate(store, no_reclaim, owner("new2"))
    assert len(store.all_leases()) == 3


def test_sqlite_allocation_cost_does_not_grow_with_lease_count(tmp_path: Path) -> None:
    """The statements one ADD runs are the same with 10 leases and with 5000."""
    conf = netconf(subnet="10.0.0.0/16")
    with SqliteStore(tmp_path, lock_timeout=5) as store:
        statements: list[str] = []
        store._db.set_trace_callback(statements.append)

        def one_add(cid: str) -> list[str]:
            statements.clear()
            allocator.allocate(store, conf, owner(cid))
            return list(statements)

        for i in range(10):
            small = one_add(f"c{i}")
        with store.transaction():
            for i in range(10, 5000):
                address = ipaddress.ip_address("10.0.0.0") + 2 + i
                store.reserve(Lease("mynet", 0, address, f"c{i}", "eth0"))
            store.set_last_reserved("mynet", 0, address)
        large = one_add("late")

    def shape(sql: list[str]) -> list[str]:
        return [re.sub(r"'[^']*'", "?", s) for s in sql]

    assert shape(large) == shape(small)
    assert len(large) <= 12
