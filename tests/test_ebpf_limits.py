"""A full endpoint map on a scratch node: ADD fails naming the map and leaves nothing.

The objects are built with a one-entry mycni_ep4 (-DMYCNI_EP4_MAX_ENTRIES=1), so the
second pod meets a full map without writing 16384 entries first.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mycni_ebpf_redirect import maps
from mycni_ebpf_redirect.pins import Pins
from tests.ebpf_fixtures import BPF_SRC, ScratchNode, scratch_node  # noqa: F401
from tests.test_ebpf_attach import plugin, pods, setup_pod  # noqa: F401

pytestmark = pytest.mark.root(plugins=())


@pytest.fixture
def tiny_objects(tmp_path: Path) -> Path:
    out = tmp_path / "tiny-bpf"
    out.mkdir()
    arch_inc = f"/usr/include/{os.uname().machine}-linux-gnu"
    for name in ("from_pod", "from_overlay"):
        subprocess.run(
            ["clang", "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
             "-DMYCNI_EP4_MAX_ENTRIES=1", f"-I{arch_inc}", f"-I{BPF_SRC}",
             "-c", str(BPF_SRC / f"{name}.bpf.c"), "-o", str(out / f"{name}.bpf.o")],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return out


def test_add_into_a_full_endpoint_map_fails_and_rolls_back(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],  # noqa: F811
    tiny_objects: Path,
) -> None:
    node = scratch_node
    base = {
        "cniVersion": "1.0.0", "name": "net1", "type": "ebpf-redirect",
        "pinRoot": str(node.pin_root), "bpfObjectDir": str(tiny_objects),
        "stateDir": str(node.state_dir), "vxlanDevice": "",
    }  # fmt: skip
    prevs = [setup_pod(node, pod, i) for i, pod in enumerate(pods)]
    first = plugin(node, "ADD", {**base, "prevResult": prevs[0]}, "c0", pods[0])
    assert first.returncode == 0, first.stdout + first.stderr

    second = plugin(node, "ADD", {**base, "prevResult": prevs[1]}, "c1", pods[1])
    assert second.returncode != 0
    error = json.loads(second.stdout)
    pins = Pins(node.pin_root)
    assert error["code"] == 102, error
    assert error["msg"].startswith("failed to write endpoint 10.1.0.3 to mycni_ep4:")
    assert "max_entries 1" in error["msg"] and str(pins.ep4) in error["msg"]

    # Rolled back: no filter on the second veth, no record, no entry of its own.
    listed = json.loads(node.run(["tc", "-j", "filter", "show", "dev", "vh1",
                                  "ingress"]).stdout)  # fmt: skip
    assert [f for f in listed if "options" in f] == []
    records = sorted(p.name for p in (node.state_dir / "net1").iterdir())
    assert records == ["c0.eth0.json"]
    assert [str(ip) for ip in maps.dump_endpoints(pins.ep4)] == ["10.1.0.2"]

    for i, pod in enumerate(pods):
        deleted = plugin(node, "DEL", {**base, "prevResult": prevs[i]}, f"c{i}", pod)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert maps.dump_endpoints(pins.ep4) == {}
