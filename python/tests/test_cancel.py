"""Ctrl-C during a long store stops it cleanly: KeyboardInterrupt, and the partition unchanged."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
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
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize("metastore", ["local"], indirect=True)
def test_ctrl_c_during_store_leaves_partition_unchanged(client, metastore, tmp_path):
    original = pd.DataFrame({"v": [1, 2, 3]})
    first = bs.store_dataframe(original, "sales", "items", partitions={"ds": "1"})
    partition_dir = tmp_path / "warehouse" / "sales" / "items" / "ds=1"
    before = set(partition_dir.iterdir())
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, metastore.endpoint], stdout=subprocess.PIPE, text=True)
    try:
        # Interrupt once the upload is under way: a new batch directory holds a data file.
        deadline = time.monotonic() + 60
        while not any(any(d.iterdir()) for d in set(partition_dir.iterdir()) - before):
            assert child.poll() is None, "the store finished before it could be interrupted"
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == 3, out
    assert "interrupted" in out
    history = bs.history("sales", "items", {"ds": "1"})
    assert list(history["batch_id"]) == [first.batch_id]
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions={"ds": "1"}), original)
