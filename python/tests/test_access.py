"""Tokens, grants, TLS and mutual TLS from Python, against a real metastore that authenticates.

The certificates come from the `testkit` binary (the same generator as the Rust suites); the
token file holds only hashes, as an operator's would.
"""

from __future__ import annotations

import hashlib
import subprocess

import pandas as pd
import pytest

import batchstore as bs

from conftest import Metastore, _binary


def _entry(name: str, token: str) -> str:
    digest = hashlib.sha256(token.encode()).hexdigest()
    return f'[[principal]]\nname = "{name}"\ngroups = []\ntoken_sha256 = "{digest}"\n\n'


@pytest.fixture
def secured(tmp_path, monkeypatch):
    """A metastore with a token file (root is admin), TLS and required client certificates."""
    for name in ("BATCHSTORE_TOKEN", "BATCHSTORE_TOKEN_FILE", "BATCHSTORE_CA_FILE",
                 "BATCHSTORE_CLIENT_CERT", "BATCHSTORE_CLIENT_KEY", "BATCHSTORE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    tls = tmp_path / "tls"
    subprocess.run([_binary("testkit", "BATCHSTORE_TESTKIT_BIN"), "tls", str(tls)], check=True)
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(_entry("root", "root-token") + _entry("alice", "alice-token"))
    server = Metastore(
        tmp_path,
        str(tmp_path / "warehouse"),
        {},
        (
            "--token-file", str(tokens), "--admin", "root",
            "--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"),
            "--tls-client-ca", str(tls / "ca.pem"),
        ),
    )
    port = server.endpoint.rsplit(":", 1)[1]
    server.endpoint = f"https://localhost:{port}"
    server.tls = tls
    server.env.update({
        "BATCHSTORE_CA_FILE": str(tls / "ca.pem"),
        "BATCHSTORE_CLIENT_CERT": str(tls / "client.pem"),
        "BATCHSTORE_CLIENT_KEY": str(tls / "client.key"),
        "BATCHSTORE_TOKEN": "root-token",
    })
    yield server
    server.stop()


def _client(server, **overrides) -> bs.Client:
    tls = server.tls
    options = dict(
        ca_file=tls / "ca.pem", client_cert=tls / "client.pem", client_key=tls / "client.key"
    )
    options.update(overrides)
    return bs.Client(server.endpoint, **options)


def test_tokens_grants_and_mutual_tls(secured, tmp_path):
    frame = pd.DataFrame({"x": [1, 2, 3]})
    root = _client(secured, token="root-token")
    assert root.create_table("sales", "items", ["ds"])

    with pytest.raises(bs.Unauthenticated, match="no token; set BATCHSTORE_TOKEN"):
        _client(secured).list_tables("sales")
    with pytest.raises(bs.Unauthenticated, match="not one this metastore accepts"):
        _client(secured, token="guess").list_tables("sales")

    # A token from a file, its first line.
    token_file = tmp_path / "alice.token"
    token_file.write_text("alice-token\n")
    alice = _client(secured, token_file=token_file)
    with pytest.raises(bs.PermissionDenied, match="alice has no grant on sales, read is needed"):
        alice.load_dataframe("sales", "items", {"ds": "1"})

    assert secured.tablectl("grant", "read", "sales", "alice").returncode == 0
    with pytest.raises(bs.PermissionDenied, match="alice has read on sales, write is needed") as denied:
        alice.store_dataframe(frame, "sales", "items", {"ds": "1"})
    assert not isinstance(denied.value, bs.Unauthenticated)
    assert secured.tablectl("grant", "write", "sales", "alice").returncode == 0
    alice.store_dataframe(frame, "sales", "items", {"ds": "1"}, message="by alice")
    pd.testing.assert_frame_equal(alice.load_dataframe("sales", "items", {"ds": "1"}), frame)
    history = root.history("sales", "items", {"ds": "1"})
    assert list(history["actor"]) == ["alice"]

    # The module-level functions take the same credentials.
    bs.connect(secured.endpoint, token="alice-token", ca_file=secured.tls / "ca.pem",
               client_cert=secured.tls / "client.pem", client_key=secured.tls / "client.key")
    pd.testing.assert_frame_equal(bs.load_dataframe("sales", "items", {"ds": "1"}), frame)


def test_tls_failures_are_clear(secured):
    # The wrong CA: the server's certificate is not trusted.
    with pytest.raises(bs.Unavailable, match="(?i)certificate"):
        _client(secured, token="root-token", ca_file=secured.tls / "wrong-ca.pem").list_tables()
    # No client certificate for a server that requires one.
    with pytest.raises(bs.Unavailable):
        _client(secured, token="root-token", client_cert=None, client_key=None).list_tables()
    # Plain text against TLS.
    plain = secured.endpoint.replace("https://localhost", "http://127.0.0.1")
    with pytest.raises(bs.Unavailable, match="https://"):
        bs.Client(plain, token="root-token").list_tables()
    # Half a client identity is refused before connecting.
    with pytest.raises(bs.InvalidArgument, match="needs its key"):
        _client(secured, token="root-token", client_key=None)
