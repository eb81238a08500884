/* SPDX-License-Identifier: GPL-2.0 */
/* Handing a frame to a pod on this node: the router's MAC rewrite, then the veth peer. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

#include "endpoint.h"
#include "stats.h"

/*
 * Address the frame from the pod's gateway to the pod, as the host would. The
 * caller has already done the L3 part (TTL or hop limit). Returns 0 or a
 * negative STAT_DROP_* reason.
 */
static __always_inline int set_pod_macs(struct __sk_buff *skb, const struct endpoint *ep)
{
	/* h_dest and h_source are adjacent, and so are pod_mac and host_mac. */
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 2 * ETH_ALEN, 0) < 0)
		return -STAT_DROP_STORE;
	return 0;
}

/*
 * bpf_redirect_peer() (kernel 5.10) switches netns to the veth's peer without a
 * backlog round trip. Returns TC_ACT_REDIRECT (flags 0 cannot fail here).
 */
static __always_inline int redirect_to_pod(const struct endpoint *ep)
{
	return bpf_redirect_peer(ep->ifindex, 0);
}
