"""mycni-ipam: a host-local-compatible IPAM plugin keeping its leases in SQLite.

Why SQLite in WAL mode: host-local writes one file per address, and a crash or a full
disk between create and write leaves a zero-byte or half-written lease behind. Here an
ADD or DEL is one transaction: SQLite appends the new pages to the write-ahead log and
marks the commit in the last frame, so a SIGKILL or ENOSPC at any point leaves either
the whole transaction or none of it, and the next opener ignores a torn tail. Writers
serialize on BEGIN IMMEDIATE, an fcntl lock that the kernel drops when the holder
dies, so a killed plugin never leaves the store locked; others wait at most
`lockTimeout` seconds, then get code 11.

Why synchronous=FULL rather than NORMAL: in WAL mode NORMAL survives a killed process
(the log is in the page cache) but not a power loss or kernel crash, which can roll
back the last commits. An address handed to a pod and then forgotten can be handed
out twice; with `reclaimAfterReboot: false` such leases outlive the reboot. FULL costs
one fsync of the log per ADD or DEL, a millisecond or two next to the tens of
milliseconds of starting the process, so every committed lease is on disk before the
runtime sees the result.
"""
