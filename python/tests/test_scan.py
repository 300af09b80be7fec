"""Query engines over pinned selections: DuckDB, Polars, Dask and pyarrow read exactly what
``load_dataframe`` reads through ``bs.scan``, on the local disk and on S3 (moto); a scan is a
snapshot, pinned against garbage collection while it lives; partition filters are resolved by
the metastore (only matching partitions are in the dataset)."""

from __future__ import annotations

import datetime as dt
import gc
import json
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import batchstore as bs


def _frame(ds: int, version: int, reorder: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "x": [ds * 100 + version * 10 + i for i in range(5)],
            "label": pd.Categorical([f"v{version}"] * 5),
            "y": [float(i) for i in range(5)],
        }
    )
    # Another column order in some partitions: engines must match columns by name.
    return frame[["y", "label", "x"]] if reorder else frame


def _rows(table: pa.Table) -> list[tuple]:
    frame = table.to_pandas()
    frame["label"] = frame["label"].astype(str)
    columns = sorted(frame.columns)
    return sorted(map(tuple, frame[columns].itertuples(index=False)))


def _engines(dataset, selection=None) -> dict[str, pa.Table]:
    """What each engine reads from a dataset (and, given the selection, from the engines' own
    readers: ``engine="duckdb"`` / ``"polars"``), as Arrow."""
    import duckdb
    import polars as pl
    import dask.dataframe as dd

    out = {"pyarrow": dataset.to_table()}
    out["duckdb"] = duckdb.sql("SELECT * FROM dataset").arrow()
    if hasattr(out["duckdb"], "read_all"):
        out["duckdb"] = out["duckdb"].read_all()
    out["polars"] = pl.scan_pyarrow_dataset(dataset).collect().to_arrow()
    fragments = list(dataset.get_fragments())
    schema = dataset.schema
    frame = dd.from_map(lambda f: f.to_table(schema=schema).to_pandas(), fragments).compute()
    out["dask"] = pa.Table.from_pandas(frame, preserve_index=False)
    if selection is not None:
        relation = bs.scan("sc", "t", engine="duckdb", **selection)
        out["duckdb-native"] = relation.arrow()
        if hasattr(out["duckdb-native"], "read_all"):
            out["duckdb-native"] = out["duckdb-native"].read_all()
        out["polars-native"] = bs.scan("sc", "t", engine="polars", **selection).collect().to_arrow()
    return out


@pytest.mark.parametrize("case_files", [64, 0])
def test_engines_read_exactly_what_load_dataframe_reads(client, metastore, case_files, monkeypatch):
    from batchstore import _scan

    # Both ways DuckDB's reader is given the keys: by file name (few files) or a join.
    monkeypatch.setattr(_scan, "CASE_FILES", case_files)
    for ds in (1, 2, 3):
        bs.store_dataframe(_frame(ds, 1, reorder=ds == 2), "sc", "t", partitions={"ds": ds})
    tag_batch = bs.store_dataframe(_frame(2, 2), "sc", "t", partitions={"ds": 2})
    client.create_tag("sc", "t", "gold", {"ds": 2}, batch_id=tag_batch.batch_id)
    as_of = dt.datetime.now(dt.timezone.utc)
    time.sleep(0.01)
    bs.store_dataframe(_frame(3, 3), "sc", "t", partitions={"ds": 3})

    selections = [
        {},
        {"version": 1},
        {"as_of": as_of},
        {"tag": "gold"},
        {"batch_id": tag_batch.batch_id},
    ]
    scans = []
    for selection in selections:
        expected = _rows(bs.load_dataframe("sc", "t", as_="arrow", partition_columns="always", **selection))
        assert expected, selection
        dataset = bs.scan("sc", "t", **selection)
        for engine, table in _engines(dataset, selection).items():
            assert _rows(table) == expected, (engine, selection)
            assert table.column("ds").type == pa.int64(), engine
        scans.append((selection, dataset, expected))
    # Every scan is a snapshot: later writes and a rollback change nothing it reads.
    for ds in (1, 2, 3):
        bs.store_dataframe(_frame(ds, 9), "sc", "t", partitions={"ds": ds})
    bs.rollback("sc", "t", {"ds": 2}, to_version=1)
    for selection, dataset, expected in scans:
        for engine, table in _engines(dataset).items():
            assert _rows(table) == expected, ("after writes", engine, selection)


