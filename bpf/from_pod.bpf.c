// SPDX-License-Identifier: GPL-2.0
/*
 * Attached to the ingress of each host-side pod veth (tc clsact, direct action).
 * A frame from a pod to another pod on this node goes straight to the
 * destination's veth peer with bpf_redirect_peer(), skipping the host stack and
 * the backlog queue; everything else continues to the host stack unchanged.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/endpoint.h"
#include "lib/eth_ipv4.h"
#include "lib/stats.h"

/*
 * Rewrite the frame as the router (the host) would and hand it to the pod.
 * bpf_redirect_peer() (kernel 5.10) switches netns without a backlog round
 * trip; from 6.15 it also sets PACKET_HOST. A frame from a pod's veth already
 * has PACKET_HOST, so older kernels need no fix-up here either.
 */
static __always_inline int redirect_to_pod(struct __sk_buff *skb, struct iphdr *iph,
					   const struct endpoint *ep)
{
	int reason;

	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	/* h_dest and h_source are adjacent, and so are pod_mac and host_mac. */
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 2 * ETH_ALEN, 0) < 0)
		return -STAT_DROP_STORE;
	count(STAT_REDIRECTED);
	return bpf_redirect_peer(ep->ifindex, 0);
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
	ep = lookup_endpoint(iph->daddr);
	if (!ep)
		goto pass;	/* not a local pod: the stack routes it */
	/* The stack must see TTL 1 to send ICMP time exceeded (RFC 1812 5.3.1). */
	if (iph->ttl <= 1)
		goto pass;
	reason = redirect_to_pod(skb, iph, ep);
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
