"""mycni-ipam: a host-local-compatible IPAM plugin keeping its leases in SQLite."""
