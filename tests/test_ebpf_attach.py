"""ebpf-redirect on real veths in a scratch node: the prototype's tc command and why
it failed, then ADD/CHECK/DEL through the dispatcher with pod-to-pod ping carried
by the fast path alone (the node has no route to the pods and no forwarding)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from libcni import netns
from mycni_ebpf_redirect import maps, program, tc
from mycni_ebpf_redirect.counters import Stat
from mycni_ebpf_redirect.pins import Pins
from tests.ebpf_fixtures import (  # noqa: F401  (fixtures)
    BPF_SRC,
    ScratchNode,
    add_veth,
    from_pod_object,
    scratch_node,
)

pytestmark = pytest.mark.root(plugins=())
REPO = BPF_SRC.parent


def run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture
def pods(scratch_node: ScratchNode) -> Iterator[list[str]]:  # noqa: F811
    names = [f"mcebpf-pod-{secrets.token_hex(3)}" for _ in range(2)]
    try:
        for i, name in enumerate(names):
            add_veth(scratch_node, f"vh{i}", name)
        yield names
    finally:
        for name in names:
            run(["ip", "netns", "del", name], check=False)


def test_prototype_command_fails_on_the_section_name(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],
    from_pod_object: Path,  # noqa: F811
) -> None:
    """The prototype ran `tc filter replace dev DEV ingress handle 0x1 bpf da obj FILE`.

    tc 6.1 looks for the program in ELF section "classifier" unless told
    `sec NAME`; ours is SEC("tc") (libbpf's name), so tc exits 1 before talking
    to the kernel. With `sec tc` it gets further and, without a clsact qdisc,
    the kernel refuses: there is no ingress hook to hang the filter on.
    """
    proto = ["tc", "filter", "replace", "dev", "vh0", "ingress", "handle", "0x1",
             "bpf", "da", "obj", str(from_pod_object)]  # fmt: skip
    failed = scratch_node.run(proto, check=False)
    assert failed.returncode == 1
    assert "object file doesn't contain sec classifier" in failed.stderr

    no_qdisc = scratch_node.run([*proto, "sec", "tc"], check=False)
    assert no_qdisc.returncode == 2
    assert "Parent Qdisc doesn't exists" in no_qdisc.stderr


def test_attach_of_pinned_program_is_listed(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],
    from_pod_object: Path,  # noqa: F811
) -> None:
    pins = Pins(scratch_node.pin_root)
    prog_id = program.ensure_loaded(pins, from_pod_object).id
    for _ in range(2):  # attaching twice replaces, never duplicates
        scratch_node.run(["tc", "qdisc", "replace", "dev", "vh0", "clsact"])
        scratch_node.run(["tc", "filter", "replace", "dev", "vh0", "ingress",
                          "pref", "7", "handle", "1", "bpf", "da",
                          "object-pinned", str(pins.program)])  # fmt: skip
    listed = json.loads(scratch_node.run(
        ["tc", "-j", "filter", "show", "dev", "vh0", "ingress"]).stdout)  # fmt: skip
    ours = [f for f in listed if "options" in f]
    assert len(ours) == 1
    assert ours[0]["pref"] == 7
    assert ours[0]["options"]["prog"]["id"] == prog_id
    assert ours[0]["options"]["direct-action"] is True
    assert "from_pod" in ours[0]["options"]["bpf_name"]


# --- the plugin through its dispatcher -------------------------------------------


def plugin(
    node: ScratchNode, command: str, config: dict[str, Any], container: str, netns: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": container,
        "CNI_NETNS": f"/var/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/nonexistent",
    }
    return subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{node.netns}",
         sys.executable, "-m", "mycni_ebpf_redirect"],
        input=json.dumps(config), env=env, capture_output=True, text=True,
        timeout=60, cwd=REPO,
    )  # fmt: skip


def setup_pod(node: ScratchNode, pod: str, index: int) -> dict[str, Any]:
    """Calico-style addressing: a /32 and a route via a link-local gateway whose
    neighbour entry is the host veth's MAC, so every frame goes to the host veth."""
    ip = f"10.1.0.{index + 2}"
    host_mac = json.loads(node.run(["ip", "-j", "link", "show", f"vh{index}"]).stdout)[
        0
    ]
    in_pod = ["nsenter", f"--net=/var/run/netns/{pod}"]
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "set", "eth0", "up"],
        ["ip", "addr", "add", f"{ip}/32", "dev", "eth0"],
        ["ip", "neigh", "add", "169.254.1.1", "lladdr", host_mac["address"],
         "dev", "eth0", "nud", "permanent"],
        ["ip", "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"],
        ["ip", "route", "add", "10.1.0.0/24", "via", "169.254.1.1", "dev", "eth0"],
    ):  # fmt: skip
        run(in_pod + argv)
    # The node routes the pod's address to its veth, as vxlan does; ebpf-redirect
    # refuses an address the node routes anywhere else.
    node.run(["ip", "route", "add", f"{ip}/32", "dev", f"vh{index}"])
    pod_mac = json.loads(run([*in_pod, "ip", "-j", "link", "show", "eth0"]).stdout)[0]
    return {
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": f"vh{index}", "mac": host_mac["address"]},
            {
                "name": "eth0",
                "mac": pod_mac["address"],
                "sandbox": f"/var/run/netns/{pod}",
            },
        ],
        "ips": [{"address": f"{ip}/32", "interface": 1}],
    }


