"""The Python counter enum mirrors enum mycni_stat in bpf/lib/stats.h."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from mycni_ebpf_redirect.counters import Stat, sum_per_cpu

STATS_H = Path(__file__).resolve().parents[2] / "bpf" / "lib" / "stats.h"


def c_enum(text: str, name: str) -> dict[str, int]:
    """Members of `enum name { ... }` with explicit or implied values."""
    body = re.search(rf"enum\s+{name}\s*\{{(.*?)\}};", text, re.S)
    assert body, f"enum {name} not found"
    without_comments = re.sub(r"/\*.*?\*/", "", body[1], flags=re.S)
    members: dict[str, int] = {}
    value = -1
    for item in filter(None, (i.strip() for i in without_comments.split(","))):
        ident, _, explicit = (p.strip() for p in item.partition("="))
        value = int(explicit, 0) if explicit else value + 1
        members[ident] = value
    return members


def test_python_enum_matches_c() -> None:
    members = c_enum(STATS_H.read_text(), "mycni_stat")
    assert members.pop("STAT_MAX") == len(Stat)
    assert {k.removeprefix("STAT_"): v for k, v in members.items()} == {
        s.name: s.value for s in Stat
    }


def test_c_enum_parser_follows_implied_values() -> None:
    assert c_enum("enum e { A = 3, /* x, y */ B, C = 0x10, D, };", "e") == {
        "A": 3, "B": 4, "C": 16, "D": 17,
    }  # fmt: skip


def le64(n: int) -> list[str]:
    return [f"0x{b:02x}" for b in n.to_bytes(8, sys.byteorder)]


def le32(n: int) -> list[str]:
    return [f"0x{b:02x}" for b in n.to_bytes(4, sys.byteorder)]


def test_sum_per_cpu_adds_cpus_and_ignores_unknown_indexes() -> None:
    dump = [
        {"key": le32(0), "values": [{"cpu": 0, "value": le64(3)},
                                    {"cpu": 1, "value": le64(4)}]},
        {"key": le32(2), "values": [{"cpu": 0, "value": le64(1 << 40)}]},
        {"key": le32(99), "values": [{"cpu": 0, "value": le64(5)}]},
    ]  # fmt: skip
    totals = sum_per_cpu(dump)
    assert totals[Stat.REDIRECTED] == 7
    assert totals[Stat.DROP_TRUNCATED] == 1 << 40
    assert totals[Stat.PASSED] == 0
    assert set(totals) == set(Stat)
