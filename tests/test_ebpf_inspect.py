"""`ebpf-redirect inspect` on the testbed: endpoints, counters, and explain's path of
each flow checked against the attached program's own verdict (BPF_PROG_TEST_RUN)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mycni_ebpf_redirect.pins import Pins
from tests import testbed as tb
from tests.cluster import Network

EXE = tb.BUILD_BIN / "ebpf-redirect"


def inspect(node: tb.Node, *argv: str, code: int = 0) -> Any:
    proc = node.run(
        [str(EXE), "inspect", "--pin-root", str(node.pin_root), "--state-dir",
         str(node.state_dir / "ebpf-state"), "--json", *argv],
        check=False, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.strip() else None


@pytest.mark.root
def test_endpoints_and_counters_list_each_pod_and_path(any_chain: Network) -> None:
    chain = any_chain
    mode = chain.overrides["ebpf-redirect.attachMode"]
    node = chain.bed.node1
    a, b = chain.add(node), chain.add(node)
    listed = inspect(node, "endpoints")
    rows = {row["address"]: row for row in listed["endpoints"]}
    assert set(rows) == {a.ip, b.ip}
    for at in (a, b):
        row = rows[at.ip]
        assert row["hostVeth"] == at.host_veth and row["container"] == at.container_id
        assert (row["mode"], row["attach"], row["mapEntry"]) == ("fast", mode, "ok")
        hook = "tc filter" if mode == "tc" else "tcx link "
        assert row["hook"].startswith(hook) and "not our" not in row["hook"], row
    assert tb.ping(a.pod.name, b.ip)
    counters = inspect(node, "counters")["counters"]
    assert counters["REDIRECTED"] >= 2 and "DROP_TRUNCATED" in counters

    # A person's table, through the same executable, without CNI_COMMAND.
    table = node.run([str(EXE), "inspect", "--pin-root", str(node.pin_root),
                      "--state-dir", str(node.state_dir / "ebpf-state"),
                      "endpoints"]).stdout  # fmt: skip
    assert table.splitlines()[0].split()[:2] == ["ADDRESS", "HOST"]
    assert a.host_veth in table and b.host_veth in table


@pytest.mark.root
def test_features_agree_with_how_pods_were_attached(chain: Network) -> None:
    node = chain.bed.node1
    at = chain.add(node)
    found = inspect(node, "features")
    assert found["fastPath"] is True and found["gaps"] == []
    rows = {row["address"]: row for row in inspect(node, "endpoints")["endpoints"]}
    assert rows[at.ip]["attach"] == found["features"]["attachMode auto picks"]
    assert found["features"]["bpf_redirect_peer"] == "yes"


@pytest.mark.root
def test_explain_agrees_with_the_programs_test_run_on_every_path(
    chain: Network,
) -> None:
    n1, n2 = chain.bed.nodes
    a, b, c = chain.add(n1), chain.add(n1), chain.add(n2)
    cases = [
        (n1, a.ip, b.ip, 7, "REDIRECTED"),  # same node
        (n1, a.ip, c.ip, 7, "REDIRECTED_NEIGH"),  # to the other node
        (n1, a.ip, str(n1.address.ip), -1, "PASSED"),  # to its node: the stack
        (n1, c.ip, a.ip, 7, "REDIRECTED_OVERLAY_IN"),  # from the other node
    ]
    for node, src, dst, verdict, counter in cases:
        found = inspect(node, "explain", src, dst)
        assert found["expected"] == {"verdict": verdict, "counter": counter}, found
        assert found["testRun"]["verdict"] == verdict, found
        assert counter in found["testRun"]["counters"], found
        assert found["agrees"] is True, found
    assert "program id" in inspect(n1, "explain", a.ip, b.ip)["steps"]["hook"]

    # An entry gone from the map: explain expects the stack; the program agrees.
    ep4 = str(Pins(n1.pin_root).ep4)
    n1.run(["bpftool", "map", "delete", "pinned", ep4, "key", *b.ip.split(".")])
    found = inspect(n1, "explain", a.ip, b.ip)
    assert (found["expected"]["verdict"], found["agrees"]) == (-1, True), found
    assert "not in mycni_ep4" in found["steps"]["destination"]

    for src, why in (("10.0.0.300", "is not an IP address"),
                     ("fd00::2%eth0", "has a zone index")):  # fmt: skip
        bad = n1.run([str(EXE), "inspect", "--pin-root", str(n1.pin_root),
                      "--state-dir", str(n1.state_dir / "ebpf-state"), "explain",
                      src, a.ip], check=False)  # fmt: skip
        assert bad.returncode == 1
        assert f'SRC: "{src}" {why}' in bad.stderr


@pytest.mark.root
def test_explain_agrees_on_sources_the_programs_leave_to_the_stack(
    dual: Network,
) -> None:
    """Sources that are no pod's arrive on node 1's VXLAN device: the martians and
    IPv6 link-local or unspecified ones stay with the stack, the rest go to a."""
    n1, n2 = dual.bed.nodes
    a, c = dual.add(n1), dual.add(n2)
    cases = [
        ("fe80::1", a.ip6, -1, "PASSED_V6"),  # link-local
        ("::", a.ip6, -1, "PASSED_V6"),  # unspecified
        ("ff02::1", a.ip6, -1, "PASSED_V6"),  # martian: multicast
        ("127.0.0.1", a.ip, -1, "PASSED"),  # martian: loopback
        ("224.0.0.1", a.ip, -1, "PASSED"),  # martian: multicast
        (c.ip, a.ip, 7, "REDIRECTED_OVERLAY_IN"),  # another node's pod
        (c.ip6, a.ip6, 7, "REDIRECTED_OVERLAY_IN_V6"),
    ]
    for src, dst, verdict, counter in cases:
        found = inspect(n1, "explain", src, dst)
        assert found["expected"] == {"verdict": verdict, "counter": counter}, found
        assert found["testRun"]["verdict"] == verdict, found
        assert counter in found["testRun"]["counters"], found
        assert found["agrees"] is True, found
    steps = inspect(n1, "explain", "127.0.0.1", a.ip)["steps"]
    assert "source 127.0.0.1 is a martian source: loopback" in steps["expected"]
