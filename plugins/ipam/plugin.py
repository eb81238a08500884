"""The CNI handlers of mycni-ipam: parse, open the lease store, allocate, answer."""

from __future__ import annotations

import logging

from libcni.attachments import valid_attachments
from libcni.errors import CniError, Code, IOFailure, NotAvailable
from libcni.skel import Plugin, Request
from libcni.types import DNS, Result
from mycni_ipam import allocator
from mycni_ipam.allocator import Owner
from mycni_ipam.config import IpamConf, StoreConf
from mycni_ipam.requested import requested_addresses
from mycni_ipam.resolv import read_dns
from mycni_ipam.sqlite_store import DB_NAME, SqliteStore

log = logging.getLogger(__name__)


class UnknownContainer(CniError):
    """CHECK found no lease for the container (spec code 3)."""

    code = Code.UNKNOWN_CONTAINER


def cmd_add(req: Request) -> Result:
    conf = IpamConf.from_json(req.config)
    requested = requested_addresses(req.config, req.args)
    # Read before leasing, so an unreadable file cannot leave a lease behind.
    dns = read_dns(conf.resolv_conf) if conf.resolv_conf else DNS()

    with SqliteStore(conf.store.data_dir, conf.store.lock_timeout) as store:
        leases = allocator.allocate(store, conf, owner_of(req), requested)

    return Result(
        cni_version=req.cni_version,
        ips=tuple(a.to_ip_config() for a in leases),
        routes=conf.routes,
        dns=dns,
    )


def cmd_del(req: Request) -> None:
    conf = StoreConf.from_json(req.config)
    if not (conf.data_dir / DB_NAME).exists():
        log.debug("no lease store in %s: nothing to release", conf.data_dir)
        return

    with SqliteStore(conf.data_dir, conf.lock_timeout) as store:
        dropped = allocator.release(store, owner_of(req))

    log.debug("released %s", ", ".join(str(d.address) for d in dropped) or "nothing")


def cmd_check(req: Request) -> None:
    conf = IpamConf.from_json(req.config)

    with SqliteStore(conf.store.data_dir, conf.store.lock_timeout) as store:
        found = allocator.find(store, conf, owner_of(req))

    held = {a.range_set for a in found}
    missing = [i for i in range(len(conf.range_sets)) if i not in held]
    if missing:
        owner = owner_of(req)
        raise UnknownContainer(
            f"failed to check lease in network {conf.network}: {owner.describe()} "
            f"holds no address in {conf.range_sets[missing[0]].describe()}"
        )


def cmd_gc(req: Request) -> None:
    conf = StoreConf.from_json(req.config)
    keep = valid_attachments(req.config)
    if not (conf.data_dir / DB_NAME).exists():
        return

    with SqliteStore(conf.data_dir, conf.lock_timeout) as store:
        dropped = allocator.release_all_but(store, conf.network, keep)

    for lease in dropped:
        log.info(
            "gc released %s of container %s ifname %s",
            lease.address,
            lease.container_id,
            lease.ifname,
        )


def cmd_status(req: Request) -> None:
    conf = IpamConf.from_json(req.config)
    what = f"failed to check status of network {conf.network}"

    try:
        with SqliteStore(conf.store.data_dir, conf.store.lock_timeout) as store:
            store.record_status_check()
            counts = allocator.count_free(store, conf, store.boot_id)
    except IOFailure as exc:
        raise NotAvailable(f"{what}: lease store is not writable: {exc.msg}") from exc

    full = sorted(
        {c.range_set for c in counts} - {c.range_set for c in counts if c.free}
    )
    if full:
        free = ", ".join(f"{c.range.describe()} {c.free}" for c in counts)
        raise NotAvailable(
            f"{what}: no free address in range set "
            f"{', '.join(map(str, full))}; free addresses per range: {free}"
        )


def owner_of(req: Request) -> Owner:
    return Owner(req.network, req.container_id, req.ifname)


PLUGIN = Plugin(
    name="mycni-ipam",
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    status=cmd_status,
    gc=cmd_gc,
    known_args=frozenset({"IP"}),
)
