"""What ADD attached, one JSON file per attachment, so DEL needs no prevResult."""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from libcni.errors import IOFailure

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def escape(part: str) -> str:
    """Make part a file-name component: %XX for all but [A-Za-z0-9_-].

    '.' is escaped too, so no result is '.', '..' or contains the separator.
    """
    return _UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), part)


@dataclass(frozen=True)
class Record:
    """What ADD did for (network, container, ifname)."""

    container_id: str
    ifname: str
    host_veth: str
    host_ifindex: int
    pod_mac: str
    ips: tuple[IPv4Address, ...]
    priority: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "containerId": self.container_id,
            "ifname": self.ifname,
            "hostVeth": self.host_veth,
            "hostIfindex": self.host_ifindex,
            "podMac": self.pod_mac,
            "ips": [str(ip) for ip in self.ips],
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Record:
        return cls(
            container_id=str(obj["containerId"]),
            ifname=str(obj["ifname"]),
            host_veth=str(obj["hostVeth"]),
            host_ifindex=int(obj["hostIfindex"]),
            pod_mac=str(obj["podMac"]),
            ips=tuple(IPv4Address(ip) for ip in obj["ips"]),
            priority=int(obj["priority"]),
        )


@dataclass(frozen=True)
class Store:
    """<stateDir>/<network>/<container id>.<ifname>.json, both parts escaped."""

    directory: Path

    @classmethod
    def for_network(cls, state_dir: Path, network: str) -> Store:
        return cls(state_dir / escape(network))

    def path(self, container_id: str, ifname: str) -> Path:
        return self.directory / f"{escape(container_id)}.{escape(ifname)}.json"

    def save(self, record: Record) -> None:
        """Write atomically (temp file, rename): a crash leaves old or new, not half."""
        path = self.path(record.container_id, record.ifname)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                json.dump(record.to_dict(), f)
            os.replace(tmp, path)
        except OSError as exc:
            raise IOFailure(
                f"failed to write state file {path}: {exc.strerror}"
            ) from exc
        log.debug("saved %s", path)

    def load(self, container_id: str, ifname: str) -> Record | None:
        path = self.path(container_id, ifname)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IOFailure(
                f"failed to read state file {path}: {exc.strerror}"
            ) from exc
        try:
            return Record.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise IOFailure(f"failed to parse state file {path}: {exc}") from exc

    def remove_quietly(self, container_id: str, ifname: str) -> None:
        path = self.path(container_id, ifname)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("failed to remove state file %s: %s; left in place", path, exc)
