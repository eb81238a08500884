"""A CNI conformance runner: drives any CNI plugin executable directly, the way a
runtime does (CNI_* variables, the network config on stdin), in throwaway network
namespaces, and prints one table row per case.

    python -m tests.conformance --plugin PATH --config TEMPLATE.json [options]
    python -m tests.conformance --profile vxlan        # profiles/vxlan.json

Options: --profile NAME|FILE (profiles/<NAME>.json; --plugin and --config override
its values), --cni-path DIR[:DIR] (searched before the profile's and the plugin's own
directory), --expect-fail CASE,... (rows known to fail: shown as XFAIL, not hidden),
--prefix NAME (namespaces and state are named NAME-...), --state-root DIR (where the
per-run state directory is made; the system temp dir by default), -v (print the full
output behind XFAIL rows as well as behind FAIL rows).

The plugin runs in a "node" namespace (`nsenter --net=`) whose only link besides lo
is a veth `underlay` holding 192.168.77.1/24 and the default route; each case gets
its own pod namespace. In the config template `${STATE}` is a per-run directory (for
dataDir, stateDir, ...) and `${BPFFS}` a bpffs the runner mounts under it. Everything
is removed afterwards, also on failure, Ctrl-C or SIGTERM. The root network namespace
is never touched.

Cases, for cniVersion 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0 (`VERB@VERSION`):
VERSION lists the version; ADD answers a result of that version's shape (0.3.x and
0.4.0 IPs carry "version", 1.x IPs do not); CHECK fails with code 1 before 0.4.0;
STATUS and GC fail with code 1 (or 4, an unknown verb) before 1.1.0 and succeed at
1.1.0; DEL succeeds. `GC-releases@1.1.0`: after GC with cni.dev/valid-attachments
naming one of two attachments, CHECK passes for it and fails for the other. DEL in
every shape: an unknown container, CNI_NETNS empty, unset, a deleted namespace or a
path that is not a namespace, no prevResult, a second and a third DEL; each exits 0.
The bad-input corpus, each an ADD that must fail with exactly one JSON error object
on stdout: malformed JSON (6), a wrong type in the profile's `wrongType` field (7),
no type or name (7), an illegal name (7), an unknown cniVersion (1), stdin over 1 MiB
(6 or 7), container IDs `../../etc/passwd`, 300 characters or non-ASCII (4), ifnames
of 16 characters, `eth/0` or `..` (4), an empty CNI_PATH (4), an unknown CNI_COMMAND
(4). Last, `leftover-node-links` (no new link in the node namespace but the profile's
`sharedLinks`) and `leftover-state` (no file under ${STATE} but `stateAllow` globs, no
row returned by the profile's SQLite `probes`, no entry in its pinned `emptyMaps`).

A profile (profiles/*.json) names the plugin (relative to the repository), its config
template (relative to the profile), `cniPath`, `version` (for the DEL shapes and the
corpus, default 1.0.0), `wrongType` ({"path": "a.b", "value": ...}), `chain` ({"plugin",
"config"}: a plugin run first, whose ADD result becomes the prevResult), the leftover
allowances above, and `expectFail` ({"CASE": "why"}).

Exit status: 0 when every row passes or fails as expected (an expected failure that
passes, XPASS, counts as unexpected: the profile is stale); 1 otherwise; 2 when the
run could not start (not root, bad profile or template).
"""
