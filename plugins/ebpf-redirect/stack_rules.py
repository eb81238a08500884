"""The addresses the BPF programs leave to the host stack whatever the maps say: the
Python mirror, for `inspect explain`, of ipv4_source_for_stack() in bpf/lib/eth_ipv4.h
and of the address checks of ipv6_for_stack() in bpf/lib/eth_ipv6.h."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Literal

from libcni.types import IPAddress


@dataclass(frozen=True)
class Rule:
    """Packets whose `field` address lies in `network` go to the stack."""

    field: Literal["source", "destination"]
    network: IPv4Network | IPv6Network
    what: str

    def address(self, src: IPAddress, dst: IPAddress) -> IPAddress:
        return src if self.field == "source" else dst

    def describe(self, src: IPAddress, dst: IPAddress) -> str:
        return f"{self.field} {self.address(src, dst)} is {self.what} ({self.network})"


def _rule(field: Literal["source", "destination"], cidr: str, what: str) -> Rule:
    return Rule(field, ip_network(cidr), what)


# In the order the C checks them; keep the two in step (the C comments say why each
# address belongs to the stack). Not mirrored, because explain's crafted frame never
# meets them: TTL or hop limit 1, ICMPv6 ND and MLD, hop-by-hop options.
RULES: tuple[Rule, ...] = (
    # ipv4_source_for_stack(): martian sources, dropped by ip_route_input_slow().
    _rule("source", "0.0.0.0/8", "a martian source: this network"),
    _rule("source", "127.0.0.0/8", "a martian source: loopback"),
    _rule("source", "224.0.0.0/4", "a martian source: multicast"),
    _rule("source", "240.0.0.0/4", "a martian source: reserved or broadcast"),
    # ipv6_for_stack(): destinations first, then ipv6_source_for_stack().
    _rule("destination", "fe80::/10", "link-local"),
    _rule("destination", "ff00::/8", "multicast"),
    _rule("source", "fe80::/10", "link-local"),
    _rule("source", "::/128", "unspecified"),
    _rule("source", "::1/128", "a martian source: loopback"),
    _rule("source", "ff00::/8", "a martian source: multicast"),
)


def rule_for(src: IPAddress, dst: IPAddress) -> Rule | None:
    """The first rule that leaves a packet src -> dst to the stack, if any."""
    for rule in RULES:
        # `in` is False across families: IPv4 rules never match IPv6 and back.
        if rule.address(src, dst) in rule.network:
            return rule
    return None
