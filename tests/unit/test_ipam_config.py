"""mycni_ipam.config: host-local's keys and defaults, errors naming the JSON path."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcni.errors import InvalidConfig
from mycni_ipam.config import DEFAULT_DATA_DIR, IpamConf, StoreConf
from mycni_ipam.resolv import parse_dns


def netconf(**ipam: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "mynet", "type": "x", "ipam": ipam}


def test_defaults_follow_host_local() -> None:
    conf = IpamConf.from_json(netconf(type="mycni-ipam", subnet="10.1.0.0/24"))

    (rng,) = conf.range_sets[0].ranges
    assert str(rng.start) == "10.1.0.1"
    assert str(rng.end) == "10.1.0.254"
    assert str(rng.gateway) == "10.1.0.1"
    assert conf.store.data_dir == DEFAULT_DATA_DIR
    assert conf.store.lock_timeout == 10.0
    assert conf.routes == ()
    assert rng.describe() == "10.1.0.0/24 (10.1.0.2-10.1.0.254)"


def test_ipv6_range_ends_at_the_last_address() -> None:
    conf = IpamConf.from_json(netconf(ranges=[[{"subnet": "fd00::/120"}]]))

    (rng,) = conf.range_sets[0].ranges
    assert str(rng.end) == "fd00::ff"
    assert str(rng.gateway) == "fd00::1"


def test_full_config_with_unknown_keys() -> None:
    conf = IpamConf.from_json(
        netconf(
            type="mycni-ipam",
            subnet="10.0.0.0/16",
            rangeStart="10.0.5.0",
            rangeEnd="10.0.5.99",
            gateway="10.0.0.254",
            ranges=[
                [{"subnet": "fd00::/64", "rangeStart": "fd00::10"}],
                [{"subnet": "10.2.0.0/24"}, {"subnet": "10.3.0.0/24"}],
            ],
            routes=[{"dst": "0.0.0.0/0"}, {"dst": "fd00:1::/64", "gw": "fd00::1"}],
            dataDir="/tmp/x",
            lockTimeout=0.5,
            resolvConf="/etc/resolv.conf",
            somethingNew={"a": 1},
        )
    )

    assert len(conf.range_sets) == 3  # the legacy range comes first, like host-local
    assert str(conf.range_sets[0].ranges[0].start) == "10.0.5.0"
    assert str(conf.range_sets[0].ranges[0].gateway) == "10.0.0.254"
    assert conf.range_sets[1].version == 6
    assert len(conf.range_sets[2].ranges) == 2
    assert [str(r.dst) for r in conf.routes] == ["0.0.0.0/0", "fd00:1::/64"]
    assert conf.store.data_dir == Path("/tmp/x")
    assert conf.store.lock_timeout == 0.5


@pytest.mark.parametrize(
    ("ipam", "message"),
    [
        (
            {
                "ranges": [
                    [
                        {"subnet": "10.1.0.0/24"},
                        {"subnet": "10.2.0.0/24", "gateway": "10.9.0.9"},
                    ]
                ]
            },
            "ipam.ranges[0][1].gateway: 10.9.0.9 is outside 10.2.0.0/24",
        ),
        (
            {
                "ranges": [
                    [
                        {
                            "subnet": "10.1.0.0/24",
                            "rangeStart": "10.1.0.50",
                            "rangeEnd": "10.1.0.10",
                        }
                    ]
                ]
            },
            "ipam.ranges[0][0].rangeStart: 10.1.0.50 is after rangeEnd 10.1.0.10",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "fd00::/64"}]]},
            "ipam.ranges[0][1].subnet: fd00::/64 mixes address families with "
            "10.1.0.0/24 in one range set",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24"}, {"subnet": "10.1.0.0/25"}]]},
            "ipam.ranges[0][1]: 10.1.0.0/25 (10.1.0.2-10.1.0.126) overlaps "
            "ipam.ranges[0][0] 10.1.0.0/24 (10.1.0.2-10.1.0.254)",
        ),
        (
            {"subnet": "10.1.0.0/16", "ranges": [[{"subnet": "10.1.2.0/24"}]]},
            "ipam.ranges[0]: 10.1.2.0/24 (10.1.2.2-10.1.2.254) overlaps ipam "
            "10.1.0.0/16 (10.1.0.2-10.1.255.254)",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.1/24"}]]},
            "ipam.ranges[0][0].subnet: 10.1.0.1/24 has host bits set "
            "(the network is 10.1.0.0/24)",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/31"}]]},
            "ipam.ranges[0][0].subnet: 10.1.0.0/31 is too small to allocate from",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24", "rangeEnd": "10.2.0.1"}]]},
            "ipam.ranges[0][0].rangeEnd: 10.2.0.1 is outside 10.1.0.0/24",
        ),
        (
            {"ranges": [[{"subnet": "10.1.0.0/24", "rangeStart": "bogus"}]]},
            'ipam.ranges[0][0].rangeStart: "bogus" is not an IP address',
        ),
        ({"ranges": [[{"subnet": "nope"}]]}, 'ipam.ranges[0][0].subnet: "nope" is not'),
        ({"ranges": [[{}]]}, "ipam.ranges[0][0].subnet: missing"),
        ({"ranges": [[]]}, "ipam.ranges[0]: empty range set"),
        ({"ranges": "10.0.0.0/8"}, "ipam.ranges: expected a list of range sets"),
        ({}, "ipam: no ranges given"),
        ({"rangeStart": "10.0.0.5"}, 'ipam.rangeStart: "10.0.0.5" given without'),
        (
            {
                "subnet": "10.1.0.0/24",
                "routes": [{"dst": "10.0.0.0/8", "gw": "fd00::1"}],
            },
            "ipam.routes[0].gw: fd00::1 is not of the family of 10.0.0.0/8",
        ),
        (
            {"subnet": "10.1.0.0/24", "lockTimeout": 0},
            "ipam.lockTimeout: expected seconds in (0, 300], got 0",
        ),
        (
            {"subnet": "10.1.0.0/24", "dataDir": 5},
            "ipam.dataDir: expected an absolute path, got 5",
        ),
        (
            {"subnet": "10.1.0.0/24", "dataDir": "relative/dir"},
            'ipam.dataDir: expected an absolute path, got "relative/dir"',
        ),
        (
            {"subnet": "10.1.0.0/24", "lockTimeout": 1e308},
            "ipam.lockTimeout: expected seconds in (0, 300], got 1e+308",
        ),
        (
            {"subnet": "10.1.0.0/30", "rangeStart": "10.1.0.1", "rangeEnd": "10.1.0.1"},
            "ipam: 10.1.0.1-10.1.0.1 of 10.1.0.0/30 holds no address to hand out",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_invalid_config_names_path_and_value(
    ipam: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidConfig) as err:
        IpamConf.from_json(netconf(**ipam))

    assert err.value.msg.startswith(message)
    assert "None" not in err.value.msg


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"name": "n"}, "ipam: expected an object, got null"),
        ({"ipam": {"subnet": "10.0.0.0/24"}}, "name: expected a network name"),
        ([], "network config: expected an object"),
    ],
    ids=["no-ipam", "no-name", "not-an-object"],
)
def test_invalid_top_level(config: Any, message: str) -> None:
    with pytest.raises(InvalidConfig, match="^" + message):
        IpamConf.from_json(config)


def test_store_conf_ignores_broken_ranges() -> None:
    # DEL needs only where the leases are, so a broken range must not block it.
    conf = StoreConf.from_json(netconf(ranges=[[{"subnet": "junk"}]], dataDir="/d"))

    assert conf == StoreConf(network="mynet", data_dir=Path("/d"), lock_timeout=10.0)


@st.composite
def v4_ranges(draw: st.DrawFn) -> dict[str, Any]:
    prefix = draw(st.integers(16, 30))
    net = ipaddress.IPv4Network((draw(st.integers(0, 2**32 - 1)), prefix), strict=False)
    first, last = int(net.network_address), int(net.broadcast_address)
    a, b = sorted(draw(st.lists(st.integers(first, last), min_size=2, max_size=2)))
    return {
        "subnet": str(net),
        "rangeStart": str(ipaddress.IPv4Address(a)),
        "rangeEnd": str(ipaddress.IPv4Address(b)),
    }


@given(v4_ranges())
def test_parsed_ranges_are_inside_their_subnet_or_rejected(raw: dict[str, Any]) -> None:
    try:
        conf = IpamConf.from_json(netconf(ranges=[[raw]]))
    except InvalidConfig as exc:
        assert "holds no address to hand out" in exc.msg
        return

    (rng,) = conf.range_sets[0].ranges
    span = rng.usable_span()
    assert span is not None
    assert rng.start in rng.subnet and rng.end in rng.subnet
    assert all(rng.contains(a) for a in span)


def test_resolv_conf_lines_become_dns() -> None:
    dns = parse_dns(
        "# comment\nnameserver 10.0.0.10\nnameserver fd00::10\ndomain example.org\n"
        "search a.example b.example\noptions ndots:5 edns0\nsortlist 10.0.0.0\n"
    )

    assert dns.nameservers == ("10.0.0.10", "fd00::10")
    assert dns.domain == "example.org"
    assert dns.search == ("a.example", "b.example")
    assert dns.options == ("ndots:5", "edns0")
