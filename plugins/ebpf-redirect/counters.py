"""The fast path's counters: the Python mirror of enum mycni_stat in bpf/lib/stats.h."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Mapping
from typing import Any


class Stat(enum.IntEnum):
    """Index into the mycni_stats per-CPU array; keep in step with bpf/lib/stats.h."""

    REDIRECTED = 0  # same node, pod to pod
    PASSED = 1
    DROP_TRUNCATED = 2
    DROP_BAD_IHL = 3
    DROP_CSUM = 4
    DROP_STORE = 5
    REDIRECTED_OVERLAY_IN = 6  # from the VXLAN device to a local pod
    REDIRECTED_NEIGH = 7  # pod to another node, into the VXLAN device
    PKT_TYPE_FIXED = 8
    DROP_PKT_TYPE = 9
    # The IPv6 frames among the path counters above, which count both families.
    REDIRECTED_V6 = 10
    PASSED_V6 = 11
    REDIRECTED_OVERLAY_IN_V6 = 12
    REDIRECTED_NEIGH_V6 = 13


def sum_per_cpu(dump: Iterable[Mapping[str, Any]]) -> dict[Stat, int]:
    """Total each counter over the CPUs of a `bpftool -j map dump` of mycni_stats.

    bpftool prints every value as a list of "0x.." byte strings in host order; an
    index this plugin does not know (a newer object) is ignored.
    """
    totals = dict.fromkeys(Stat, 0)
    for entry in dump:
        index = int.from_bytes(_bytes_of(entry["key"]), sys.byteorder)
        if index not in Stat._value2member_map_:
            continue
        for per_cpu in entry["values"]:
            totals[Stat(index)] += int.from_bytes(
                _bytes_of(per_cpu["value"]), sys.byteorder
            )
    return totals


def _bytes_of(hex_bytes: Iterable[str]) -> bytes:
    return bytes(int(b, 16) for b in hex_bytes)
