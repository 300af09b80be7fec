"""Fixtures: a real metastore process (SQLite catalog) with its warehouse on the local disk or
on moto's S3-compatible server, both on 127.0.0.1 and stopped after the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

import batchstore as bs

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "batchstore-target"))


def _binary(name: str, override: str) -> str:
    path = os.environ.get(override) or str(TARGET / "debug" / name)
    if not Path(path).is_file():
        pytest.fail(f"{path} not found: run `cargo build --workspace` (make test does) or set {override}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Moto:
    """moto's server on a free loopback port, with one bucket."""

    def __init__(self, bucket: str) -> None:
        exe = shutil.which("moto_server")
        if exe is None:
            pytest.fail('moto_server is not installed: pip install "moto[server]" (make test does)')
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT"), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail("moto_server did not start")
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
        }

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


class Metastore:
    """A `metastore serve` process on a free port."""

    def __init__(self, tmp: Path, warehouse: str, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.env = {**os.environ, **env, "BATCHSTORE_LOG": "warn"}
        self.process = subprocess.Popen(
            [
                _binary("metastore", "BATCHSTORE_METASTORE_BIN"),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                f"sqlite://{tmp / 'catalog.db'}?mode=rwc",
                "--warehouse",
                warehouse,
                *args,
            ],
            stdout=subprocess.PIPE,
            env=self.env,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("listening on "):
            self.stop()
            pytest.fail(f"the metastore did not start: {line!r}")
        self.endpoint = "http://" + line.split()[-1]

    def tablectl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_binary("tablectl", "BATCHSTORE_TABLECTL_BIN"), "--endpoint", self.endpoint, *args],
            env=self.env,
            capture_output=True,
            text=True,
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(params=["local", "s3"])
def metastore(request, tmp_path, monkeypatch):
    """A running metastore, on the local disk and on S3 (moto)."""
    moto = None
    if request.param == "s3":
        moto = Moto("lake")
        for key, value in moto.env().items():
            monkeypatch.setenv(key, value)
        server = Metastore(tmp_path, "s3://lake/warehouse", moto.env())
    else:
        server = Metastore(tmp_path, str(tmp_path / "warehouse"), {})
    server.storage = request.param
    yield server
    server.stop()
    if moto is not None:
        moto.stop()


@pytest.fixture
def client(metastore):
    """A client connected to the fixture's metastore, also set as the module default."""
    return bs.connect(metastore.endpoint)
