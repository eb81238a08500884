// SPDX-License-Identifier: GPL-2.0
/*
 * Attached to the ingress of the node's VXLAN device (tc clsact, direct action),
 * where frames from other nodes arrive already decapsulated. A frame for a pod
 * on this node goes straight to the pod's veth peer with bpf_redirect_peer(),
 * skipping the host's IP stack; everything else continues to the stack.
 */
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "lib/deliver.h"
#include "lib/endpoint.h"
#include "lib/eth_ipv4.h"
#include "lib/stats.h"

/*
 * The pod's IP layer drops anything but PACKET_HOST (ip_rcv_core). The VXLAN
 * device sets the type from the inner destination MAC (eth_type_trans), which
 * need not be its own, and bpf_redirect_peer() keeps it: only from kernel 6.15
 * (commit c4327229948879814229b46aa26a750718888503, "bpf: Scrub packet on
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

SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct iphdr *iph = NULL;
	struct endpoint *ep;
	int reason;

	reason = parse_ipv4(skb, &iph);
	if (reason < 0)
		goto drop;
	if (reason == 0 || !iph)
		goto pass;	/* not IPv4 */
	if (iph->ttl <= 1)
		goto pass;	/* the stack sends ICMP time exceeded */
	ep = lookup_endpoint(iph->daddr);
	if (!ep)
		goto pass;	/* the node itself, or no longer a pod here */
	reason = set_packet_host(skb);
	if (reason < 0)
		goto drop;
	reason = redirect_to_pod(skb, iph, ep, STAT_REDIRECTED_OVERLAY_IN);
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
