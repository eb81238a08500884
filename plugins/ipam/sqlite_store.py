"""The on-disk Store: one SQLite database per dataDir, in WAL mode, shared by processes.

Writers serialize on BEGIN IMMEDIATE (SQLite's file lock) with a busy timeout, so each
ADD's scan and reserve is atomic against every other plugin process on the node.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from libcni.errors import IOFailure, TryAgainLater
from libcni.types import IPAddress
from mycni_ipam.store import Lease

log = logging.getLogger(__name__)

DB_NAME = "leases.sqlite3"
SCHEMA_VERSION = 1
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")

# Addresses are stored in ipaddress's compressed text form, so the sqlite3 shell shows
# readable rows; every lookup is by (network, address) or by owner, both indexed.
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
)

# SQLite caps bound parameters per statement (999 before 3.32); stay under it.
_MAX_PARAMS = 900


class SqliteStore:
    def __init__(self, data_dir: Path, lock_timeout: float) -> None:
        self.path = data_dir / DB_NAME
        self._lock_timeout = lock_timeout
        self._boot_id = _read_boot_id()
        try:
            data_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise IOFailure(f"failed to create data dir {data_dir}: {exc}") from exc
        with self._errors("open"):
            # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; the timeout
            # is SQLite's busy timeout for the file lock.
            self._db = sqlite3.connect(
                self.path, timeout=lock_timeout, isolation_level=None
            )
        with self._errors("open"):
            self._prepare()

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
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        with self._errors("commit"):
            self._db.execute("COMMIT")

    def leases_of(self, network: str, container_id: str, ifname: str) -> list[Lease]:
        rows = self._query(
            "SELECT network, range_set, address, container_id, ifname FROM leases "
            "WHERE network = ? AND container_id = ? AND ifname = ? ORDER BY range_set",
            (network, container_id, ifname),
        )
        return [_lease(row) for row in rows]

    def leases_in(self, network: str) -> list[Lease]:
        rows = self._query(
            "SELECT network, range_set, address, container_id, ifname FROM leases "
            "WHERE network = ?",
            (network,),
        )
        return [_lease(row) for row in rows]

    def holder(self, network: str, address: IPAddress) -> Lease | None:
        rows = self._query(
            "SELECT network, range_set, address, container_id, ifname FROM leases "
            "WHERE network = ? AND address = ?",
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
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        self._query(
            "INSERT INTO leases (network, range_set, address, container_id, ifname, "
            "boot_id, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                lease.network,
                lease.range_set,
                str(lease.address),
                lease.container_id,
                lease.ifname,
                self._boot_id,
                created,
            ),
        )

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

    def _prepare(self) -> None:
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
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

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
            raise IOFailure(f"failed to {verb} lease store {self.path}: {exc}") from exc


def _lease(row: tuple[Any, ...]) -> Lease:
    network, range_set, address, container_id, ifname = row
    return Lease(
        network, range_set, ipaddress.ip_address(address), container_id, ifname
    )


def _read_boot_id() -> str:
    # Recorded so a later GC can tell leases made before a reboot; absent in some
    # sandboxes, which only loses that hint.
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        log.debug("no boot id at %s", _BOOT_ID)
        return ""
