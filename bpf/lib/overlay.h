/* SPDX-License-Identifier: GPL-2.0 */
/* The VXLAN devices of this node that the fast path may send into, by ifindex. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
