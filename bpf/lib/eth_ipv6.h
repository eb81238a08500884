/* SPDX-License-Identifier: GPL-2.0 */
/* Bounds-checked Ethernet + IPv6 parsing, what must stay with the stack, hop limit. */
#pragma once

#include <linux/bpf.h>
#include <linux/icmpv6.h>
#include <linux/if_ether.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <stddef.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "stats.h"

#define IP6_HOPLIMIT_OFF (ETH_HLEN + offsetof(struct ipv6hdr, hop_limit))
#define IP6_NEXTHDR_HOP 0 /* hop-by-hop options header (NEXTHDR_HOP, net/ipv6.h) */

/* Router and neighbour discovery types (RFC 4861 4); the kernel's are not uapi. */
#define ND_ROUTER_SOLICIT 133
#define ND_ROUTER_ADVERT 134
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_REDIRECT 137

/*
 * Find the IPv6 header. Returns 1 with *ip6h set for IPv6, 0 for any other
 * protocol, or a negative STAT_DROP_* reason. As parse_ipv4(): the pull makes
 * the headers directly readable and invalidates packet pointers. It asks for the
 * first 4 bytes after the header too (an ICMPv6 type, see ipv6_for_stack()); the
 * pull fails harmlessly on a shorter frame and the checks below decide.
 */
static __always_inline int parse_ipv6(struct __sk_buff *skb, struct ipv6hdr **ip6h)
{
	const __u32 need = ETH_HLEN + sizeof(struct ipv6hdr) + 4;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth;
	struct ipv6hdr *ip;

	if (data + need > data_end) {
		bpf_skb_pull_data(skb, need);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -STAT_DROP_TRUNCATED;
	if (eth->h_proto != bpf_htons(ETH_P_IPV6))
		return 0;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return -STAT_DROP_TRUNCATED;
	*ip6h = ip;
	return 1;
}

/* fe80::/10: link-local, never forwarded by a router (RFC 4291 2.5.6). */
static __always_inline int ipv6_is_link_local(const struct in6_addr *addr)
{
	return addr->in6_u.u6_addr8[0] == 0xfe && (addr->in6_u.u6_addr8[1] & 0xc0) == 0x80;
}

/* ff00::/8: multicast, including every solicited-node address of ND. */
static __always_inline int ipv6_is_multicast(const struct in6_addr *addr)
{
	return addr->in6_u.u6_addr8[0] == 0xff;
}

/* :: is the source of duplicate address detection (RFC 4862 5.4.2). */
static __always_inline int ipv6_is_unspecified(const struct in6_addr *addr)
{
	return !(addr->in6_u.u6_addr32[0] | addr->in6_u.u6_addr32[1] |
		 addr->in6_u.u6_addr32[2] | addr->in6_u.u6_addr32[3]);
}

/* ::1 must never leave a node (RFC 4291 2.5.3). */
static __always_inline int ipv6_is_loopback(const struct in6_addr *addr)
{
	return !(addr->in6_u.u6_addr32[0] | addr->in6_u.u6_addr32[1] |
		 addr->in6_u.u6_addr32[2]) &&
	       addr->in6_u.u6_addr32[3] == bpf_htonl(1);
}

/*
 * Sources the host stack must see rather than a pod, which bpf_redirect_peer()
 * would hand the packet to unchecked:
 * - link-local: not forwardable (RFC 4291 2.5.6), the stack answers "beyond
 *   scope of source address";
 * - unspecified: the source of duplicate address detection, never forwarded
 *   (RFC 4291 2.5.2);
 * - loopback and multicast: martians. ip6_rcv_core() drops a multicast source
 *   (RFC 4291 2.7) and ip6_forward() any unspecified, multicast or loopback one.
 * Mirrored for `inspect explain` in plugins/ebpf-redirect/stack_rules.py.
 */
static __always_inline int ipv6_source_for_stack(const struct in6_addr *saddr)
{
	return ipv6_is_link_local(saddr) || ipv6_is_unspecified(saddr) ||
	       ipv6_is_loopback(saddr) || ipv6_is_multicast(saddr);
}

/*
 * Whether an IPv6 packet belongs to the host stack rather than the fast path:
 * - a link-local or multicast destination (not forwardable; neighbour
 *   solicitations go to solicited-node multicast), or a source of
 *   ipv6_source_for_stack();
 * - ICMPv6 router/neighbour discovery (types 133-137) even to a unicast address:
 *   unicast NUD probes and their advertisements must reach the host, and the
 *   receiver of any ND message drops it unless its hop limit is still 255
 *   (RFC 4861 7.1.1), which forwarding would decrement;
 * - MLD (130-132, 143), which is multicast anyway but is checked for clarity;
 * - a hop-by-hop options header, which every router on the path must process
 *   (RFC 8200 4.3; e.g. the router alert option of MLD).
 * An ICMPv6 packet too short to show its type is left to the stack as well.
 */
static __always_inline int ipv6_for_stack(struct __sk_buff *skb, const struct ipv6hdr *ip6h)
{
	void *data_end = (void *)(long)skb->data_end;
	const struct icmp6hdr *icmp;
	__u8 type;

	if (ipv6_is_link_local(&ip6h->daddr) || ipv6_is_multicast(&ip6h->daddr))
		return 1;
	if (ipv6_source_for_stack(&ip6h->saddr))
		return 1;
	if (ip6h->nexthdr == IP6_NEXTHDR_HOP)
		return 1;
	if (ip6h->nexthdr != IPPROTO_ICMPV6)
		return 0;
	icmp = (const void *)(ip6h + 1);
	if ((const void *)&icmp->icmp6_code > data_end)
		return 1;
	type = icmp->icmp6_type;
	switch (type) {
	case ICMPV6_MGM_QUERY:
	case ICMPV6_MGM_REPORT:
	case ICMPV6_MGM_REDUCTION:
	case ICMPV6_MLD2_REPORT:
	case ND_ROUTER_SOLICIT:
	case ND_ROUTER_ADVERT:
	case ND_NEIGHBOR_SOLICIT:
	case ND_NEIGHBOR_ADVERT:
	case ND_REDIRECT:
		return 1;
	}
	return 0;
}

/*
 * Forward one hop: hop limit - 1. IPv6 has no header checksum, and the
 * pseudo-header of TCP/UDP/ICMPv6 does not include the hop limit (RFC 8200 8.1),
 * so nothing else changes. Packet pointers are invalid after this.
 */
static __always_inline int decrement_hop_limit(struct __sk_buff *skb, struct ipv6hdr *ip6h)
{
	__u8 hop_limit = ip6h->hop_limit - 1;

	if (bpf_skb_store_bytes(skb, IP6_HOPLIMIT_OFF, &hop_limit, sizeof(hop_limit), 0) < 0)
		return -STAT_DROP_STORE;
	return 0;
}
