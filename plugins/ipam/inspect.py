"""`mycni-ipam inspect`: list, release and verify the leases in a dataDir by hand.

Also `python -m mycni_ipam.inspect`. A table by default, JSON with --json; the exit
status is 0 when all went well, 1 when verify found a problem or a lease was not
found, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from libcni.errors import CniError
from libcni.types import parse_address
from mycni_ipam.config import DEFAULT_DATA_DIR
from mycni_ipam.sqlite_store import DB_NAME, SqliteStore
from mycni_ipam.store import Lease

LOCK_TIMEOUT = 10.0


def main(
    argv: Sequence[str] | None = None,
    prog: str = "python -m mycni_ipam.inspect",
    out: TextIO | None = None,
) -> int:
    out = sys.stdout if out is None else out
    args = build_parser(prog).parse_args(argv)
    data_dir = Path(args.data_dir)
    if not (data_dir / DB_NAME).exists():
        print(f"no lease store in {data_dir}", file=sys.stderr)
        return 1
    try:
        with SqliteStore(data_dir, LOCK_TIMEOUT) as store:
            code: int = args.run(store, args, out)
            return code
    except CniError as exc:
        print(exc.msg, file=sys.stderr)
        return 1
    except ValueError as exc:  # a damaged row: verify names them all
        print(f"failed to read lease store in {data_dir}: {exc}", file=sys.stderr)
        return 1


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Inspect and repair the mycni-ipam lease store."
    )
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help=f"the ipam dataDir (default {DEFAULT_DATA_DIR})",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    lister = sub.add_parser("list", help="leases per network")
    lister.add_argument("--network", help="only this network")
    lister.set_defaults(run=run_list)

    release = sub.add_parser("release", help="release one lease or one attachment")
    release.add_argument("--network", required=True)
    which = release.add_mutually_exclusive_group(required=True)
    which.add_argument("--address", help="the leased address")
    which.add_argument("--container", help="a container ID (with --ifname)")
    release.add_argument("--ifname", default="eth0", help="with --container")
    release.set_defaults(run=run_release)

    verify = sub.add_parser("verify", help="check the file and every lease row")
    verify.set_defaults(run=run_verify)

    # --json is accepted after the subcommand too, where people put it.
    for child in (lister, release, verify):
        child.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    return parser


def run_list(store: SqliteStore, args: argparse.Namespace, out: TextIO) -> int:
    with store.snapshot():
        leases = store.all_leases()
    leases = [lease for lease in leases if args.network in (None, lease.network)]
    leases.sort(key=lambda x: (x.network, x.range_set, int(x.address)))
    now = datetime.datetime.now(datetime.UTC)
    rows = [describe(lease, store.boot_id, now) for lease in leases]
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    print_table(rows, out)
    return 0


def run_release(store: SqliteStore, args: argparse.Namespace, out: TextIO) -> int:
    with store.transaction():
        if args.address is not None:
            holder = store.holder(
                args.network, parse_address(args.address, "--address")
            )
            dropped = (
                store.release(
                    holder.network, holder.container_id, holder.ifname, holder.range_set
                )
                if holder is not None
                else []
            )
        else:
            dropped = store.release(args.network, args.container, args.ifname)
    now = datetime.datetime.now(datetime.UTC)
    rows = [describe(lease, store.boot_id, now) for lease in dropped]
    if args.json:
        json.dump({"released": rows}, out, indent=2)
        out.write("\n")
    elif rows:
        out.write(f"released {len(rows)} lease(s):\n")
        print_table(rows, out)
    else:
        out.write("no such lease\n")
    return 0 if rows else 1


def run_verify(store: SqliteStore, args: argparse.Namespace, out: TextIO) -> int:
    with store.transaction():
        problems = store.verify()
        count = store.count_leases()
    if args.json:
        json.dump({"path": str(store.path), "leases": count, "problems": problems}, out)
        out.write("\n")
    else:
        out.write(f"{store.path}: {count} leases, ")
        out.write("ok\n" if not problems else f"{len(problems)} problems\n")
        out.writelines(f"  {p}\n" for p in problems)
    return 1 if problems else 0


def describe(lease: Lease, boot_id: str, now: datetime.datetime) -> dict[str, Any]:
    age: int | None = None
    with contextlib.suppress(ValueError):
        created = datetime.datetime.fromisoformat(lease.created)
        age = int((now - created).total_seconds())
    return {
        "network": lease.network,
        "rangeSet": lease.range_set,
        "address": str(lease.address),
        "containerID": lease.container_id,
        "ifname": lease.ifname,
        "created": lease.created,
        "ageSeconds": age,
        "bootID": lease.boot_id,
        "thisBoot": bool(boot_id) and lease.boot_id == boot_id,
    }


def print_table(rows: list[dict[str, Any]], out: TextIO) -> None:
    header = ("NETWORK", "ADDRESS", "CONTAINER", "IFNAME", "AGE", "BOOT")
    lines = [header]
    for row in rows:
        boot = "this" if row["thisBoot"] else f"earlier {row['bootID'][:8] or '?'}"
        lines.append(
            (
                row["network"],
                row["address"],
                row["containerID"],
                row["ifname"],
                format_age(row["ageSeconds"]),
                boot,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        cells = (c.ljust(w) for c, w in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")


def format_age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


if __name__ == "__main__":
    sys.exit(main())
