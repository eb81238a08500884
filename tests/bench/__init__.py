"""`make bench`: the datapath and the control plane of mycni measured next to the
reference plugins (bridge + host-local, a flannel-style VXLAN device) and two limits
(a direct veth pair, native routing), in one run, on throwaway namespaces.

    python -m tests.bench [--reps 3] [--pods 50] [--out build/bench/DATE]

Parts: `datapath` (iperf3, sockperf, TCP connections per second, bare and with
kube-proxy-like iptables rules), `control` (chain ADD/DEL latency through libcni,
serial and a concurrent burst, peak RSS, where one ADD's time goes) and `ipam`
(exec ADD latency of mycni-ipam and host-local against the lease count). Results,
every sample included, go to one directory as JSON, a Markdown table and PNG plots.
"""
