"""Ctrl-C during a store stops it cleanly and truthfully. During the upload: KeyboardInterrupt,
the partition unchanged and the batch aborted. While the commit is in flight: the
KeyboardInterrupt says whether the commit happened, and the catalog agrees with it."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pandas as pd
import pandas.testing as pdt
import pytest

import batchstore as bs

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pandas as pd
    import batchstore as bs

    bs.connect(sys.argv[1])
    frame = pd.DataFrame({"v": np.arange(40_000_000, dtype=np.int64)})
    try:
        bs.store_dataframe(frame, "sales", "items", partitions={"ds": "1"})
    except KeyboardInterrupt as error:
        print(f"interrupted: {error}", flush=True)
        print(f"committed: {error.committed}", flush=True)
        sys.exit(3)
    print("finished", flush=True)
    """
)


def wait_for_new_batch_file(child, partition_dir, before, wanted):
    """Waits until a batch directory not in `before` holds a file whose name is `wanted`;
    returns that directory."""
    deadline = time.monotonic() + 60
    while True:
        for batch_dir in set(partition_dir.iterdir()) - before:
            if any(wanted(f.name) for f in batch_dir.iterdir()):
                return batch_dir
        assert child.poll() is None, "the store finished before it could be interrupted"
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.01)


def batch_id_of(batch_dir) -> str:
    assert batch_dir.name.startswith("_batch="), batch_dir
    return batch_dir.name.removeprefix("_batch=")


def batch_state(metastore, batch_id: str) -> str:
    shown = metastore.tablectl("batch", batch_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["state"]


@pytest.mark.parametrize("metastore", ["local"], indirect=True)
def test_ctrl_c_during_store_leaves_partition_unchanged(client, metastore, tmp_path):
    original = pd.DataFrame({"v": [1, 2, 3]})
    first = bs.store_dataframe(original, "sales", "items", partitions={"ds": "1"})
    partition_dir = tmp_path / "warehouse" / "sales" / "items" / "ds=1"
    before = set(partition_dir.iterdir())
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, metastore.endpoint], stdout=subprocess.PIPE, text=True)
    try:
        # Interrupt once the upload is under way: a new batch directory holds a data file.
        batch_dir = wait_for_new_batch_file(child, partition_dir, before, lambda name: True)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == 3, out
    assert "interrupted" in out
    assert "nothing was committed" in out, out
    assert "committed: []" in out, out
    history = bs.history("sales", "items", {"ds": "1"})
    assert list(history["batch_id"]) == [first.batch_id]
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions={"ds": "1"}), original)
    # The batch the child began was given up at once, not left pending until its lease runs out.
    assert batch_state(metastore, batch_id_of(batch_dir)) == "aborted"


class SlowRepliesProxy:
    """A TCP proxy on 127.0.0.1 to `target` ("host:port"): what the client sends is forwarded at
    once, but every chunk the server sends back is held for `delay` seconds first, so a reply
    (the commit's included) is still on its way well after the server sent it."""

    def __init__(self, target: str, delay: float) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.delay = delay
        self.sockets: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                server = socket.create_connection(self.target)
            except OSError:
                return
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.delay), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while chunk := source.recv(65536):
                time.sleep(delay)
                sink.sendall(chunk)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


COMMIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import pandas as pd
    import batchstore as bs

    bs.connect(sys.argv[1])
    try:
        info = bs.store_dataframe(pd.DataFrame({"v": [4, 5, 6]}), "sales", "items", partitions={"ds": "1"})
    except KeyboardInterrupt as error:
        print(f"interrupted: {error}", flush=True)
        print(f"committed: {[(c.batch_id, c.version) for c in error.committed]}", flush=True)
        sys.exit(3)
    print(f"finished: batch {info.batch_id}", flush=True)
    """
)


@pytest.mark.parametrize("metastore", ["local"], indirect=True)
def test_ctrl_c_while_the_commit_is_in_flight_reports_the_truth(client, metastore, tmp_path):
    """Whether the interrupt lands just before the commit is sent or while its reply is held by
    the proxy, what the child is told must match the catalog: "succeeded" exactly when the
    partition has a new version with that batch, "nothing was committed" exactly when not."""
    original = pd.DataFrame({"v": [1, 2, 3]})
    first = bs.store_dataframe(original, "sales", "items", partitions={"ds": "1"})
    partition_dir = tmp_path / "warehouse" / "sales" / "items" / "ds=1"
    before = set(partition_dir.iterdir())
    proxy = SlowRepliesProxy(metastore.endpoint.removeprefix("http://"), delay=1.5)
    child = subprocess.Popen([sys.executable, "-c", COMMIT_SCRIPT, proxy.endpoint], stdout=subprocess.PIPE, text=True)
    try:
        # The data file under its final name: the upload is done and the commit is next.
        batch_dir = wait_for_new_batch_file(child, partition_dir, before, lambda name: name.endswith(".parquet"))
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
        proxy.close()
    batch_id = batch_id_of(batch_dir)
    history = bs.history("sales", "items", {"ds": "1"})
    if child.returncode == 0 or "succeeded" in out:
        # Committed, and told so: by the KeyboardInterrupt or, had the reply beaten the signal,
        # by the store returning.
        assert child.returncode in (0, 3), out
        assert re.search(rf"\bbatch {batch_id}\b", out), out
        if child.returncode == 3:
            assert f"committed: [('{batch_id}', 2)]" in out, out
        assert list(history["batch_id"]) == [batch_id, first.batch_id]
        assert batch_state(metastore, batch_id) == "committed"
        pdt.assert_frame_equal(
            bs.load_dataframe("sales", "items", partitions={"ds": "1"}), pd.DataFrame({"v": [4, 5, 6]})
        )
    else:
        assert child.returncode == 3, out
        assert "nothing was committed" in out, out
        assert "committed: []" in out, out
        assert list(history["batch_id"]) == [first.batch_id]
        assert batch_state(metastore, batch_id) == "aborted"
        pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions={"ds": "1"}), original)