def test_add_check_del_with_traffic(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],
    from_pod_object: Path,  # noqa: F811
) -> None:
    node = scratch_node
    objdir = from_pod_object.parent
    base = {
        "cniVersion": "1.0.0", "name": "net1", "type": "ebpf-redirect",
        "pinRoot": str(node.pin_root), "bpfObjectDir": str(objdir),
        "stateDir": str(node.state_dir), "priority": 3,
    }  # fmt: skip
    prevs = [setup_pod(node, pod, i) for i, pod in enumerate(pods)]
    ping = ["nsenter", f"--net=/var/run/netns/{pods[0]}",
            "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.1.0.3"]  # fmt: skip
    assert run(ping, check=False).returncode != 0, "reachable without the fast path"

    for i, pod in enumerate(pods):
        added = plugin(node, "ADD", {**base, "prevResult": prevs[i]}, f"c{i}", pod)
        assert added.returncode == 0, added.stdout + added.stderr
        assert json.loads(added.stdout) == prevs[i]
    for i, pod in enumerate(pods):
        checked = plugin(node, "CHECK", {**base, "prevResult": prevs[i]}, f"c{i}", pod)
        assert checked.returncode == 0, checked.stdout + checked.stderr

    pins = Pins(node.pin_root)
    assert run(ping, check=False).returncode == 0
    assert maps.read_stats(pins.stats)[Stat.REDIRECTED] >= 4  # 2 requests, 2 replies

    for i, pod in enumerate(pods):
        for _ in range(2):  # DEL twice: the second finds everything gone
            deleted = plugin(
                node, "DEL", {**base, "prevResult": prevs[i]}, f"c{i}", pod
            )
            assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert maps.dump_endpoints(pins.ep4) == {}
    for dev in ("vh0", "vh1"):
        listed = json.loads(node.run(["tc", "-j", "filter", "show", "dev", dev,
                                      "ingress"]).stdout)  # fmt: skip
        assert listed == []
    assert list((node.state_dir / "net1").iterdir()) == []


def test_add_without_prev_result_is_code_7(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],
) -> None:
    config = {"cniVersion": "1.0.0", "name": "net1", "type": "ebpf-redirect",
              "stateDir": str(scratch_node.state_dir)}  # fmt: skip
    out = plugin(scratch_node, "ADD", config, "c0", pods[0])
    assert out.returncode != 0
    error = json.loads(out.stdout)
    assert error["code"] == 7
    assert error["msg"].startswith("prevResult: missing")


@pytest.mark.parametrize(
    ("ethertype", "stub"),
    [("0800", "45" + "00" * 9), ("86dd", "60" + "00" * 19)],
    ids=["ipv4-24-bytes", "ipv6-34-bytes"],
)
def test_truncated_ip_header_from_a_pod_is_dropped(
    scratch_node: ScratchNode,  # noqa: F811
    pods: list[str],
    from_pod_object: Path,  # noqa: F811
    ethertype: str,
    stub: str,
) -> None:
    """Real traffic covers what PROG_TEST_RUN cannot: a frame cut short inside its
    IPv4 (10 of 20 bytes) or IPv6 (20 of 40 bytes) header."""
    pins = Pins(scratch_node.pin_root)
    program.ensure_loaded(pins, from_pod_object)
    fd = netns.open_netns(f"/var/run/netns/{scratch_node.netns}")
    try:
        # tc, run from this thread, inherits the node netns.
        with netns.entered(fd):
            tc.ensure_clsact("vh0")
            tc.attach("vh0", 1, pins.program, [program.pinned_program(pins.program)])
    finally:
        os.close(fd)
    run(
        [
            "nsenter",
            f"--net=/var/run/netns/{pods[0]}",
            "ip",
            "link",
            "set",
            "eth0",
            "up",
        ]
    )
    send = (
        "import socket; s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); "
        "s.bind(('eth0', 0)); "
        f"s.send(bytes.fromhex('0200000000aa0200000000bb{ethertype}{stub}'))"
    )
    run(["nsenter", f"--net=/var/run/netns/{pods[0]}", sys.executable, "-c", send])
    assert maps.read_stats(pins.stats)[Stat.DROP_TRUNCATED] == 1


def test_endpoint_delete_keeps_another_pods_entry(
    scratch_node: ScratchNode,  # noqa: F811
    from_pod_object: Path,  # noqa: F811
) -> None:
    pins = Pins(scratch_node.pin_root)
    program.ensure_loaded(pins, from_pod_object)
    ip = IPv4Address("10.1.0.9")
    newer = maps.Endpoint(12, bytes(6), bytes(6))
    maps.put_endpoint(pins.ep4, ip, newer)
    maps.delete_endpoint_quietly(pins.ep4, ip, ifindex=11)
    assert maps.dump_endpoints(pins.ep4) == {ip: newer}
    maps.delete_endpoint_quietly(pins.ep4, ip, ifindex=12)
    maps.delete_endpoint_quietly(pins.ep4, ip, ifindex=12)
    assert maps.dump_endpoints(pins.ep4) == {}
