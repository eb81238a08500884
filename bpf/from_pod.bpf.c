// SPDX-License-Identifier: GPL-2.0
/*
 * Attached to the ingress of each host-side pod veth (tc clsact, direct action).
 * A frame to another pod on this node goes straight to the destination's veth
 * peer with bpf_redirect_peer(); a frame the FIB routes into one of our VXLAN
 * devices goes there with bpf_redirect_neigh(). Both skip the host's IP stack,
 * for IPv4 and IPv6 alike. Everything else (the node itself, the underlay, the
 * outside world, other protocols, TTL or hop limit 1, IPv6 neighbour discovery,
 * link-local and multicast, martian sources) continues to the host stack
 * unchanged.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/deliver.h"
#include "lib/endpoint.h"
#include "lib/eth_ipv4.h"
#include "lib/eth_ipv6.h"
#include "lib/overlay.h"
#include "lib/stats.h"

/*
 * Each handler below returns the verdict, 0 to leave the frame to the stack, or a
 * negative STAT_DROP_* reason. The netfilter FORWARD hooks are skipped on every
 * redirect.
 */

static __always_inline int ipv4_to_overlay(struct __sk_buff *skb, struct iphdr *iph)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	int reason;

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	if (!fib_to_overlay(skb, &fib, &nh))
		return 0;
	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED_NEIGH);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

static __always_inline int from_pod_ipv4(struct __sk_buff *skb, struct iphdr *iph)
{
	struct endpoint *ep;
	int reason;

	/* The stack must see TTL 1 to send ICMP time exceeded (RFC 1812 5.3.1). */
	if (iph->ttl <= 1)
		return 0;
	/* A martian source (a pod can forge one): ip_route_input_slow() drops it. */
	if (ipv4_source_for_stack(iph->saddr))
		return 0;
	ep = lookup_endpoint4(iph->daddr);
	if (!ep)
		return ipv4_to_overlay(skb, iph);
	/* A frame from a pod's veth already has PACKET_HOST: no fix-up. */
	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	reason = set_pod_macs(skb, ep);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED);
	return redirect_to_pod(ep);
}

static __always_inline int ipv6_to_overlay(struct __sk_buff *skb, struct ipv6hdr *ip6h)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	int reason;

	fib.family = AF_INET6;
	/* Traffic class and flow label, as ip6_route_input builds its flow key. */
	fib.flowinfo = *(__be32 *)ip6h & bpf_htonl(0x0fffffff);
	fib.l4_protocol = ip6h->nexthdr;
	__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));
	if (!fib_to_overlay(skb, &fib, &nh))
		return 0;
	reason = decrement_hop_limit(skb, ip6h);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED_NEIGH);
	count(STAT_REDIRECTED_NEIGH_V6);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

static __always_inline int from_pod_ipv6(struct __sk_buff *skb, struct ipv6hdr *ip6h)
{
	struct endpoint *ep;
	int reason;

	/* The stack sends ICMPv6 time exceeded (RFC 4443 3.3) for hop limit 1. */
	if (ip6h->hop_limit <= 1)
		return 0;
	if (ipv6_for_stack(skb, ip6h))
		return 0;
	ep = lookup_endpoint6(&ip6h->daddr);
	if (!ep)
		return ipv6_to_overlay(skb, ip6h);
	reason = decrement_hop_limit(skb, ip6h);
	if (reason < 0)
		return reason;
	reason = set_pod_macs(skb, ep);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED);
	count(STAT_REDIRECTED_V6);
	return redirect_to_pod(ep);
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6h = NULL;
	struct iphdr *iph = NULL;
	int reason;

	reason = parse_ipv4(skb, &iph);
	if (reason < 0)
		goto drop;
	if (reason > 0 && iph) {
		reason = from_pod_ipv4(skb, iph);
	} else {
		reason = parse_ipv6(skb, &ip6h);
		if (reason < 0)
			goto drop;
		if (reason == 0 || !ip6h)
			goto pass;	/* neither IPv4 nor IPv6 */
		reason = from_pod_ipv6(skb, ip6h);
		if (reason == 0) {
			count(STAT_PASSED_V6);
			goto pass;
		}
	}
	if (reason == 0)
		goto pass;
	if (reason < 0)
		goto drop;
	return reason;
pass:
	/*
	 * TC_ACT_UNSPEC, not TC_ACT_OK: under tcx (kernel 6.6+) it is TCX_NEXT, so
	 * later tcx programs and the classic tc filters behind them (e.g. the
	 * reference bandwidth plugin's ingress qdisc) still see the frame, where
	 * TC_ACT_OK would end ingress processing and skip them. In clsact
	 * direct-action mode it also goes on to the next filter, then the stack.
	 */
	count(STAT_PASSED);
	return TC_ACT_UNSPEC;
drop:
	count(-reason);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
