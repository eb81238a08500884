"""What ADD attached, one JSON file per attachment, so DEL needs no prevResult."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from libcni.errors import IOFailure
from libcni.records import RecordStore
from libcni.types import IPAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """What ADD did for (network, container, ifname)."""

    container_id: str
    ifname: str
    host_veth: str
    host_ifindex: int
    pod_mac: str
    ips: tuple[IPAddress, ...]  # IPv4 only in records of layout v2 and before
    priority: int
    # "fast": from_pod attached and endpoints in the map; "stack": neither, traffic
    # takes the host stack, for `reason` (fastPath false, or the kernel refused).
    mode: str = "fast"
    reason: str = ""
    # How from_pod is attached ("tc": a clsact cls_bpf filter) and the VXLAN
    # device that from_overlay went on ("" for none).
    attach: str = "tc"
    overlay: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "containerId": self.container_id,
            "ifname": self.ifname,
            "hostVeth": self.host_veth,
            "hostIfindex": self.host_ifindex,
            "podMac": self.pod_mac,
            "ips": [str(ip) for ip in self.ips],
            "priority": self.priority,
            "mode": self.mode,
            "reason": self.reason,
            "attach": self.attach,
            "overlay": self.overlay,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Record:
        return cls(
            container_id=str(obj["containerId"]),
            ifname=str(obj["ifname"]),
            host_veth=str(obj["hostVeth"]),
            host_ifindex=int(obj["hostIfindex"]),
            pod_mac=str(obj["podMac"]),
            ips=tuple(ip_address(ip) for ip in obj["ips"]),
            priority=int(obj["priority"]),
            # Records written before modes existed are all of the fast path.
            mode=str(obj.get("mode", "fast")),
            reason=str(obj.get("reason", "")),
            attach=str(obj.get("attach", "tc")),
            overlay=str(obj.get("overlay", "")),
        )


@dataclass(frozen=True)
class Store:
    """This plugin's records, one per attachment, in libcni's record store."""

    records: RecordStore

    @classmethod
    def for_network(cls, state_dir: Path, network: str) -> Store:
        return cls(RecordStore.for_network(state_dir, network))

    def path(self, container_id: str, ifname: str) -> Path:
        return self.records.path(container_id, ifname)

    def save(self, record: Record) -> None:
        self.records.save(record.container_id, record.ifname, record.to_dict())

    def load(self, container_id: str, ifname: str) -> Record | None:
        data = self.records.load(container_id, ifname)
        if data is None:
            return None
        try:
            return Record.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            path = self.path(container_id, ifname)
            raise IOFailure(f"failed to parse state file {path}: {exc}") from exc

    def records_all(self) -> list[Record]:
        found = []
        for entry in self.records.entries():
            try:
                found.append(Record.from_dict(entry.data))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "skipping malformed record of %s: %s", entry.container_id, exc
                )
        return found

    def remove_quietly(self, container_id: str, ifname: str) -> None:
        self.records.remove_quietly(container_id, ifname)


def records_of_every_network(state_dir: Path) -> list[Record]:
    """Every readable record under state_dir: the pods that share our pin root."""
    try:
        directories = sorted(p for p in state_dir.iterdir() if p.is_dir())
    except OSError:
        return []
    found = []
    for directory in directories:
        found += Store(RecordStore(directory)).records_all()
    return found
