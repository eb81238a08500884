"""mycni-ipam survives being killed and running out of disk: SIGKILL at named and at
random points of ADD and DEL, and ENOSPC on a small tmpfs dataDir."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libcni import skel
from mycni_ipam.plugin import PLUGIN
from mycni_ipam.sqlite_store import DB_NAME, SqliteStore
from mycni_ipam.testhook import ENV as HOOK_ENV

REPO = Path(__file__).resolve().parents[2]
# Each point is a moment of the real code path (mycni_ipam.testhook.reach calls).
ADD_POINTS = (
    "open:connected",
    "txn:begun",
    "reserve:inserted",  # after the IPv4 row, before the IPv6 one
    "txn:commit",
    "txn:committed",
)
DEL_POINTS = ("open:connected", "txn:begun", "release:deleted", "txn:commit")
COMMITTED = "txn:committed"
RANDOM_TRIALS = 24


def netconf(data_dir: Path, ver: str = "1.1.0") -> dict[str, Any]:
    return {
        "cniVersion": ver,
        "name": "mynet",
        "type": "mycni-ipam",
        "ipam": {
            "type": "mycni-ipam",
            "dataDir": str(data_dir),
            "ranges": [[{"subnet": "10.1.0.0/26"}], [{"subnet": "fd00::/120"}]],
        },
    }


def environ(command: str, cid: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": cid,
        "CNI_NETNS": "/var/run/netns/none",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
    }


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    shim = tmp_path_factory.mktemp("pythonpath")
    (shim / "mycni_ipam").symlink_to(REPO / "plugins" / "ipam")
    return os.pathsep.join([str(REPO), str(shim)])


def spawn(
    pythonpath: str, command: str, cid: str, conf: dict[str, Any], hook: str = ""
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": pythonpath, **environ(command, cid)}
    env.pop(HOOK_ENV, None)
    if hook:
        env[HOOK_ENV] = hook
    proc = subprocess.Popen(
        [sys.executable, "-m", "mycni_ipam"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    proc.stdin = None  # so that communicate() does not flush the closed pipe
    return proc


def run_in_process(command: str, cid: str, conf: dict[str, Any]) -> dict[str, Any]:
    code, out = skel.run(PLUGIN, environ(command, cid), json.dumps(conf).encode())
    assert code == 0, out
    return json.loads(out) if out else {}


def rows(data_dir: Path) -> dict[str, set[str]]:
    """container -> addresses, read straight from the file."""
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        found: dict[str, set[str]] = {}
        for cid, addr in db.execute("SELECT container_id, address FROM leases"):
            found.setdefault(cid, set()).add(addr)
        return found
    finally:
        db.close()


def verify(data_dir: Path) -> None:
    with SqliteStore(data_dir, lock_timeout=5) as store, store.transaction():
        assert store.verify() == []


def kill_at_random(proc: subprocess.Popen[bytes], rng: random.Random) -> None:
    """Wait for the store to be opened, then kill within the next 15 ms."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if line.startswith(b"hook "):
        time.sleep(rng.uniform(0, 0.015))
        proc.send_signal(signal.SIGKILL)


