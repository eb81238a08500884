"""The node's VXLAN device that from_overlay goes on: named in the config or found."""

from __future__ import annotations

import logging
import re
from typing import Any

from libcni.errors import InvalidConfig

from . import command, links
from .config import EbpfConf

log = logging.getLogger(__name__)

# The vxlan plugin's default device name (`mycni.<vni>`).
DEFAULT_NAME = re.compile(r"^mycni\.[0-9]+$")


def find_device(conf: EbpfConf) -> links.Link | None:
    """The VXLAN device to attach to, or None when there is none to use.

    `vxlanDevice` names it; "" turns the overlay program off. Without the key the
    node's one VXLAN device named `mycni.<vni>` is taken (the vxlan plugin's default,
    created by its ADD before ours); none means no overlay on this node yet, and
    several mean the config must say which.
    """
    if conf.vxlan_device == "":
        return None
    if conf.vxlan_device is not None:
        link = links.find(conf.vxlan_device)
        if link is None:
            raise InvalidConfig(
                f"vxlanDevice: {conf.vxlan_device} does not exist on this node"
            )
        kind = links.driver(link.name)
        if kind != "vxlan":
            # On the uplink, from_overlay would hand unencapsulated frames for local
            # pods straight to them, past the node's firewall.
            raise InvalidConfig(
                f"vxlanDevice: {link.name} is a {kind} device, not a VXLAN device"
            )
        return link
    names = sorted(n for n in vxlan_link_names() if DEFAULT_NAME.match(n))
    if len(names) > 1:
        raise InvalidConfig(
            f"vxlanDevice: not set and the node has several VXLAN devices "
            f"({', '.join(names)}); name the one of this network"
        )
    if not names:
        log.info("no VXLAN device named mycni.<vni> on this node: no overlay program")
        return None
    return links.find(names[0])


def vxlan_link_names() -> list[str]:
    listed: list[dict[str, Any]] = command.run_json(
        "list VXLAN devices", ["ip", "-j", "link", "show", "type", "vxlan"]
    )
    return [str(link["ifname"]) for link in listed if "ifname" in link]
