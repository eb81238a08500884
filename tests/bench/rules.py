"""kube-proxy-like iptables rules in a node namespace: a KUBE-SERVICES chain in the
nat table, hooked from PREROUTING and OUTPUT as kube-proxy does, holding one
non-matching rule per service (a ClusterIP in 10.96.0.0/12 nobody sends to), each
jumping to a KUBE-SVC chain with a DNAT to an endpoint.

Only ever applied inside namespaces the benchmark created, with iptables-restore run
under nsenter, and removed with the namespace. Nat rules are walked by the first
packet of each connection (conntrack remembers the verdict), so they cost
connections, not the packets of an established stream; a path that skips the node's
stack (bpf_redirect_peer) skips them entirely.
"""

from __future__ import annotations

import ipaddress

from tests import testbed as tb

SERVICE_RANGE = ipaddress.IPv4Network("10.96.0.0/12")
ENDPOINT_RANGE = ipaddress.IPv4Network("10.112.0.0/12")


def kube_proxy_ruleset(services: int) -> str:
    """iptables-restore input with `services` rules in KUBE-SERVICES."""
    lines = [
        "*nat",
        ":KUBE-SERVICES - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
    ]
    lines += [f":KUBE-SVC-{i:06d} - [0:0]" for i in range(services)]
    lines += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES",
        '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
        "-j KUBE-POSTROUTING",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MASQUERADE",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
    ]
    for i in range(services):
        vip = SERVICE_RANGE.network_address + 1 + i
        endpoint = ENDPOINT_RANGE.network_address + 1 + i
        lines.append(
            f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "ns/svc{i}:http '
            f'cluster IP" -m tcp --dport 80 -j KUBE-SVC-{i:06d}'
        )
        lines.append(
            f"-A KUBE-SVC-{i:06d} -p tcp -m tcp "
            f"-j DNAT --to-destination {endpoint}:8080"
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def install(node_ns: str, services: int) -> None:
    """Replace the nat table of node_ns with the kube-proxy-like rules."""
    tb.run_in(node_ns, ["iptables-restore"], input=kube_proxy_ruleset(services))


def remove(node_ns: str) -> None:
    """Back to an empty nat table in node_ns."""
    tb.run_in(node_ns, ["iptables-restore"], input="*nat\nCOMMIT\n")


def count(node_ns: str) -> int:
    """Rules in the nat table of node_ns, read back."""
    out = tb.run_in(node_ns, ["iptables-save", "-t", "nat"]).stdout
    return sum(1 for line in out.splitlines() if line.startswith("-A "))


FIXED_RULES = 6  # the hooks and the KUBE-POSTROUTING / KUBE-MARK-MASQ rules


def services_for(total_rules: int) -> int:
    """How many services make about `total_rules` rules (two per service)."""
    return max(1, (total_rules - FIXED_RULES) // 2)
