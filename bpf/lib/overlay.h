/* SPDX-License-Identifier: GPL-2.0 */
/* The VXLAN devices of this node that the fast path may send into, by ifindex. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10

/*
 * Key: ifindex of a VXLAN device the plugin attached from_overlay to; value:
 * unused flags, 0. The FIB picks the egress device; only these are taken with
 * bpf_redirect_neigh, so traffic to the underlay or anything else keeps the
 * stack. 64 overlays per node is far more than one per network needs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} mycni_ovl SEC(".maps");

static __always_inline int is_overlay(__u32 ifindex)
{
	return bpf_map_lookup_elem(&mycni_ovl, &ifindex) != NULL;
}

/*
 * Look up `fib` (filled in by the caller for its family) and, when the route
 * ends in one of our VXLAN devices, fill `nh` with its next hop. Returns 1 for
 * the overlay, 0 to leave the frame to the stack.
 *
 * tot_len 0 makes the kernel check the skb against the egress MTU itself, GSO
 * included (bpf_skb_fib_lookup, net/core/filter.c); a frame that does not fit
 * goes to the stack, which fragments it or sends ICMP "fragmentation needed" /
 * ICMPv6 "packet too big". bpf_redirect_neigh() (kernel 5.10) fills in the
 * Ethernet header from the neighbour table for the gateway (the remote VTEP, a
 * permanent entry made by the vxlan plugin), so NO_NEIGH is taken as well. The
 * kernel checks the MTU for a SUCCESS result only; with the permanent VTEP entry
 * that is the result every lookup gets. Not handled yet: a NO_NEIGH result (a
 * next hop without a neighbour entry) is redirected without the MTU check.
 *
 * The next hop's family is the one the FIB returns, not the packet's: an IPv4
 * route may have an IPv6 gateway (RFC 5549), and then the kernel sets
 * fib->family to AF_INET6 and puts the gateway in ipv6_dst (bpf_ipv4_fib_lookup).
 * Without a gateway (an on-link route) the *_dst field keeps the destination.
 */
static __always_inline int fib_to_overlay(struct __sk_buff *skb, struct bpf_fib_lookup *fib,
					  struct bpf_redir_neigh *nh)
{
	long rc;

	fib->ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	if (!is_overlay(fib->ifindex))
		return 0;
	nh->nh_family = fib->family;
	if (fib->family == AF_INET6)
		__builtin_memcpy(nh->ipv6_nh, fib->ipv6_dst, sizeof(nh->ipv6_nh));
	else
		nh->ipv4_nh = fib->ipv4_dst;
	return 1;
}
