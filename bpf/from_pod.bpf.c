// SPDX-License-Identifier: GPL-2.0
/*
 * Attached to the ingress of each host-side pod veth (tc clsact, direct action).
 * A frame to another pod on this node goes straight to the destination's veth
 * peer with bpf_redirect_peer(); a frame the FIB routes into one of our VXLAN
 * devices goes there with bpf_redirect_neigh(). Both skip the host's IP stack.
 * Everything else (the node itself, the underlay, the outside world, non-IPv4,
 * TTL 1) continues to the host stack unchanged.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/deliver.h"
#include "lib/endpoint.h"
#include "lib/eth_ipv4.h"
#include "lib/overlay.h"
#include "lib/stats.h"

#define AF_INET 2

/*
 * Send to another node through the VXLAN device the FIB picks. Returns the
 * verdict, 0 to leave the frame to the stack, or a negative STAT_DROP_* reason.
 *
 * tot_len 0 makes the kernel check the skb against the egress MTU itself, GSO
 * included (bpf_skb_fib_lookup, net/core/filter.c); a frame that does not fit
 * goes to the stack, which fragments it or sends ICMP "fragmentation needed".
 * bpf_redirect_neigh() (kernel 5.10) fills in the Ethernet header from the
 * neighbour table for the gateway (the remote VTEP, a permanent entry made by
 * the vxlan plugin), so NO_NEIGH is as good as SUCCESS here. The netfilter
 * FORWARD hooks are skipped on this path, as on every redirect.
 */
static __always_inline int redirect_to_overlay(struct __sk_buff *skb, struct iphdr *iph)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	int reason;
	long rc;

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	fib.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	if (!is_overlay(fib.ifindex))
		return 0;
	/* After the lookup ipv4_dst holds the next hop: the remote VTEP. */
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;
	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	count(STAT_REDIRECTED_NEIGH);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}

SEC("tc")
int from_pod(struct __sk_buff *skb)
{
	struct iphdr *iph = NULL;
	struct endpoint *ep;
	int reason;

	reason = parse_ipv4(skb, &iph);
	if (reason < 0)
		goto drop;
	if (reason == 0 || !iph)
		goto pass;	/* not IPv4 */
	/* The stack must see TTL 1 to send ICMP time exceeded (RFC 1812 5.3.1). */
	if (iph->ttl <= 1)
		goto pass;
	ep = lookup_endpoint(iph->daddr);
	if (ep) {
		/* A frame from a pod's veth already has PACKET_HOST: no fix-up. */
		reason = redirect_to_pod(skb, iph, ep, STAT_REDIRECTED);
	} else {
		reason = redirect_to_overlay(skb, iph);
		if (reason == 0)
			goto pass;	/* not for the overlay: the stack routes it */
	}
	if (reason < 0)
		goto drop;
	return reason;
pass:
	count(STAT_PASSED);
	return TC_ACT_OK;
drop:
	count(-reason);
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
