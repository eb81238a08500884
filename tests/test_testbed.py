"""The testbed and the driver themselves, proven with the reference plugins
(/usr/lib/cni bridge + host-local) before any of ours is involved."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest

from tests import testbed as tb

# CHECK and cached-result DEL need spec 0.4.0 or later; libcni 1.1.2 stops at 1.0.0.
SPEC_VERSIONS = ["0.4.0", "1.0.0"]
POD_SUBNET = "10.244.1.0/24"


def reference_conflist(cni_version: str = "1.0.0") -> dict[str, Any]:
    return {
        "cniVersion": cni_version,
        "name": "reference",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "refbr0",
                "isGateway": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


def pod_address(result: dict[str, Any]) -> str:
    return str(result["ips"][0]["address"]).split("/")[0]


# --- without root ---------------------------------------------------------------


def test_render_conflist_sets_list_and_plugin_keys() -> None:
    conf = tb.render_conflist(
        reference_conflist(),
        {"name": "other", "bridge.ipam.dataDir": "/d", "bridge.mtu": 1400},
    )

    assert conf["name"] == "other"
    assert conf["plugins"][0]["ipam"]["dataDir"] == "/d"
    assert conf["plugins"][0]["mtu"] == 1400


def test_render_conflist_leaves_its_source_alone() -> None:
    source = reference_conflist()

    tb.render_conflist(source, {"bridge.ipam.type": "mycni-ipam"})

    assert source == reference_conflist()


def test_render_conflist_rejects_an_unknown_plugin_type() -> None:
    with pytest.raises(KeyError, match="vxlan"):
        tb.render_conflist(reference_conflist(), {"vxlan.mtu": 1400})


def test_render_conflist_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "ref.conflist"
    path.write_text(json.dumps(reference_conflist()))

    assert tb.render_conflist(path, {"cniVersion": "0.4.0"})["cniVersion"] == "0.4.0"


def test_node_render_conflist_points_ipam_at_the_node(tmp_path: Path) -> None:
    node = tb.Node("n", 1, ipaddress.IPv4Interface("192.168.1.1/24"), tmp_path)

    conf = node.render_conflist(reference_conflist())

    assert conf["plugins"][0]["ipam"]["dataDir"] == str(tmp_path / "ipam")


# --- with root ------------------------------------------------------------------


@pytest.mark.root(plugins=())
def test_nodes_reach_each_other_over_the_underlay(testbed: tb.Testbed) -> None:
    n1, n2 = testbed.nodes

    assert tb.ping(n1, str(n2.address.ip))
    assert tb.ping(n2, str(n1.address.ip))
    exchange = tb.tcp_exchange(n1, n2, str(n2.address.ip), payload="over the underlay")
    assert exchange == tb.Exchange("over the underlay", str(n1.address.ip))


@pytest.mark.root(plugins=())
def test_default_route_of_a_node_is_the_underlay(testbed: tb.Testbed) -> None:
    route = testbed.node1.run(["ip", "-j", "route", "show", "default"]).stdout

    assert [r["dev"] for r in json.loads(route)] == [tb.UNDERLAY]


@pytest.mark.root(plugins=())
@pytest.mark.parametrize("version", SPEC_VERSIONS, ids=lambda v: f"spec-{v}")
def test_reference_plugins_add_check_del(
    testbed: tb.Testbed, driver: tb.Driver, version: str
) -> None:
    node = testbed.node1
    pod = testbed.add_pod()
    conf = node.render_conflist(reference_conflist(version))

    result = driver.add(conf, pod, "ctr-ref")
    assert result["cniVersion"] == version
    assert tb.ping(node, pod_address(result))
    assert "eth0" in tb.list_links(pod)
    driver.check(conf, pod, "ctr-ref")

    driver.delete(conf, pod, "ctr-ref")
    assert "eth0" not in tb.list_links(pod)
    assert testbed.leftover_state() == []
    driver.delete(conf, pod, "ctr-ref")


@pytest.mark.root(plugins=())
def test_del_after_the_pod_namespace_is_gone(
    testbed: tb.Testbed, driver: tb.Driver
) -> None:
    pod = testbed.add_pod()
    conf = testbed.node1.render_conflist(reference_conflist())
    driver.add(conf, pod, "ctr-gone")

    testbed.remove_pod(pod)

    driver.delete(conf, None, "ctr-gone")
    assert testbed.leftover_state() == []


@pytest.mark.root(plugins=())
def test_driver_keeps_a_plugin_error_code(
    testbed: tb.Testbed, driver: tb.Driver
) -> None:
    pod = testbed.add_pod()
    conf = testbed.node1.render_conflist(
        reference_conflist(), {"bridge.ipam.ranges": [[{"subnet": "10.244.1.0/31"}]]}
    )

    with pytest.raises(tb.CniCommandError) as failure:
        driver.add(conf, pod, "ctr-bad")

    # host-local 1.1.1 reports a bad range as an untyped error, which is 999.
    assert failure.value.code == 999
    assert "10.244.1.0/31" in failure.value.msg


@pytest.mark.root(plugins=())
def test_driver_marks_its_own_errors_with_code_0(
    testbed: tb.Testbed, driver: tb.Driver
) -> None:
    conf = tb.render_conflist(reference_conflist(), {"bridge.type": "no-such-plugin"})

    with pytest.raises(tb.CniCommandError) as failure:
        driver.add(conf, testbed.add_pod(), "ctr-none")

    assert failure.value.code == 0
    assert "no-such-plugin" in failure.value.msg
