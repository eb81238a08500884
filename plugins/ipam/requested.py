"""Addresses the caller asks for: runtimeConfig.ips, args.cni.ips and CNI_ARGS IP=.

runtimeConfig.ips (the `ips` capability) adds to the others. args.cni.ips and
CNI_ARGS IP= say the same thing; when args.cni carries `ips`, the CNI_ARGS copy is
ignored (CNI conventions, "args in network config").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from libcni.errors import InvalidConfig, InvalidEnvironment, shown
from libcni.types import IPAddress


def requested_addresses(
    config: Mapping[str, Any], cni_args: Mapping[str, str]
) -> tuple[IPAddress, ...]:
    """Every distinct address asked for, in the order given."""
    found: list[IPAddress] = []
    runtime = config.get("runtimeConfig")
    if isinstance(runtime, Mapping) and runtime.get("ips") is not None:
        found += _from_list(runtime["ips"], "runtimeConfig.ips")
    cni = _args_cni(config)
    if "ips" in cni:
        found += _from_list(cni["ips"], "args.cni.ips")
    elif cni_args.get("IP"):
        found += _from_cni_args(cni_args["IP"])
    return tuple(dict.fromkeys(found))


def _args_cni(config: Mapping[str, Any]) -> Mapping[str, Any]:
    args = config.get("args")
    cni = args.get("cni") if isinstance(args, Mapping) else None
    return cni if isinstance(cni, Mapping) else {}


def _from_list(raw: Any, where: str) -> list[IPAddress]:
    if not isinstance(raw, list):
        raise InvalidConfig(f"{where}: expected a list of addresses, got {shown(raw)}")
    out = []
    for i, item in enumerate(raw):
        addr = _parse(item)
        if addr is None:
            raise InvalidConfig(
                f"{where}[{i}]: {shown(item)} is not an IP address or address/prefix"
            )
        out.append(addr)
    return out


def _from_cni_args(text: str) -> list[IPAddress]:
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        addr = _parse(item)
        if addr is None:
            raise InvalidEnvironment(
                f"invalid CNI_ARGS: IP={shown(item)} is not an IP address"
            )
        out.append(addr)
    return out


def _parse(item: Any) -> IPAddress | None:
    # A prefix length is accepted and dropped: the range decides the prefix.
    if not isinstance(item, str):
        return None
    try:
        return ipaddress.ip_interface(item.strip()).ip
    except ValueError:
        return None
