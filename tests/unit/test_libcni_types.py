"""Result types: round trips through every spec version's JSON, version shapes, and
errors that name the JSON path."""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcni import version
from libcni.errors import Code, InvalidConfig
from libcni.types import (
    DNS,
    Interface,
    IPConfig,
    Result,
    Route,
    parse_mac,
    prev_result,
)

PRE_1_0 = ("0.3.0", "0.3.1", "0.4.0")
V1 = ("1.0.0", "1.1.0")
assert set(PRE_1_0 + V1) == set(version.SUPPORTED)

names = st.text(
    st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=15
)
macs = st.binary(min_size=6, max_size=6).map(
    lambda b: ":".join(f"{x:02x}" for x in bytes([b[0] & 0xFE]) + b[1:])
)


def interfaces(with_mtu: bool) -> st.SearchStrategy[Interface]:
    return st.builds(
        Interface,
        name=names,
        mac=st.one_of(st.just(""), macs),
        sandbox=st.sampled_from(["", "/var/run/netns/pod1", "/proc/42/ns/net"]),
        mtu=st.one_of(st.none(), st.integers(68, 65535)) if with_mtu else st.none(),
    )


@st.composite
def ip_configs(draw: st.DrawFn, n_interfaces: int) -> IPConfig:
    family: Literal[4, 6] = draw(st.sampled_from([4, 6]))
    addr = draw(st.ip_addresses(v=family))
    prefix = draw(st.integers(0, 32 if family == 4 else 128))
    gateway = draw(st.one_of(st.none(), st.ip_addresses(v=family)))
    index = (
        draw(st.one_of(st.none(), st.integers(0, n_interfaces - 1)))
        if n_interfaces
        else None
    )
    return IPConfig(ipaddress.ip_interface(f"{addr}/{prefix}"), gateway, index)


@st.composite
def routes(draw: st.DrawFn) -> Route:
    family: Literal[4, 6] = draw(st.sampled_from([4, 6]))
    addr = draw(st.ip_addresses(v=family))
    prefix = draw(st.integers(0, 32 if family == 4 else 128))
    dst = ipaddress.ip_network(f"{addr}/{prefix}", strict=False)
    gw = draw(st.one_of(st.none(), st.ip_addresses(v=family)))
    return Route(dst, gw)


words = st.text(st.characters(codec="ascii", categories=["L"]), min_size=1)
dnses = st.builds(
    DNS,
    nameservers=st.lists(st.ip_addresses().map(str), max_size=3).map(tuple),
    domain=st.one_of(st.just(""), words),
    search=st.lists(words, max_size=3).map(tuple),
    options=st.lists(st.sampled_from(["ndots:5", "rotate"]), max_size=2).map(tuple),
)


@st.composite
def results(draw: st.DrawFn, ver: str) -> Result:
    ifaces = draw(
        st.lists(interfaces(version.at_least(ver, "1.1.0")), max_size=3).map(tuple)
    )
    ips = draw(st.lists(ip_configs(len(ifaces)), max_size=4).map(tuple))
    rts = draw(st.lists(routes(), max_size=3).map(tuple))
    return Result(ver, ifaces, ips, rts, draw(dnses))


@pytest.mark.parametrize("ver", version.SUPPORTED)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_through_json(ver: str, data: st.DataObject) -> None:
    original = data.draw(results(ver))
    text = json.dumps(original.to_dict(ver))
    back = Result.from_dict(json.loads(text))
    # Exact for 1.x; 0.x adds ips[].version, which from_dict ignores, and its
    # strategy draws no mtu (that shape has none).
    assert back == original
    assert back.to_dict(ver) == original.to_dict(ver)


@pytest.mark.parametrize("ver", PRE_1_0)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_pre_1_0_shape_has_ip_version_and_no_mtu(ver: str, data: st.DataObject) -> None:
    result = data.draw(results("1.1.0"))
    obj = result.to_dict(ver)
    assert obj["cniVersion"] == ver
    for ip, out in zip(result.ips, obj.get("ips", []), strict=True):
        assert out["version"] == str(ip.address.version)
    for out in obj.get("interfaces", []):
        assert "mtu" not in out


@pytest.mark.parametrize("ver", V1)
def test_1_x_shape_has_no_ip_version(ver: str) -> None:
    result = Result(ips=(IPConfig(ipaddress.ip_interface("10.1.0.3/24")),))
    assert result.to_dict(ver)["ips"] == [{"address": "10.1.0.3/24"}]


@pytest.mark.parametrize(
    ("ver", "has_mtu"), [("1.0.0", False), ("1.1.0", True), ("0.4.0", False)]
)
def test_interface_mtu_only_from_1_1_0(ver: str, has_mtu: bool) -> None:
    obj = Result(interfaces=(Interface("eth0", mtu=1450),)).to_dict(ver)
    assert ("mtu" in obj["interfaces"][0]) is has_mtu


