// SPDX-License-Identifier: GPL-2.0
/*
 * Attached to the ingress of the node's VXLAN device (tc clsact, direct action),
 * where frames from other nodes arrive already decapsulated. An IPv4 or IPv6
 * frame for a pod on this node goes straight to the pod's veth peer with
 * bpf_redirect_peer(), skipping the host's IP stack; everything else continues
 * to the stack, which also drops martian sources (loopback, multicast, ...) that
 * a redirect would carry into the pod.
 */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/deliver.h"
#include "lib/endpoint.h"
#include "lib/eth_ipv4.h"
#include "lib/eth_ipv6.h"
#include "lib/stats.h"

/*
 * The pod's IP layer drops anything but PACKET_HOST (ip_rcv_core, ipv6_rcv). The
 * VXLAN device sets the type from the inner destination MAC (eth_type_trans),
 * which need not be its own, and bpf_redirect_peer() keeps it: only from kernel
 * 6.15 (commit c4327229948879814229b46aa26a750718888503, "bpf: Scrub packet on
 * bpf_redirect_peer") does the kernel reset it to PACKET_HOST. Do it here so
 * that older kernels deliver too; on 6.15+ it is a harmless no-op.
 */
static __always_inline int set_packet_host(struct __sk_buff *skb)
{
	if (skb->pkt_type == PACKET_HOST)
		return 0;
	if (bpf_skb_change_type(skb, PACKET_HOST) < 0)
		return -STAT_DROP_PKT_TYPE;
	count(STAT_PKT_TYPE_FIXED);
	return 0;
}

/* Each returns the verdict, 0 to leave the frame to the stack, or -STAT_DROP_*. */

static __always_inline int from_overlay_ipv4(struct __sk_buff *skb, struct iphdr *iph)
{
	struct endpoint *ep;
	int reason;

	if (iph->ttl <= 1)
		return 0;	/* the stack sends ICMP time exceeded */
	/* A martian source: the stack's ip_route_input_slow() drops it. */
	if (ipv4_source_for_stack(iph->saddr))
		return 0;
	ep = lookup_endpoint4(iph->daddr);
	if (!ep)
		return 0;	/* the node itself, or no longer a pod here */
	reason = set_packet_host(skb);
	if (reason < 0)
		return reason;
	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	reason = set_pod_macs(skb, ep);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED_OVERLAY_IN);
	return redirect_to_pod(ep);
}

static __always_inline int from_overlay_ipv6(struct __sk_buff *skb, struct ipv6hdr *ip6h)
{
	struct endpoint *ep;
	int reason;

	if (ip6h->hop_limit <= 1)
		return 0;	/* the stack sends ICMPv6 time exceeded */
	/*
	 * Neighbour discovery between VTEPs, link-local and multicast: the host's; so
	 * are martian sources, which the stack drops (ip6_rcv_core, ip6_forward).
	 */
	if (ipv6_for_stack(skb, ip6h))
		return 0;
	ep = lookup_endpoint6(&ip6h->daddr);
	if (!ep)
		return 0;
	reason = set_packet_host(skb);
	if (reason < 0)
		return reason;
	reason = decrement_hop_limit(skb, ip6h);
	if (reason < 0)
		return reason;
	reason = set_pod_macs(skb, ep);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED_OVERLAY_IN);
	count(STAT_REDIRECTED_OVERLAY_IN_V6);
	return redirect_to_pod(ep);
}

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct ipv6hdr *ip6h = NULL;
	struct iphdr *iph = NULL;
	int reason;

	reason = parse_ipv4(skb, &iph);
	if (reason < 0)
		goto drop;
	if (reason > 0 && iph) {
		reason = from_overlay_ipv4(skb, iph);
	} else {
		reason = parse_ipv6(skb, &ip6h);
		if (reason < 0)
			goto drop;
		if (reason == 0 || !ip6h)
			goto pass;	/* neither IPv4 nor IPv6 */
		reason = from_overlay_ipv6(skb, ip6h);
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
	count(STAT_PASSED);
	return TC_ACT_UNSPEC;	/* not TC_ACT_OK: see from_pod.bpf.c */
drop:
	count(-reason);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
