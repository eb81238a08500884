/* SPDX-License-Identifier: GPL-2.0 */
/* The tables of pods on this node, one per address family, written by the plugin. */
#pragma once

#include <linux/bpf.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>

/*
 * A pod reachable through a veth on this node. 16 bytes, no padding: the plugin
 * writes it as struct.pack("=I6s6s") (ifindex in host byte order, MACs as on the
 * wire), so a change here must change plugins/ebpf-redirect/maps.py too.
 */
struct endpoint {
	__u32 ifindex;	   /* host-side veth; bpf_redirect_peer() reaches its peer */
	__u8 pod_mac[6];   /* destination MAC: the pod's eth0 */
	__u8 host_mac[6];  /* source MAC: the host-side veth, the pod's gateway */
};

/*
 * mycni_ep4 key: IPv4 address in network byte order. 16384 pods per node is far
 * above the ~110-250 a node usually runs; a hash of that size costs about 1 MiB
 * of kernel memory (key 4 + value 16 + per-element overhead), allocated on
 * demand. When it is full the kernel refuses a new key with E2BIG and ADD fails
 * naming the map. Tests build with a tiny -DMYCNI_EP4_MAX_ENTRIES to reach that
 * quickly. Not pinned by libbpf: the plugin pins it under its own pin root.
 */
#ifndef MYCNI_EP4_MAX_ENTRIES
#define MYCNI_EP4_MAX_ENTRIES 16384
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MYCNI_EP4_MAX_ENTRIES);
	__type(key, __u32);
	__type(value, struct endpoint);
} mycni_ep4 SEC(".maps");

/*
 * mycni_ep6 key: the 16 bytes of an IPv6 address as on the wire; the same
 * endpoints as mycni_ep4 (a dual-stack pod has an entry in each). Sized like
 * mycni_ep4: about 1.2 MiB when full (key 16 + value 16 + overhead).
 */
#ifndef MYCNI_EP6_MAX_ENTRIES
#define MYCNI_EP6_MAX_ENTRIES 16384
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MYCNI_EP6_MAX_ENTRIES);
	__type(key, struct in6_addr);
	__type(value, struct endpoint);
} mycni_ep6 SEC(".maps");

static __always_inline struct endpoint *lookup_endpoint4(__u32 daddr)
{
	return bpf_map_lookup_elem(&mycni_ep4, &daddr);
}

static __always_inline struct endpoint *lookup_endpoint6(const struct in6_addr *daddr)
{
	struct in6_addr key = *daddr; /* on the stack, like lookup_endpoint4's key */

	return bpf_map_lookup_elem(&mycni_ep6, &key);
}
