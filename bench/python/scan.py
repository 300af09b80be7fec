"""Benchmark: query engines over a pinned selection through ``bs.scan``, next to the same
engine reading the very same Parquet files directly.

A 10,000,000-row table in 20 partitions is stored once; then an aggregate (group by a data
column, sum and count, and a filter) runs in DuckDB and in Polars (a) over ``bs.scan(...)`` and
(b) over ``bs.scan(..., engine="duckdb" | "polars")`` (the engine's own Parquet reader), and
(c) over the files listed by ``bs.manifest`` read natively (``read_parquet`` /
``pl.scan_parquet``) and as a plain pyarrow dataset. Reported: best-of-N seconds and the ratio
direct/scan (1.0 = the scan costs nothing; the aim is >= 0.95).

Not a test: it prints figures. Run with `make bench-scan`.
Usage: python3 bench/python/scan.py [--rows 10000000] [--partitions 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

import batchstore as bs

sys.path.insert(0, str(Path(__file__).parent))
from store_load import best, start_metastore  # noqa: E402


def make_table(rows: int, partitions: int) -> pa.Table:
    rng = np.random.default_rng(7)
    labels = pa.array([f"label-{i:02d}" for i in range(50)])
    return pa.table(
        {
            "ds": np.arange(rows, dtype=np.int64) % partitions,
            "id": np.arange(rows, dtype=np.int64),
            "value": rng.random(rows) * 100.0,
            "label": labels.take(pa.array(rng.integers(0, 50, rows))),
        }
    )


QUERY = "SELECT label, count(*) AS n, sum(value) AS total FROM {source} WHERE value > 10 GROUP BY label"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import duckdb
    import polars as pl

    with tempfile.TemporaryDirectory() as tmp:
        process, endpoint = start_metastore(Path(tmp))
        try:
            client = bs.connect(endpoint)
            table = make_table(args.rows, args.partitions)
            start = time.perf_counter()
            client.store_dataframe(table, "bench", "scan", partition_by="ds")
            print(f"stored {args.rows:,} rows in {args.partitions} partitions in {time.perf_counter() - start:.2f} s")

            paths = [f["path"] for f in client.manifest("bench", "scan")["files"]]
            con = duckdb.connect()

            def duck_scan() -> list:
                dataset = client.scan("bench", "scan", columns=["label", "value"])
                return con.sql(QUERY.format(source="dataset")).fetchall()

            def duck_native_scan() -> list:
                relation = client.scan("bench", "scan", columns=["label", "value"], engine="duckdb", connection=con)
                return relation.filter("value > 10").aggregate("label, count(*) AS n, sum(value) AS total").fetchall()

            def duck_parquet() -> list:
                listed = ", ".join(f"'{p}'" for p in paths)
                return con.sql(QUERY.format(source=f"read_parquet([{listed}])")).fetchall()

            def duck_dataset() -> list:
                direct = pads.dataset(paths, format="parquet")
                return con.sql(QUERY.format(source="direct")).fetchall()

            def polars_query(frame) -> pl.DataFrame:
                return (
                    frame.filter(pl.col("value") > 10)
                    .group_by("label")
                    .agg(pl.len().alias("n"), pl.col("value").sum().alias("total"))
                    .collect()
                )

            def polars_scan() -> pl.DataFrame:
                return polars_query(pl.scan_pyarrow_dataset(client.scan("bench", "scan", columns=["label", "value"])))

            def polars_native_scan() -> pl.DataFrame:
                return polars_query(client.scan("bench", "scan", columns=["label", "value"], engine="polars"))

            def polars_parquet() -> pl.DataFrame:
                return polars_query(pl.scan_parquet(paths))

            def polars_dataset() -> pl.DataFrame:
                return polars_query(pl.scan_pyarrow_dataset(pads.dataset(paths, format="parquet")))

            # The same answer every way.
            answers = [sorted(f()) for f in (duck_scan, duck_native_scan, duck_parquet, duck_dataset)]
            assert all(len(a) == 50 for a in answers)
            assert all(x[0] == y[0] and x[1] == y[1] for a in answers[1:] for x, y in zip(answers[0], a))

            rows = []
            for engine, scan, native_scan, direct, dataset in [
                ("DuckDB", duck_scan, duck_native_scan, duck_parquet, duck_dataset),
                ("Polars", polars_scan, polars_native_scan, polars_parquet, polars_dataset),
            ]:
                times = [best(f, args.repeat) for f in (scan, native_scan, direct, dataset)]
                rows.append((engine, *times))
            print(f"{'engine':8} {'scan':>8} {'scan(engine=)':>14} {'native':>8} {'dataset':>8} "
                  f"{'native/scan':>12} {'native/scan(engine=)':>21}")
            for engine, t_scan, t_engine, t_direct, t_dataset in rows:
                print(
                    f"{engine:8} {t_scan:8.3f} {t_engine:14.3f} {t_direct:8.3f} {t_dataset:8.3f} "
                    f"{t_direct / t_scan:12.2f} {t_direct / t_engine:21.2f}"
                )
            print("(seconds, best of %d; scan = bs.scan (a pyarrow dataset); scan(engine=) = bs.scan(..., "
                  "engine='duckdb'|'polars'); native = read_parquet / pl.scan_parquet over the same files; "
                  "dataset = a plain pyarrow dataset of them)" % args.repeat)
        finally:
            process.kill()
            process.wait()


if __name__ == "__main__":
    os.environ.setdefault("BATCHSTORE_LOG", "warn")
    main()
