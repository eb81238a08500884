"""mycni_ipam.sqlite_store: WAL mode, the lock timeout, and many processes at once."""

from __future__ import annotations

import ipaddress
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from libcni.errors import Code, IOFailure, TryAgainLater
from mycni_ipam import allocator
from mycni_ipam.allocator import Owner
from mycni_ipam.config import IpamConf
from mycni_ipam.sqlite_store import DB_NAME, SqliteStore
from mycni_ipam.store import Lease

REPO = Path(__file__).resolve().parents[2]


def netconf(data_dir: Path, subnet: str = "10.1.0.0/16", **ipam: object) -> IpamConf:
    return IpamConf.from_json(
        {"name": "mynet", "ipam": {"subnet": subnet, "dataDir": str(data_dir), **ipam}}
    )


def test_database_is_in_wal_mode_with_the_documented_tables(tmp_path: Path) -> None:
    with SqliteStore(tmp_path, lock_timeout=1):
        pass

    db = sqlite3.connect(tmp_path / DB_NAME)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"leases", "last_reserved"} <= tables
    db.close()


def test_odd_container_ids_are_only_sql_parameters(tmp_path: Path) -> None:
    cid = "x'); DROP TABLE leases; --/../../etc"
    conf = netconf(tmp_path)
    with SqliteStore(tmp_path, lock_timeout=1) as store:
        got = allocator.allocate(store, conf, Owner("mynet", cid, "eth0"))
        with store.transaction():
            assert store.leases_of("mynet", cid, "eth0") == [
                Lease("mynet", 0, got[0].address, cid, "eth0")
            ]

    assert {p.name for p in tmp_path.iterdir()} <= {
        DB_NAME,
        f"{DB_NAME}-wal",
        f"{DB_NAME}-shm",
    }


def test_busy_database_gives_try_again_later(tmp_path: Path) -> None:
    conf = netconf(tmp_path, lockTimeout=0.3)
    with SqliteStore(tmp_path, lock_timeout=0.3):
        pass
    holder = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with (
            SqliteStore(tmp_path, conf.store.lock_timeout) as store,
            pytest.raises(TryAgainLater) as err,
        ):
            allocator.allocate(store, conf, Owner("mynet", "c1", "eth0"))
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert err.value.code is Code.TRY_AGAIN_LATER
    assert int(err.value.code) == 11
    assert err.value.msg == (
        f"failed to lock lease store {tmp_path / DB_NAME}: still busy after 0.3s"
    )
    assert 0.25 <= waited < 3


def test_unusable_data_dir_is_an_io_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")

    with pytest.raises(IOFailure, match=r"^failed to create dataDir"):
        SqliteStore(blocker / "sub", lock_timeout=1)


def test_failed_transaction_rolls_back(tmp_path: Path) -> None:
    address = ipaddress.ip_address("10.1.0.5")
    with SqliteStore(tmp_path, lock_timeout=1) as store:
        with pytest.raises(RuntimeError), store.transaction():
            store.reserve(Lease("mynet", 0, address, "c1", "eth0"))
            raise RuntimeError("boom")
        with store.transaction():
            assert store.holder("mynet", address) is None


# Each worker process opens its own store and leases addresses one ADD at a time,
# as separate mycni-ipam executables would.
WORKER = """
import json, sys
from pathlib import Path
from mycni_ipam import allocator
from mycni_ipam.allocator import Owner
from mycni_ipam.config import IpamConf
from mycni_ipam.sqlite_store import SqliteStore

data_dir, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conf = IpamConf.from_json(
    {"name": "mynet", "ipam": {"dataDir": data_dir, "ranges": [
        [{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]]}}
)
got = []
for i in range(count):
    with SqliteStore(Path(data_dir), 30) as store:
        owner = Owner("mynet", f"w{worker}-{i}", "eth0")
        leases = allocator.allocate(store, conf, owner)
    got.append([str(a.address) for a in leases])
print(json.dumps(got))
"""


def test_many_processes_never_share_an_address(tmp_path: Path, pythonpath: str) -> None:
    workers, per_worker = 16, 8
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(w), str(per_worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for w in range(workers)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        results.extend(json.loads(out))

    v4 = [pair[0] for pair in results]
    v6 = [pair[1] for pair in results]
    assert len(results) == workers * per_worker
    assert len(set(v4)) == len(v4), "an IPv4 address was leased twice"
    assert len(set(v6)) == len(v6), "an IPv6 address was leased twice"
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 2 * len(results)
    db.close()


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Import libcni from the repo and mycni_ipam from plugins/ipam, uninstalled."""
    shim = tmp_path_factory.mktemp("pythonpath")
    (shim / "mycni_ipam").symlink_to(REPO / "plugins" / "ipam")
    return os.pathsep.join([str(REPO), str(shim)])