def test_sigkill_at_any_point_of_add_and_del(tmp_path: Path, pythonpath: str) -> None:
    data_dir = tmp_path / "ipam"
    conf = netconf(data_dir)
    rng = random.Random(1234)
    model: dict[str, set[str]] = {}

    # A store killed while it creates its schema opens cleanly next time.
    proc = spawn(pythonpath, "ADD", "first", conf, "kill@schema:created")
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert (data_dir / DB_NAME).exists()

    trials: list[tuple[str, str]] = [("ADD", f"kill@{p}") for p in ADD_POINTS] * 4
    trials += [("DEL", f"kill@{p}") for p in DEL_POINTS] * 4
    trials += [(rng.choice(["ADD", "DEL"]), "random") for _ in range(RANDOM_TRIALS)]
    rng.shuffle(trials)
    assert len(trials) >= 50
    outcomes = {"killed": 0, "finished": 0}

    for i, (command, hook) in enumerate(trials):
        # A committed lease that must survive whatever happens next.
        run_in_process("ADD", f"keep{i}", conf)
        model[f"keep{i}"] = rows(data_dir)[f"keep{i}"]
        cid = f"c{i}" if command == "ADD" else rng.choice(sorted(model))

        if hook == "random":
            proc = spawn(pythonpath, command, cid, conf, "mark@open:connected")
            kill_at_random(proc, rng)
        else:
            proc = spawn(pythonpath, command, cid, conf, hook)
        _, err = proc.communicate(timeout=30)
        code = proc.returncode
        assert code in (0, -signal.SIGKILL), err.decode()
        outcomes["killed" if code else "finished"] += 1

        # Right after the kill: no torn record, nothing committed lost, and the
        # killed owner holds both addresses or none.
        verify(data_dir)
        held = rows(data_dir)
        for other, addrs in model.items():
            if other != cid:
                assert held.get(other) == addrs, f"trial {i}: lost {other}'s lease"
        assert len(held.get(cid, set())) in (0, 2), f"trial {i}: half a lease"
        if command == "ADD" and (code == 0 or hook == f"kill@{COMMITTED}"):
            assert len(held.get(cid, set())) == 2, f"trial {i}: committed lease lost"
        if command == "DEL" and code == 0:
            assert cid not in held

        # Then the runtime's repair: a DEL again, or a GC of everything it knows.
        model.pop(cid, None)
        if i % 2:
            run_in_process("DEL", cid, conf)
        else:
            keep = [{"containerID": c, "ifname": "eth0"} for c in model]
            run_in_process("GC", "gc", {**conf, "cni.dev/valid-attachments": keep})

        verify(data_dir)
        assert rows(data_dir) == model, f"trial {i}: a lease is unaccounted for"

    assert outcomes["killed"] >= 45, outcomes
    # Every address is accounted for: all come back once every lease is released.
    for cid in list(model):
        run_in_process("DEL", cid, conf)
    assert rows(data_dir) == {}
    held = [run_in_process("ADD", f"refill{i}", conf) for i in range(61)]
    assert len({r["ips"][0]["address"] for r in held}) == 61  # .2-.62 of a /26


# --- ENOSPC ------------------------------------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="mounting a small tmpfs needs root"
)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(path: Path) -> None:
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def exec_plugin(
    pythonpath: str, command: str, cid: str, conf: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    proc = spawn(pythonpath, command, cid, conf)
    out, err = proc.communicate(timeout=30)
    assert b"Traceback" not in out, err.decode()
    return proc.returncode, json.loads(out) if out.strip() else {}


@needs_root
@pytest.mark.parametrize("reader", [False, True], ids=["alone", "reader-open"])
def test_full_disk_is_a_clean_error_then_service_resumes(
    small_tmpfs: Path, pythonpath: str, reader: bool
) -> None:
    data_dir = small_tmpfs / "ipam"
    conf = netconf(data_dir)
    before = [exec_plugin(pythonpath, "ADD", f"c{i}", conf) for i in range(3)]
    assert [code for code, _ in before] == [0, 0, 0]
    # Alone, each plugin run checkpoints and removes the log when it closes the
    # store, so the full disk hits the next opener; with a reader holding the store
    # open, the log stays and the full disk hits a commit instead.
    with contextlib.ExitStack() as stack:
        if reader:
            db = sqlite3.connect(data_dir / DB_NAME)
            stack.callback(db.close)
            db.execute("SELECT COUNT(*) FROM leases").fetchall()
        filler = small_tmpfs / "filler"
        fill(filler)
        check_full_disk(small_tmpfs, data_dir, filler, pythonpath)


def check_full_disk(mnt: Path, data_dir: Path, filler: Path, pythonpath: str) -> None:
    conf = netconf(data_dir)
    small_tmpfs = mnt

    failures = []
    for i in range(3, 40):
        code, out = exec_plugin(pythonpath, "ADD", f"c{i}", conf)
        if code:
            failures.append((f"c{i}", out))
            break
    assert failures, "the ADDs never ran out of space"
    cid, err = failures[0]
    assert err["code"] == 5
    assert err["msg"].endswith(f"(no space left in dataDir {data_dir})")
    # A dataDir created while the disk is full fails the same clean way.
    fresh = small_tmpfs / "fresh"
    code, err = exec_plugin(pythonpath, "ADD", "x", netconf(fresh))
    assert (code, err["code"]) == (1, 5)
    assert err["msg"].endswith(f"(no space left in dataDir {fresh})")

    # WAL readers need the -shm file, which a full disk may not let them create:
    # look once there is room again.
    filler.unlink()
    held = rows(data_dir)
    assert cid not in held and len(held) == int(cid[1:])
    verify(data_dir)
    assert exec_plugin(pythonpath, "ADD", cid, conf)[0] == 0
    assert exec_plugin(pythonpath, "ADD", "x", netconf(fresh))[0] == 0
    assert exec_plugin(pythonpath, "DEL", "c0", conf)[0] == 0
    verify(data_dir)
    verify(fresh)
    assert len(rows(data_dir)[cid]) == 2 and "c0" not in rows(data_dir)
