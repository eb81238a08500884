/* SPDX-License-Identifier: GPL-2.0 */
/* Bounds-checked Ethernet + IPv4 parsing, martian sources, and the L3 rewrite on redirect. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "stats.h"

#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

/*
 * Find the IPv4 header. Returns 1 with *iph set for IPv4, 0 for any other
 * protocol, or a negative STAT_DROP_* reason. The headers may sit partly in
 * non-linear data (GSO, GRO); bpf_skb_pull_data() makes them directly readable,
 * and invalidates packet pointers, so data/data_end are read again after it.
 */
static __always_inline int parse_ipv4(struct __sk_buff *skb, struct iphdr **iph)
{
	const __u32 need = ETH_HLEN + sizeof(struct iphdr);
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth;
	struct iphdr *ip;

	if (data + need > data_end) {
		/*
		 * Fails, harmlessly, when the whole frame is shorter than need: the
		 * checks below then tell a short non-IPv4 frame (passed) from a
		 * truncated IPv4 one (dropped).
		 */
		bpf_skb_pull_data(skb, need);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -STAT_DROP_TRUNCATED;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -STAT_DROP_TRUNCATED;
	if (ip->ihl < 5)
		return -STAT_DROP_BAD_IHL;
	*iph = ip;
	return 1;
}

/*
 * Whether an IPv4 source is martian, so the packet must go through the host stack
 * rather than into a pod with bpf_redirect_peer(), which would skip the stack's
 * checks. ip_route_input_slow() drops, as "martian source", 0.0.0.0/8 ("this
 * network", RFC 1122 3.2.1.3), 127.0.0.0/8 unless route_localnet is set,
 * multicast 224.0.0.0/4 and the limited broadcast 255.255.255.255. The rest of
 * 240.0.0.0/4 is reserved (RFC 1112 4, RFC 6890) and never a pod's address;
 * Linux routes it as unicast, so for it the stack's rp_filter and netfilter
 * decide. Mirrored for `inspect explain` in plugins/ebpf-redirect/stack_rules.py.
 */
static __always_inline int ipv4_source_for_stack(__be32 saddr)
{
	__u8 first = bpf_ntohl(saddr) >> 24;

	if (first == 0 || first == 127)
		return 1;	/* this network, loopback */
	return first >= 224;	/* multicast 224/4; reserved 240/4 and broadcast */
}

/*
 * Forward one hop: TTL - 1 with an incremental checksum update (RFC 1624). TTL
 * and protocol share a 16-bit word, so the word is what the checksum sees.
 * Packet pointers are invalid after this (the helpers may reallocate).
 */
static __always_inline int decrement_ttl(struct __sk_buff *skb, struct iphdr *iph)
{
	__u16 old_word = *(__u16 *)&iph->ttl;
	__u8 ttl = iph->ttl - 1;
	__u16 new_word;

	new_word = old_word;
	*(__u8 *)&new_word = ttl;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_word, new_word, sizeof(__u16)) < 0)
		return -STAT_DROP_CSUM;
	if (bpf_skb_store_bytes(skb, IP_TTL_OFF, &ttl, sizeof(ttl), 0) < 0)
		return -STAT_DROP_STORE;
	return 0;
}
