"""No server to start: in a fresh HOME with no endpoint configured, Python processes and
tablectl store and load through a local metastore they start on demand, share it safely when
they run at once, and leave nothing running once they are done."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import _binary

SCRIPT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import batchstore as bs

    name, rounds, expected = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    client = bs.Client()
    assert client.endpoint.startswith(expected), client.endpoint
    for i in range(rounds):
        frame = pd.DataFrame({"x": [i] * 3, "who": [name] * 3})
        bs.store_dataframe(frame, "home", name, partitions={"ds": i})
        # Everyone writes the shared table too: each write is one more version.
        bs.store_dataframe(frame, "home", "shared", partitions={"ds": 0})
    loaded = bs.load_dataframe("home", name)
    assert sorted(loaded["x"].tolist()) == sorted([i for i in range(rounds) for _ in range(3)]), loaded
    print(client.endpoint)
    """
)


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BATCHSTORE_", "AWS_")) and k != "XDG_DATA_HOME"
    }
    env["HOME"] = str(tmp_path / "user")
    env["BATCHSTORE_IDLE_SECONDS"] = "2"
    return env


def _home(tmp_path: Path) -> Path:
    return tmp_path / "user" / ".local" / "share" / "batchstore"


def _server_running(home: Path) -> bool:
    """Whether a server holds the home's lock."""
    lock = home / "metastore.lock"
    if not lock.exists():
        return False
    with open(lock, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def _wait_stopped(home: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while _server_running(home):
        assert time.monotonic() < deadline, "the local metastore did not stop when idle"
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def nothing_at_the_default_address():
    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 50051)) == 0:
            pytest.fail("a metastore listens on 127.0.0.1:50051 (make run?): these tests need none there")


def test_processes_share_a_local_home_started_on_demand(tmp_path):
    env = _clean_env(tmp_path)
    home = _home(tmp_path)
    csv = tmp_path / "t.csv"
    csv.write_text("a,b\n1,x\n2,y\n")
    tablectl = _binary("tablectl", "BATCHSTORE_TABLECTL_BIN")
    # Two Python processes and tablectl at once, on a home that does not exist yet.
    pythons = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, name, "6", "local:"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name in ("p1", "p2")
    ]
    shell = subprocess.run(
        ["sh", "-c", f"{tablectl} namespace create cli && {tablectl} table create cli.t --partition-key ds && "
         f"{tablectl} write cli.t -p ds=1 {csv}"],
        env=env, capture_output=True, text=True,
    )
    outputs = [p.communicate(timeout=120) for p in pythons]
    for p, (out, err) in zip(pythons, outputs):
        assert p.returncode == 0, err
        assert out.strip() == f"local:{home}"
    assert shell.returncode == 0, shell.stderr
    read = subprocess.run([tablectl, "--json", "read", "cli.t", "-p", "ds=1"], env=env, capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    assert [(r["a"], r["b"]) for r in json.loads(read.stdout)["rows"]] == [("1", "x"), ("2", "y")]
    # One line on first use says where the data lives, from the process that made the home.
    said = [e for _, e in outputs] + [shell.stderr, read.stderr]
    assert sum(f"tables are kept in {home}" in e for e in said) == 1, said
    assert (home / "catalog.db").exists() and (home / "warehouse").is_dir()
    assert oct(home.stat().st_mode & 0o777) == "0o700"

    # Every write of the shared partition is one version: 12 writes, 12 versions.
    history = subprocess.run(
        [tablectl, "--json", "history", "home.shared", "-p", "ds=0"], env=env, capture_output=True, text=True
    )
    assert history.returncode == 0, history.stderr
    versions = sorted(entry["version"] for entry in json.loads(history.stdout))
    assert versions == list(range(1, 13))

    # Nobody is connected: the server stops, and removes its socket.
    _wait_stopped(home)
    assert not (home / "metastore.sock").exists()

    # The next process starts it again and finds everything.
    again = subprocess.run(
        [sys.executable, "-c",
         "import batchstore as bs; print(len(bs.load_dataframe('home', 'p1')), len(bs.load_dataframe('cli', 't')))"],
        env=env, capture_output=True, text=True,
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == ["18", "2"]
    assert "tables are kept in" not in again.stderr
    _wait_stopped(home)


def test_an_endpoint_switches_to_a_team_server(tmp_path, metastore):
    """BATCHSTORE_ENDPOINT set: the same code talks to that server and no home is made."""
    env = {**_clean_env(tmp_path), "BATCHSTORE_ENDPOINT": metastore.endpoint}
    if metastore.storage == "s3":
        env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    ran = subprocess.run([sys.executable, "-c", SCRIPT, "team", "2", "http"], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == metastore.endpoint
    assert not _home(tmp_path).exists()


def test_a_server_that_cannot_start_is_reported(tmp_path):
    env = _clean_env(tmp_path)
    # The home is a file: nothing can be created in it.
    (tmp_path / "blocked").write_text("")
    env["BATCHSTORE_HOME"] = str(tmp_path / "blocked")
    ran = subprocess.run(
        [sys.executable, "-c", "import batchstore as bs; bs.load_dataframe('a', 'b')"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode != 0
    assert "blocked" in ran.stderr and "batchstore" in ran.stderr


def test_something_else_at_the_default_address_is_not_taken_for_a_metastore(tmp_path):
    """A port 50051 held by a program that is not a metastore does not capture the client: it
    answers no gRPC, so the client uses the local home."""
    env = _clean_env(tmp_path)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", 50051))
        squatter.listen(16)
        started = time.monotonic()
        ran = subprocess.run(
            [sys.executable, "-c", "import batchstore as bs; print(bs.Client().endpoint)"],
            env=env, capture_output=True, text=True, timeout=60,
        )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"local:{_home(tmp_path)}"
    assert time.monotonic() - started < 20
    _wait_stopped(_home(tmp_path))


def test_a_home_others_can_write_is_refused(tmp_path):
    """The home decides what every read returns: one that other users can write is not used."""
    env = _clean_env(tmp_path)
    home = tmp_path / "shared-home"
    home.mkdir()
    home.chmod(0o777)
    env["BATCHSTORE_HOME"] = str(home)
    ran = subprocess.run(
        [sys.executable, "-c", "import batchstore as bs; bs.Client()"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode != 0
    assert "can be written by other users" in ran.stderr and "chmod 700" in ran.stderr
    assert not (home / "catalog.db").exists()
    home.chmod(0o700)
    ran = subprocess.run(
        [sys.executable, "-c", "import batchstore as bs; print(bs.Client().endpoint)"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == f"local:{home}"
    _wait_stopped(home)
