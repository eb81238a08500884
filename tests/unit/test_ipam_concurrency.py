"""64 mycni-ipam processes at once, ADD then DEL over several rounds: no address is
ever held twice, and nothing is left behind."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mycni_ipam.sqlite_store import DB_NAME, SqliteStore

REPO = Path(__file__).resolve().parents[2]
WORKERS = 64
ROUNDS = 4

# Each worker runs the real dispatcher and handlers once per ADD and DEL, opening the
# store afresh each time as separate executables would. While it holds an address it
# owns a claim file created with O_EXCL: a second holder of the same address fails to
# create it, whatever the store believes.
WORKER = """
import json, os, sys
from pathlib import Path
from libcni import skel
from mycni_ipam.plugin import PLUGIN

data_dir, claims, worker, rounds = sys.argv[1:5]
claims, rounds = Path(claims), int(rounds)
conf = json.dumps({
    "cniVersion": "1.0.0", "name": "mynet", "type": "mycni-ipam",
    "ipam": {"type": "mycni-ipam", "dataDir": data_dir, "lockTimeout": 60,
             "ranges": [[{"subnet": "10.2.0.0/25"}], [{"subnet": "fd00:2::/121"}]]},
}).encode()
dupes, seen = [], []
for r in range(rounds):
    env = {"CNI_CONTAINERID": f"w{worker}", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0",
           "CNI_PATH": "/x"}
    code, out = skel.run(PLUGIN, {**env, "CNI_COMMAND": "ADD"}, conf)
    assert code == 0, out
    addrs = [ip["address"].split("/")[0] for ip in json.loads(out)["ips"]]
    seen.append(addrs)
    made = []
    for addr in addrs:
        try:
            os.close(os.open(claims / addr, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            made.append(addr)
        except FileExistsError:
            dupes.append(addr)
    for addr in made:
        os.unlink(claims / addr)
    code, out = skel.run(PLUGIN, {**env, "CNI_COMMAND": "DEL"}, conf)
    assert code == 0, out
print(json.dumps({"dupes": dupes, "seen": seen}))
"""


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    shim = tmp_path_factory.mktemp("pythonpath")
    (shim / "mycni_ipam").symlink_to(REPO / "plugins" / "ipam")
    return os.pathsep.join([str(REPO), str(shim)])


def test_64_processes_add_and_del_over_rounds(tmp_path: Path, pythonpath: str) -> None:
    data_dir, claims = tmp_path / "ipam", tmp_path / "claims"
    claims.mkdir()
    env = {**os.environ, "PYTHONPATH": pythonpath}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *map(str, (data_dir, claims, w, ROUNDS))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for w in range(WORKERS)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
        reports.append(json.loads(out))

    assert [d for r in reports for d in r["dupes"]] == [], "an address was held twice"
    assert sum(len(r["seen"]) for r in reports) == WORKERS * ROUNDS
    assert list(claims.iterdir()) == []
    db = sqlite3.connect(data_dir / DB_NAME)
    leaked = db.execute("SELECT address, container_id FROM leases").fetchall()
    db.close()
    assert leaked == [], "leases left behind after every DEL"
    with SqliteStore(data_dir, lock_timeout=5) as store, store.transaction():
        assert store.verify() == []
