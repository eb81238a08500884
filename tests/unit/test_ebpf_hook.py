"""The choice of attach mode and what STATUS makes of the kernel's features."""

from __future__ import annotations

from pathlib import Path

import pytest

from mycni_ebpf_redirect import hook
from mycni_ebpf_redirect.readiness import HELPERS, Features


@pytest.mark.parametrize(
    ("wanted", "tcx_ok", "current", "mode"),
    [
        ("auto", True, None, "tcx"),
        ("auto", False, None, "tc"),  # before kernel 6.6: clsact
        ("tc", True, None, "tc"),
        ("tcx", True, None, "tcx"),
        ("tcx", False, None, "tcx"),  # insisted on: the attach fails, ADD falls back
        ("auto", True, "tc", "tc"),  # a device that runs ours keeps its way
        ("tcx", True, "tc", "tc"),
        ("tc", True, "tcx", "tcx"),
    ],
    ids=["auto-new-kernel", "auto-old-kernel", "tc", "tcx", "tcx-old-kernel",
         "keeps-tc", "keeps-tc-over-tcx", "keeps-tcx"],
)  # fmt: skip
def test_choose(wanted: str, tcx_ok: bool, current: str | None, mode: str) -> None:
    assert hook.choose(wanted, tcx_ok, current) == mode


def test_gaps_name_each_missing_feature() -> None:
    full = Features(sched_cls=True, missing_helpers=(), tcx=True)
    assert full.gaps("auto") == [] and full.gaps("tcx") == []
    old = Features(sched_cls=True, missing_helpers=("bpf_redirect_peer",), tcx=False)
    assert old.gaps("auto") == [
        "the kernel lacks the helper bpf_redirect_peer (kernel 5.10)"
    ]
    assert old.gaps("tc") == old.gaps("auto")
    assert "attachMode is tcx and the kernel has no tcx" in old.gaps("tcx")[-1]
    assert old.attach_mode("auto") == "tc" and full.attach_mode("auto") == "tcx"
    none = Features(sched_cls=False, missing_helpers=tuple(HELPERS), tcx=False)
    assert len(none.gaps("auto")) == 1 + len(HELPERS)


def test_link_pins_are_named_by_ifindex_without_dots() -> None:
    # bpffs refuses names with dots (kernel/bpf/inode.c); ifindexes are not reused.
    pin = hook.link_pin(Path("/sys/fs/bpf/mycni"), 17)
    assert str(pin) == "/sys/fs/bpf/mycni/links/if17-ingress" and "." not in pin.name
