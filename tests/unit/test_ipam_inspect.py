"""mycni_ipam.inspect: list, release and verify, as a table and as JSON, through
`python -m mycni_ipam.inspect` and `mycni-ipam inspect`."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from libcni import skel
from mycni_ipam import inspect
from mycni_ipam.plugin import PLUGIN
from mycni_ipam.sqlite_store import DB_NAME

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    conf = json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "mynet",
            "type": "mycni-ipam",
            "ipam": {
                "dataDir": str(tmp_path),
                "ranges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]],
            },
        }
    ).encode()
    for cid in ("c1", "c2"):
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": "/x",
            "CNI_IFNAME": "eth0",
            "CNI_PATH": "/x",
        }
        assert skel.run(PLUGIN, env, conf)[0] == 0
    return tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = inspect.main(list(argv), out=out)
    return code, out.getvalue()


def test_list_as_a_table(data_dir: Path) -> None:
    code, out = run("--data-dir", str(data_dir), "list")

    lines = out.splitlines()
    assert code == 0
    header = ["NETWORK", "ADDRESS", "CONTAINER", "IFNAME", "AGE", "BOOT"]
    assert lines[0].split() == header
    assert [line.split()[:4] for line in lines[1:]] == [
        ["mynet", "10.1.0.2", "c1", "eth0"],
        ["mynet", "10.1.0.3", "c2", "eth0"],
        ["mynet", "fd00::2", "c1", "eth0"],
        ["mynet", "fd00::3", "c2", "eth0"],
    ]
    assert all(line.split()[-1] == "this" for line in lines[1:])


def test_list_as_json_and_by_network(data_dir: Path) -> None:
    code, out = run("--data-dir", str(data_dir), "list", "--json")
    other = run("--data-dir", str(data_dir), "--json", "list", "--network", "x")

    rows = json.loads(out)
    assert code == 0
    assert {r["address"] for r in rows} == {
        "10.1.0.2",
        "10.1.0.3",
        "fd00::2",
        "fd00::3",
    }
    assert set(rows[0]) == {
        "network",
        "rangeSet",
        "address",
        "containerID",
        "ifname",
        "created",
        "ageSeconds",
        "bootID",
        "thisBoot",
    }
    assert other == (0, "[]\n")


def test_release_one_address_then_one_attachment(data_dir: Path) -> None:
    dd = ("--data-dir", str(data_dir))

    by_address = run(
        *dd, "--json", "release", "--network", "mynet", "--address", "fd00::3"
    )
    by_owner = run(*dd, "release", "--network", "mynet", "--container", "c1")
    again = run(*dd, "release", "--network", "mynet", "--container", "c1")

    assert by_address[0] == 0
    assert [r["address"] for r in json.loads(by_address[1])["released"]] == ["fd00::3"]
    assert by_owner[0] == 0 and by_owner[1].startswith("released 2 lease(s):")
    assert again == (1, "no such lease\n")
    rows = json.loads(run(*dd, "--json", "list")[1])
    assert [(r["address"], r["containerID"]) for r in rows] == [("10.1.0.3", "c2")]


def test_verify_finds_a_damaged_row(data_dir: Path) -> None:
    assert run("--data-dir", str(data_dir), "verify") == (
        0,
        f"{data_dir / DB_NAME}: 4 leases, ok\n",
    )
    db = sqlite3.connect(data_dir / DB_NAME)
    db.execute(
        "UPDATE leases SET address = 'banana', created = '' WHERE address = 'fd00::3'"
    )
    db.commit()
    db.close()

    code, out = run("--data-dir", str(data_dir), "--json", "verify")

    assert code == 1
    assert json.loads(out)["problems"] == [
        'lease mynet/banana: "banana" is not an IP address',
        'lease mynet/banana: creation time "" is unreadable',
    ]


def test_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("--data-dir", str(tmp_path / "none"), "list") == (1, "")
    assert capsys.readouterr().err == f"no lease store in {tmp_path / 'none'}\n"


@pytest.fixture(scope="module")
def pythonpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    shim = tmp_path_factory.mktemp("pythonpath")
    (shim / "mycni_ipam").symlink_to(REPO / "plugins" / "ipam")
    return os.pathsep.join([str(REPO), str(shim)])


@pytest.mark.parametrize(
    "argv",
    [["-m", "mycni_ipam.inspect"], ["-m", "mycni_ipam", "inspect"]],
    ids=["python-m-inspect", "executable-subcommand"],
)
def test_both_entry_points(data_dir: Path, pythonpath: str, argv: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    proc = subprocess.run(
        [sys.executable, *argv, "--data-dir", str(data_dir), "verify"],
        env={**env, "PYTHONPATH": pythonpath},
        capture_output=True,
        text=True,
        check=False,
    )

    assert (proc.returncode, proc.stdout) == (
        0,
        f"{data_dir / DB_NAME}: 4 leases, ok\n",
    )


def test_cni_command_keeps_the_cni_path(data_dir: Path, pythonpath: str) -> None:
    # With CNI_COMMAND set, "inspect" in argv means nothing: the runtime is calling.
    proc = subprocess.run(
        [sys.executable, "-m", "mycni_ipam", "inspect"],
        env={**os.environ, "PYTHONPATH": pythonpath, "CNI_COMMAND": "VERSION"},
        input="{}",
        capture_output=True,
        text=True,
        check=True,
    )

    assert "supportedVersions" in json.loads(proc.stdout)


def test_release_names_an_address_it_cannot_read(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It once blamed the lease store: "failed to read lease store in ...: 'x'"."""
    dd = ("--data-dir", str(data_dir))
    code, _ = run(*dd, "release", "--network", "mynet", "--address", "not-an-ip")
    assert code == 1
    assert capsys.readouterr().err.strip() == (
        '--address: "not-an-ip" is not an IP address'
    )
    assert len(json.loads(run(*dd, "--json", "list")[1])) == 4
