"""The on-disk Store: one SQLite database per dataDir, in WAL mode, shared by processes.

Writers serialize on BEGIN IMMEDIATE (SQLite's file lock) with a busy timeout, so each
ADD's scan and reserve is atomic against every other plugin process on the node. Why
WAL with synchronous=FULL is crash-safe is explained in the package docstring.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from libcni.errors import IOFailure, TryAgainLater, shown
from libcni.types import IPAddress
from mycni_ipam import testhook
from mycni_ipam.store import Lease

log = logging.getLogger(__name__)

DB_NAME = "leases.sqlite3"
SCHEMA_VERSION = 2
# Tests point this elsewhere to simulate a reboot.
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

# Addresses are stored in ipaddress's compressed text form, so the sqlite3 shell shows
# readable rows; every lookup is by (network, address) or by owner, both indexed.
# Version 2 adds `boots` (the boot each network last allocated in) and `meta`; the
# statements are idempotent, so a version 1 file is upgraded by running them all.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS leases (
    network      TEXT    NOT NULL,
    range_set    INTEGER NOT NULL,
    address      TEXT    NOT NULL,
    container_id TEXT    NOT NULL,
    ifname       TEXT    NOT NULL,
    boot_id      TEXT    NOT NULL,
    created      TEXT    NOT NULL,
    PRIMARY KEY (network, address),
    UNIQUE (network, container_id, ifname, range_set)
) WITHOUT ROWID""",
    """
CREATE TABLE IF NOT EXISTS last_reserved (
    network   TEXT    NOT NULL,
    range_set INTEGER NOT NULL,
    address   TEXT    NOT NULL,
    PRIMARY KEY (network, range_set)
) WITHOUT ROWID""",
    """
CREATE TABLE IF NOT EXISTS boots (
    network TEXT NOT NULL PRIMARY KEY,
    boot_id TEXT NOT NULL
) WITHOUT ROWID""",
    """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID""",
)
_LEASE_COLUMNS = "network, range_set, address, container_id, ifname, boot_id, created"

# SQLite caps bound parameters per statement (999 before 3.32); stay under it.
_MAX_PARAMS = 900