def test_a_scan_is_a_pinned_snapshot(client, metastore):
    for version in (1, 2):
        bs.store_dataframe(_frame(1, version), "sc", "p", partitions={"ds": 1})
    dataset = bs.scan("sc", "p")
    before = _rows(dataset.to_table())
    lease_ids = [lease["lease_id"] for lease in client.leases("sc", include_reads=True)]
    assert len(lease_ids) == 1, "a live scan holds one read lease"
    # Later writes, a rollback and a GC sweep with retention 1 change nothing for the scan.
    bs.store_dataframe(_frame(1, 3), "sc", "p", partitions={"ds": 1})
    bs.rollback("sc", "p", {"ds": 1}, to_version=1)
    client.set_retention("sc", "p", keep_versions=1)
    swept = client.collect_garbage("sc", "p")
    assert swept["batches_expired"] == 1, swept  # version 3; version 2 is pinned by the scan
    # (Values computed outside `assert`: pytest's rewriting would keep the dataset referenced.)
    after = _rows(dataset.to_table())
    assert after == before
    # (Engines are not used on this dataset: DuckDB keeps a reference to what it scanned.)
    # Once the dataset is gone its lease is released, and the next sweep frees version 2.
    del dataset
    gc.collect()
    deadline = time.monotonic() + 10
    while client.leases("sc", include_reads=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.leases("sc", include_reads=True) == []
    assert client.collect_garbage("sc", "p")["batches_expired"] == 1


def test_partition_filters_are_resolved_by_the_metastore(client, metastore):
    for ds in range(1, 9):
        bs.store_dataframe(_frame(ds, 1), "sc", "f", partitions={"ds": ds, "region": "eu" if ds % 2 else "us"})
    dataset = bs.scan("sc", "f", filter=[("ds", ">=", 3), ("region", "=", "eu"), ("x", ">", 502)])
    # Only ds 3, 5, 7 (eu, >= 3) were resolved: one file each.
    assert len(dataset.files) == 3
    table = dataset.to_table()
    assert sorted(set(table.column("ds").to_pylist())) == [5, 7]
    assert min(table.column("x").to_pylist()) > 502
    manifest = bs.manifest("sc", "f", filter=[("ds", "in", [1, 2, 8])])
    assert sorted(dict(f["partition"])["ds"] for f in manifest["files"]) == ["1", "2", "8"]
    assert [field["name"] for field in manifest["schema"]][-2:] == ["ds", "region"]
    assert all(f["size_bytes"] > 0 and f["rows"] == 5 for f in manifest["files"])
    json.dumps(manifest)
    # load_dataframe takes the same conditions on keys.
    loaded = bs.load_dataframe("sc", "f", filter=[("ds", "<", 3)])
    assert sorted(loaded["ds"].unique().tolist()) == [1, 2]
    # A pyarrow expression is applied by the scan.
    assert sorted(set(bs.scan("sc", "f", filter=pc.field("ds") == 4).to_table().column("ds").to_pylist())) == [4]
    with pytest.raises(bs.InvalidArgument, match="not a whole number"):
        bs.scan("sc", "f", filter=[("ds", ">", "soon")])
    with pytest.raises(bs.InvalidArgument, match="comparison"):
        bs.load_dataframe("sc", "f", filter=[("ds", "~", 1)])
    with pytest.raises(bs.InvalidArgument, match="not a partition key"):
        bs.load_dataframe("sc", "f", filter=[("x", "=", 1)])
    with pytest.raises(TypeError):
        bs.scan("sc", "f", filter="ds > 1")


def test_engine_readers_filter_and_pin(client, metastore):
    for ds in range(1, 5):
        bs.store_dataframe(_frame(ds, 1, reorder=ds == 3), "sc", "n", partitions={"ds": ds})
    relation = bs.scan("sc", "n", engine="duckdb", filter=[("ds", "in", [2, 3]), ("x", ">", 301)])
    frame = bs.scan("sc", "n", engine="polars", filter=[("ds", "in", [2, 3]), ("x", "not in", [302])])
    assert len(client.leases("sc", include_reads=True)) == 2
    # Columns in the table's order (the first write's), the key last; x = ds*100 + 10 + i.
    assert relation.columns == ["x", "label", "y", "ds"]
    assert sorted((r[0], r[3]) for r in relation.fetchall()) == [(310 + i, 3) for i in range(5)]
    both = sorted([210 + i for i in range(5)] + [310 + i for i in range(5)])
    assert sorted(frame.collect()["x"].to_list()) == both
    # A snapshot: a later write of ds=2 changes nothing the frame reads.
    bs.store_dataframe(_frame(2, 9), "sc", "n", partitions={"ds": 2})
    assert sorted(frame.collect()["x"].to_list()) == both
    del relation, frame
    gc.collect()
    deadline = time.monotonic() + 10
    while client.leases("sc", include_reads=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.leases("sc", include_reads=True) == []
    with pytest.raises(TypeError):
        bs.scan("sc", "n", engine="duckdb", filter=pc.field("x") > 1)
    with pytest.raises(ValueError):
        bs.scan("sc", "n", engine="spark")


def test_columns_through_a_scan(client, metastore):
    client.create_table("sc", "e", partition_keys=[("ds", "int64")])
    bs.store_dataframe(pd.DataFrame({"a": pa.array([1, 2], pa.int32())}), "sc", "e", partitions={"ds": 1})
    dataset = bs.scan("sc", "e", columns=["a"])
    assert dataset.schema.names == ["a", "ds"]
    assert dataset.to_table().column("a").to_pylist() == [1, 2]
    with pytest.raises(bs.InvalidArgument, match="not in the table"):
        bs.scan("sc", "e", columns=["nope"])


def test_spark_reads_a_manifest(tmp_path):
    """Spark reads a manifest's files (`spark.read.parquet(*paths)`) and finds exactly the rows
    `load_dataframe` finds (on local disk: Spark reads S3 through Hadoop's AWS jars, which are
    not installed here)."""
    from pyspark.sql import SparkSession

    from conftest import Metastore

    server = Metastore(tmp_path, str(tmp_path / "warehouse"), {})
    try:
        bs.connect(server.endpoint)
        _spark_reads(SparkSession)
    finally:
        server.stop()


def _spark_reads(SparkSession) -> None:
    for ds in (1, 2, 3):
        bs.store_dataframe(_frame(ds, 1, reorder=ds == 2), "sc", "spark", partitions={"ds": ds})
    bs.store_dataframe(_frame(3, 2), "sc", "spark", partitions={"ds": 3})
    manifest = bs.manifest("sc", "spark", filter=[("ds", ">=", 2)])
    paths = [f["path"] for f in manifest["files"]]
    assert len(paths) == 2
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        frame = spark.read.parquet(*paths)
        got = sorted((r["x"], r["y"]) for r in frame.select("x", "y").collect())
    finally:
        spark.stop()
    loaded = bs.load_dataframe("sc", "spark", filter=[("ds", ">=", 2)])
    assert got == sorted(zip(loaded["x"].tolist(), loaded["y"].tolist()))
