/* SPDX-License-Identifier: GPL-2.0 */
/* Handing a frame to a pod on this node: the router's rewrite, then the veth peer. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

#include "endpoint.h"
#include "eth_ipv4.h"
#include "stats.h"

/*
 * Rewrite the frame as the router (the host) would and hand it to the pod.
 * bpf_redirect_peer() (kernel 5.10) switches netns without a backlog round
 * trip. Returns the verdict or a negative STAT_DROP_* reason; counts `stat`.
 */
static __always_inline int redirect_to_pod(struct __sk_buff *skb, struct iphdr *iph,
					   const struct endpoint *ep, __u32 stat)
{
	int reason;

	reason = decrement_ttl(skb, iph);
	if (reason < 0)
		return reason;
	/* h_dest and h_source are adjacent, and so are pod_mac and host_mac. */
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 2 * ETH_ALEN, 0) < 0)
		return -STAT_DROP_STORE;
	count(stat);
	return bpf_redirect_peer(ep->ifindex, 0);
}