class SqliteStore:
    def __init__(
        self, data_dir: Path, lock_timeout: float, boot_id: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self.boot_id = read_boot_id() if boot_id is None else boot_id
        self._lock_timeout = lock_timeout
        try:
            data_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise IOFailure(
                f"failed to create dataDir {data_dir}: {exc.strerror}"
            ) from exc
        with self._errors("open"):
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; the timeout
            # is SQLite's busy timeout for the file lock.
            self._db = sqlite3.connect(
                self.path, timeout=lock_timeout, isolation_level=None
            )
        testhook.reach("open:connected")
        try:
            with self._errors("open"):
                self._prepare()
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._errors("lock"):
            self._db.execute("BEGIN IMMEDIATE")
        testhook.reach("txn:begun")
        try:
            yield
            testhook.reach("txn:commit")
            with self._errors("commit"):
                self._db.execute("COMMIT")
        except BaseException:
            self._rollback_quietly()
            raise
        testhook.reach("txn:committed")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        # A deferred transaction in WAL mode reads the last commit without taking
        # the write lock: CHECK and STATUS never queue behind a burst of ADDs.
        with self._errors("read"):
            self._db.execute("BEGIN DEFERRED")
        try:
            yield
        finally:
            self._rollback_quietly()

    def leases_of(self, network: str, container_id: str, ifname: str) -> list[Lease]:
        rows = self._query(
            f"SELECT {_LEASE_COLUMNS} FROM leases "
            "WHERE network = ? AND container_id = ? AND ifname = ? ORDER BY range_set",
            (network, container_id, ifname),
        )
        return [_lease(row) for row in rows]

    def leases_in(self, network: str) -> list[Lease]:
        rows = self._query(
            f"SELECT {_LEASE_COLUMNS} FROM leases WHERE network = ?", (network,)
        )
        return [_lease(row) for row in rows]

    def all_leases(self) -> list[Lease]:
        """Every lease of every network, for the inspect command."""
        rows = self._query(
            f"SELECT {_LEASE_COLUMNS} FROM leases ORDER BY network, range_set, address",
            (),
        )
        return [_lease(row) for row in rows]

    def count_leases(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM leases", ())[0][0])

    def holder(self, network: str, address: IPAddress) -> Lease | None:
        rows = self._query(
            f"SELECT {_LEASE_COLUMNS} FROM leases WHERE network = ? AND address = ?",
            (network, str(address)),
        )
        return _lease(rows[0]) if rows else None

    def taken(self, network: str, addresses: Sequence[IPAddress]) -> set[IPAddress]:
        found: set[IPAddress] = set()
        by_text = {str(a): a for a in addresses}
        texts = list(by_text)
        for i in range(0, len(texts), _MAX_PARAMS):
            chunk = texts[i : i + _MAX_PARAMS]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT address FROM leases WHERE network = ? "
                f"AND address IN ({marks})",
                (network, *chunk),
            )
            found.update(by_text[row[0]] for row in rows)
        return found

    def reserve(self, lease: Lease) -> None:
        self._query(
            f"INSERT INTO leases ({_LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                lease.network,
                lease.range_set,
                str(lease.address),
                lease.container_id,
                lease.ifname,
                self.boot_id,
                _now(),
            ),
        )
        testhook.reach("reserve:inserted")

    def release(
        self, network: str, container_id: str, ifname: str, range_set: int | None = None
    ) -> list[Lease]:
        dropped = [
            lease
            for lease in self.leases_of(network, container_id, ifname)
            if range_set is None or lease.range_set == range_set
        ]
        for lease in dropped:
            self._query(
                "DELETE FROM leases WHERE network = ? AND address = ?",
                (network, str(lease.address)),
            )
            testhook.reach("release:deleted")
        return dropped

    def reclaim_earlier_boots(self, network: str) -> list[Lease]:
        # Without a boot id every lease looks current: reclaim nothing rather than
        # everything.
        if not self.boot_id:
            return []
        rows = self._query("SELECT boot_id FROM boots WHERE network = ?", (network,))
        if rows and rows[0][0] == self.boot_id:
            return []
        dropped = [
            _lease(row)
            for row in self._query(
                f"SELECT {_LEASE_COLUMNS} FROM leases "
                "WHERE network = ? AND boot_id != ?",
                (network, self.boot_id),
            )
        ]
        self._query(
            "DELETE FROM leases WHERE network = ? AND boot_id != ?",
            (network, self.boot_id),
        )
        self._query(
            "INSERT INTO boots (network, boot_id) VALUES (?, ?) ON CONFLICT (network) "
            "DO UPDATE SET boot_id = excluded.boot_id",
            (network, self.boot_id),
        )
        return dropped

    def last_reserved(self, network: str, range_set: int) -> IPAddress | None:
        rows = self._query(
            "SELECT address FROM last_reserved WHERE network = ? AND range_set = ?",
            (network, range_set),
        )
        return ipaddress.ip_address(rows[0][0]) if rows else None

    def set_last_reserved(
        self, network: str, range_set: int, address: IPAddress
    ) -> None:
        self._query(
            "INSERT INTO last_reserved (network, range_set, address) VALUES (?, ?, ?) "
            "ON CONFLICT (network, range_set) DO UPDATE SET address = excluded.address",
            (network, range_set, str(address)),
        )

    def record_status_check(self) -> None:
        """Commit one small write: proves the file, the log and the disk take writes."""
        with self.transaction():
            self._query(
                "INSERT INTO meta (key, value) VALUES ('status_checked', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_now(),),
            )

    def verify(self) -> list[str]:
        """What is wrong with the file and its rows; empty when the store is sound."""
        problems: list[str] = []
        with self._errors("verify"):
            checks = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
            if checks != ["ok"]:
                problems.extend(f"integrity: {c}" for c in checks)
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                problems.append(f"schema version {version}, expected {SCHEMA_VERSION}")
            rows = self._db.execute(f"SELECT {_LEASE_COLUMNS} FROM leases").fetchall()
        for row in rows:
            network, range_set, address, container_id, ifname, boot_id, created = row
            where = f"lease {network}/{address}"
            try:
                ipaddress.ip_address(address)
            except ValueError:
                problems.append(f"{where}: {shown(address)} is not an IP address")
            if not isinstance(range_set, int) or range_set < 0:
                problems.append(
                    f"{where}: range set {shown(range_set)} is not an index"
                )
            if not network or not container_id or not ifname:
                problems.append(f"{where}: empty network, container or ifname")
            try:
                datetime.datetime.fromisoformat(created)
            except (TypeError, ValueError):
                problems.append(
                    f"{where}: creation time {shown(created)} is unreadable"
                )
            if not isinstance(boot_id, str):
                problems.append(f"{where}: boot id {shown(boot_id)} is not text")
        return problems

    def _prepare(self) -> None:
        # Per connection, not stored in the file: see the package docstring.
        self._db.execute("PRAGMA synchronous=FULL")
        # WAL lets CHECK and other readers run while one ADD writes; the mode is
        # stored in the file, so only the first process ever switches it.
        mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # One statement at a time: executescript() would commit our BEGIN.
            for statement in _SCHEMA:
                self._db.execute(statement)
            testhook.reach("schema:created")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback_quietly()
            raise

    def _rollback_quietly(self) -> None:
        # SQLite may already have rolled back (SQLITE_FULL does); a failing ROLLBACK
        # must not hide the error that led here.
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.warning("rollback of lease store %s failed: %s", self.path, exc)

    def _query(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        with self._errors("query"):
            return self._db.execute(sql, params).fetchall()

    @contextmanager
    def _errors(self, verb: str) -> Iterator[None]:
        """Turn SQLite errors into CNI errors; a busy database means try again."""
        try:
            yield
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise TryAgainLater(
                    f"failed to {verb} lease store {self.path}: still busy after "
                    f"{self._lock_timeout:g}s"
                ) from exc
            # SQLite reports a full disk as SQLITE_FULL, or as a plain I/O error when
            # it is the -shm file that cannot grow: ask the file system which.
            hint = ""
            if code == sqlite3.SQLITE_FULL or _is_full(self.data_dir):
                hint = f" (no space left in dataDir {self.data_dir})"
            raise IOFailure(
                f"failed to {verb} lease store {self.path}: {exc}{hint}"
            ) from exc


def _lease(row: tuple[Any, ...]) -> Lease:
    network, range_set, address, container_id, ifname, boot_id, created = row
    return Lease(
        network,
        range_set,
        ipaddress.ip_address(address),
        container_id,
        ifname,
        boot_id=boot_id,
        created=created,
    )


def _is_full(directory: Path) -> bool:
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return stat.f_bavail == 0 or stat.f_favail == 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_boot_id(path: Path | None = None) -> str:
    """This boot's id; leases remember it so the first ADD after a reboot can reclaim
    the rest. Absent in some sandboxes, which only turns reclaim off."""
    path = BOOT_ID_PATH if path is None else path
    try:
        return path.read_text().strip()
    except OSError:
        log.debug("no boot id at %s", path)
        return ""
