/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU counters of what the fast path did with each frame, by path and reason. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/*
 * Counter indexes. Drop reasons are negative in the helpers (-STAT_DROP_*) and
 * positive here. The Python side mirrors this enum in
 * plugins/ebpf-redirect/counters.py; tests/unit/test_ebpf_counters.py parses this
 * file and fails when the two disagree, so append, never renumber.
 *
 * The path counters (REDIRECTED, PASSED, REDIRECTED_OVERLAY_IN, REDIRECTED_NEIGH)
 * count frames of both families; each *_V6 counter counts the IPv6 frames among
 * them, so the IPv4 share is the difference.
 */
enum mycni_stat {
	STAT_REDIRECTED = 0,	      /* pod to pod on this node: bpf_redirect_peer */
	STAT_PASSED = 1,	      /* left to the host stack */
	STAT_DROP_TRUNCATED = 2,      /* shorter than its Ethernet, IPv4 or IPv6 header */
	STAT_DROP_BAD_IHL = 3,	      /* IPv4 header length below 20 bytes */
	STAT_DROP_CSUM = 4,	      /* bpf_l3_csum_replace failed */
	STAT_DROP_STORE = 5,	      /* bpf_skb_store_bytes failed */
	STAT_REDIRECTED_OVERLAY_IN = 6, /* VXLAN device to a local pod: redirect_peer */
	STAT_REDIRECTED_NEIGH = 7,    /* pod to another node: redirect_neigh into VXLAN */
	STAT_PKT_TYPE_FIXED = 8,      /* overlay frame set to PACKET_HOST before redirect */
	STAT_DROP_PKT_TYPE = 9,	      /* bpf_skb_change_type failed */
	STAT_REDIRECTED_V6 = 10,      /* of STAT_REDIRECTED: IPv6 */
	STAT_PASSED_V6 = 11,	      /* of STAT_PASSED: IPv6 */
	STAT_REDIRECTED_OVERLAY_IN_V6 = 12, /* of STAT_REDIRECTED_OVERLAY_IN: IPv6 */
	STAT_REDIRECTED_NEIGH_V6 = 13, /* of STAT_REDIRECTED_NEIGH: IPv6 */
	STAT_MAX,
};

/*
 * One u64 per counter and CPU: STAT_MAX * 8 bytes * nr_cpus. Per-CPU so that
 * counting never needs an atomic on the fast path; readers sum the CPUs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mycni_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *value;

	value = bpf_map_lookup_elem(&mycni_stats, &stat);
	if (value)
		*value += 1;
}
