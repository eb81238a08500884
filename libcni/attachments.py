"""GC's input (CNI 1.1): the attachments the runtime still has; all others may go."""

from __future__ import annotations

from typing import Any

from libcni.errors import InvalidConfig, shown

# The spec's key, then the spelling some runtimes sent before the spec settled on it.
KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")


def valid_attachments(config: dict[str, Any]) -> frozenset[tuple[str, str]]:
    """(container ID, ifname) of every attachment to keep.

    A GC without the list is refused: reading "no list" as "nothing is valid" would
    wipe every pod of the network.
    """
    for key in KEYS:
        if key not in config:
            continue
        raw = config[key]
        if not isinstance(raw, list):
            raise InvalidConfig(f"{key}: expected a list, got {shown(raw)}")
        valid = set()
        for i, item in enumerate(raw):
            cid = item.get("containerID") if isinstance(item, dict) else None
            ifname = item.get("ifname") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not isinstance(ifname, str):
                raise InvalidConfig(
                    f"{key}[{i}]: expected {{containerID, ifname}}, got {shown(item)}"
                )
            valid.add((cid, ifname))
        return frozenset(valid)
    raise InvalidConfig(f"{KEYS[0]}: missing; GC needs the attachments to keep")