def test_0_3_result_with_version_fields_parses() -> None:
    obj = {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/p"}],
        "ips": [
            {"version": "4", "address": "10.1.0.3/24", "gateway": "10.1.0.1"},
            {"version": "6", "address": "fd00::3/64", "interface": 0},
        ],
    }
    result = Result.from_dict(obj)
    assert result.cni_version == "0.3.1"
    assert [ip.address.version for ip in result.ips] == [4, 6]
    assert result.ips_on(0) == (result.ips[1],)


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        (
            {"ips": [{"address": "10.1.0.3/24", "interface": 0}]},
            "result.ips[0].interface",
        ),
        (
            {
                "interfaces": [{"name": "a"}],
                "ips": [
                    {"address": "10.1.0.3/24", "interface": 0},
                    {"address": "10.1.0.4/24", "interface": 1},
                ],
            },
            "result.ips[1].interface",
        ),
        (
            {
                "interfaces": [{"name": "a"}],
                "ips": [{"address": "10.1.0.3/24", "interface": -1}],
            },
            "result.ips[0].interface",
        ),
        (
            {
                "interfaces": [{"name": "a"}],
                "ips": [{"address": "10.1.0.3/24", "interface": True}],
            },
            "result.ips[0].interface",
        ),
    ],
    ids=["index-0-no-interfaces", "index-1-of-1", "negative", "boolean"],
)
def test_interface_index_out_of_range_names_the_path(
    obj: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidConfig) as info:
        Result.from_dict(obj)
    assert info.value.code == Code.INVALID_CONFIG
    assert info.value.msg.startswith(path)


@pytest.mark.parametrize(
    ("obj", "path"),
    [
        ([], "result"),
        ({"cniVersion": 1}, "result.cniVersion"),
        ({"interfaces": {}}, "result.interfaces"),
        ({"interfaces": [{}]}, "result.interfaces[0].name"),
        ({"interfaces": [{"name": "a", "mtu": "1500"}]}, "result.interfaces[0].mtu"),
        ({"ips": [{"address": "10.1.0.3"}]}, "result.ips[0].address"),
        ({"ips": [{"address": "10.1.0.300/24"}]}, "result.ips[0].address"),
        (
            {"ips": [{"address": "10.1.0.3/24", "gateway": "x"}]},
            "result.ips[0].gateway",
        ),
        ({"ips": ["10.1.0.3/24"]}, "result.ips[0]"),
        ({"routes": [{"dst": "nope"}]}, "result.routes[0].dst"),
        ({"routes": [{}]}, "result.routes[0].dst"),
        ({"routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]}, "result.routes[0].gw"),
        ({"dns": []}, "result.dns"),
        ({"dns": {"nameservers": [1]}}, "result.dns.nameservers"),
        ({"dns": {"domain": 5}}, "result.dns.domain"),
        ({"ips": [{"address": "fd00::c%eth0/64"}]}, "result.ips[0].address"),
        (
            {"ips": [{"address": "fd00::c/64", "gateway": "fe80::1%eth0"}]},
            "result.ips[0].gateway",
        ),
        (
            {"ips": [{"address": "fd00::c/64", "gateway": "10.1.0.1"}]},
            "result.ips[0].gateway",
        ),
        (
            {"ips": [{"address": "10.1.0.3/24", "gateway": "fd00::1"}]},
            "result.ips[0].gateway",
        ),
    ],
    ids=[
        "not-object",
        "version-number",
        "interfaces-object",
        "interface-no-name",
        "mtu-string",
        "address-no-prefix",
        "address-bad-octet",
        "gateway-garbage",
        "ip-not-object",
        "route-dst-garbage",
        "route-no-dst",
        "route-gw-other-family",
        "dns-list",
        "nameserver-number",
        "domain-number",
        "address-with-zone",
        "gateway-with-zone",
        "v6-address-v4-gateway",
        "v4-address-v6-gateway",
    ],
)
def test_invalid_result_names_the_path(obj: Any, path: str) -> None:
    with pytest.raises(InvalidConfig) as info:
        Result.from_dict(obj)
    assert info.value.msg.startswith(path)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, None),
        ({"prevResult": None}, None),
        ({"prevResult": {}}, None),
        ({"prevResult": {"cniVersion": "1.0.0"}}, Result("1.0.0")),
    ],
    ids=["absent", "null", "empty-object", "empty-result"],
)
def test_prev_result(config: dict[str, Any], expected: Result | None) -> None:
    assert prev_result(config) == expected


def test_prev_result_errors_name_prev_result() -> None:
    with pytest.raises(InvalidConfig) as info:
        prev_result({"prevResult": {"ips": [{"address": "x"}]}})
    assert info.value.msg.startswith("prevResult.ips[0].address")


def test_host_interface_is_the_first_outside_a_sandbox() -> None:
    pod, host = Interface("eth0", sandbox="/var/run/netns/p"), Interface("mc1234")
    assert Result(interfaces=(pod, host)).host_interface() == host
    assert Result(interfaces=(pod,)).host_interface() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("02:AB:cd:00:00:01", "02:ab:cd:00:00:01"),
        ("02-00-00-00-00-01", "02:00:00:00:00:01"),
    ],
    ids=["mixed-case", "dashes"],
)
def test_parse_mac(text: str, expected: str) -> None:
    assert parse_mac(text, "mac") == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "02:00:00:00:00",
        "02:00:00:00:00:0g",
        "01:00:5e:00:00:01",
        5,
        "0200.0000.0001",
    ],
    ids=["empty", "five-bytes", "not-hex", "multicast", "number", "cisco-dots"],
)
def test_parse_mac_rejects(text: Any) -> None:
    with pytest.raises(InvalidConfig) as info:
        parse_mac(text, "ipam.mac")
    assert info.value.msg.startswith("ipam.mac: ")
