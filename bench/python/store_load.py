"""Benchmark: store/load of a pandas frame through batchstore, next to the floor
(pyarrow.parquet write_table / read_table().to_pandas(), same compression) and a peer
(deltalake write_deltalake / DeltaTable().to_pandas()).

Not a test: it prints figures. Run with `make bench-python` (release build of the package).
Usage: python3 bench/python/store_load.py [--rows 5000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import batchstore as bs


def make_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    labels = np.array([f"category-{i:03d}" for i in range(100)], dtype=object)
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "value": rng.random(rows) * 1000.0,
            "label": labels[rng.integers(0, 100, rows)],
            "at": pd.Timestamp("2016-10-31", tz="UTC") + pd.to_timedelta(np.arange(rows), unit="s"),
        }
    )


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def start_metastore(tmp: Path) -> tuple[subprocess.Popen, str]:
    target = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "batchstore-target"))
    binary = os.environ.get("BATCHSTORE_METASTORE_BIN", str(target / "release" / "metastore"))
    process = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--database-url", f"sqlite://{tmp / 'c.db'}?mode=rwc", "--warehouse", str(tmp / "wh")],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    return process, "http://" + line.split()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    frame = make_frame(args.rows)
    megabytes = frame.memory_usage(deep=True).sum() / 1e6
    tmp = Path(tempfile.mkdtemp(prefix="batchstore-bench-"))
    process, endpoint = start_metastore(tmp)
    try:
        bs.connect(endpoint)
        bs.create_table("bench", "frame", partition_keys=["ds"])
        plain = tmp / "plain.parquet"
        results = {
            "pyarrow write_table": best(
                lambda: pq.write_table(pa.Table.from_pandas(frame), plain, compression="zstd", compression_level=1), args.repeat
            ),
            "batchstore store_dataframe": best(
                lambda: bs.store_dataframe(frame, "bench", "frame", partitions=["d"]), args.repeat
            ),
            "pyarrow read_table().to_pandas()": best(lambda: pq.read_table(plain).to_pandas(), args.repeat),
            "batchstore load_dataframe": best(lambda: bs.load_dataframe("bench", "frame", partitions=["d"]), args.repeat),
        }
        loaded = bs.load_dataframe("bench", "frame", partitions=["d"])
        pd.testing.assert_frame_equal(loaded, frame)
        try:
            from deltalake import DeltaTable, WriterProperties, write_deltalake

            delta = tmp / "delta"
            props = WriterProperties(compression="ZSTD", compression_level=1)

            def delta_write():
                write_deltalake(str(delta), frame, mode="overwrite", writer_properties=props)

            results["deltalake write_deltalake"] = best(delta_write, args.repeat)
            results["deltalake DeltaTable().to_pandas()"] = best(lambda: DeltaTable(str(delta)).to_pandas(), args.repeat)
        except ImportError:
            print("(deltalake not installed: pip install deltalake)")
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"frame: {args.rows:,} rows, {megabytes:.1f} MB in pandas (int64, float64, low-cardinality string, timestamp)")
    for name, seconds in results.items():
        print(f"{name:38s} {megabytes / seconds:8.1f} MB/s  ({seconds:.3f} s)")
    write_ratio = results["pyarrow write_table"] / results["batchstore store_dataframe"]
    read_ratio = results["pyarrow read_table().to_pandas()"] / results["batchstore load_dataframe"]
    print(f"store vs floor: {write_ratio:.2f}x   load vs floor: {read_ratio:.2f}x")
    if "deltalake write_deltalake" in results:
        print(
            f"store vs deltalake: {results['deltalake write_deltalake'] / results['batchstore store_dataframe']:.2f}x   "
            f"load vs deltalake: {results['deltalake DeltaTable().to_pandas()'] / results['batchstore load_dataframe']:.2f}x"
        )


if __name__ == "__main__":
    main()
