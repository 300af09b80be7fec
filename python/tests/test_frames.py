"""Round trips of pandas, polars and pyarrow data through a real metastore and storage."""

from __future__ import annotations

import datetime as dt
import decimal
import threading

import pandas as pd
import pandas.testing as pdt
import polars as pl
import polars.testing as plt
import pyarrow as pa
import pytest

import batchstore as bs


def rich_pandas_frame() -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "i": [1, -2, 3, 4],
            "f": [0.5, float("nan"), -1e300, 2.25],
            "b": [True, False, True, False],
            "s": ["a", "naïve", "数据", ""],
            "cat": pd.Categorical(["x", "y", "x", None], categories=["y", "x", "unused"], ordered=True),
            "nullable": pd.array([1, None, 3, None], dtype="Int64"),
            "naive": pd.to_datetime(["2016-10-31 12:00:00", "2016-11-01 00:00:00", None, "1970-01-01 00:00:00"]),
            "aware": pd.to_datetime(["2016-10-31 12:00:00", "2016-11-01 00:00:00", "2020-02-29 00:00:00", None]).tz_localize("Europe/Paris"),
            "day": [dt.date(2016, 10, 31), dt.date(1970, 1, 1), None, dt.date(2100, 12, 31)],
            "price": [decimal.Decimal("1.10"), decimal.Decimal("-2.50"), None, decimal.Decimal("0.01")],
        }
    )
    frame.index = pd.Index([10, 20, 30, 40], name="row_id")
    return frame


def test_pandas_frame_round_trips_exactly(client):
    frame = rich_pandas_frame()
    info = bs.store_dataframe(frame, "sales", "items", partitions={"ds": "20161031"})
    assert (info.version, info.rows) == (1, 4)
    assert len(info.batch_id) == 36
    loaded = bs.load_dataframe("sales", "items", partitions=["20161031"])
    pdt.assert_frame_equal(loaded, frame)


def test_default_index_and_columns(client):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [1.0, 2.0, 3.0]})
    bs.store_dataframe(frame, "sales", "items", partitions={"ds": "d"})
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=["d"]), frame)
    only = bs.load_dataframe("sales", "items", partitions=["d"], columns=["c", "a"])
    pdt.assert_frame_equal(only, frame[["c", "a"]])


def test_polars_frame_round_trips(client):
    frame = pl.DataFrame(
        {
            "i": [1, None, 3],
            "f": [1.5, 2.5, None],
            "b": [True, None, False],
            "s": ["a", "b", None],
            "d": [dt.date(2016, 10, 31), None, dt.date(2000, 1, 1)],
            "t": [dt.datetime(2016, 10, 31, 12), None, dt.datetime(1999, 12, 31, 23, 59, 59)],
        }
    ).with_columns(pl.col("t").dt.replace_time_zone("UTC"))
    bs.store_dataframe(frame, "sales", "items", partitions={"ds": "p"})
    loaded = bs.load_dataframe("sales", "items", partitions={"ds": "p"}, as_="polars")
    assert isinstance(loaded, pl.DataFrame)
    plt.assert_frame_equal(loaded, frame)


def test_pyarrow_table_and_reader(client):
    table = pa.table({"x": pa.array([1, 2, None], pa.int32()), "y": pa.array(["a", None, "c"])})
    bs.store_dataframe(table, "sales", "items", partitions={"ds": "t"})
    assert bs.load_dataframe("sales", "items", partitions=["t"], as_="arrow").equals(table)
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))
    info = bs.store_dataframe(reader, "sales", "items", partitions=["t"])
    assert info.version == 2
    assert bs.load_dataframe("sales", "items", partitions=["t"], as_="arrow").equals(table)


@pytest.mark.parametrize(
    "chunks",
    [[3], [1, 0, 2], [0], [], [1] * 40, [5000], [2000, 0, 3000]],
    ids=["one", "with-empty", "only-empty", "none", "many", "large", "large-chunked"],
)
def test_a_table_in_memory_stores_as_the_same_rows_streamed(client, chunks):
    """A pyarrow Table is taken in memory (small ones encoded without a thread hand-off), any
    other input streamed: both store the same rows, in order, whatever the chunks."""
    rows = sum(chunks)
    full = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "s": pa.array([f"v{i % 7}" if i % 5 else None for i in range(rows)], pa.string()),
            "d": pa.array([f"k{i % 3}" for i in range(rows)], pa.string()).dictionary_encode(),
            "l": pa.array([[i, None] for i in range(rows)], pa.list_(pa.int32())),
        }
    ).replace_schema_metadata({"origin": "test"})
    offsets = [sum(chunks[:k]) for k in range(len(chunks))]
    batches = [
        pa.record_batch([column.slice(o, n).combine_chunks() for column in full.columns], schema=full.schema)
        for o, n in zip(offsets, chunks)
    ]
    table = pa.Table.from_batches(batches, schema=full.schema)
    assert table.num_rows == rows and table.column(0).num_chunks == len(chunks)
    reader = pa.RecordBatchReader.from_batches(full.schema, batches)
    stored = [
        bs.store_dataframe(table, "sales", "memory", partitions={"ds": "table"}),
        bs.store_dataframe(reader, "sales", "memory", partitions={"ds": "stream"}),
    ]
    assert [info.rows for info in stored] == [rows, rows]
    for ds in ["table", "stream"]:
        loaded = bs.load_dataframe("sales", "memory", partitions={"ds": ds}, as_="arrow")
        assert loaded.schema.metadata == full.schema.metadata
        assert loaded.combine_chunks().equals(full.combine_chunks()), ds


def test_history_rollback_and_selectors(client):
    frames = [pd.DataFrame({"v": [n] * (n + 1)}) for n in range(3)]
    infos = [bs.store_dataframe(f, "sales", "items", partitions={"ds": 20161031}, message=f"load {n}") for n, f in enumerate(frames)]
    assert [i.version for i in infos] == [1, 2, 3]
    hist = bs.history("sales", "items", partitions=[20161031])
    assert list(hist["version"]) == [3, 2, 1]
    assert list(hist["batch_id"]) == [i.batch_id for i in reversed(infos)]
    assert list(hist["current"]) == [True, False, False]
    assert hist["committed_at"].dt.tz is not None
    assert hist["message"].iloc[-1] == "load 0"

    rolled = bs.rollback("sales", "items", partitions=[20161031], to_version=1)
    assert (rolled.version, rolled.batch_id) == (4, infos[0].batch_id)
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=[20161031]), frames[0])
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=[20161031], version=2), frames[1])
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=[20161031], batch_id=infos[2].batch_id), frames[2])
    as_of = infos[1].committed_at
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=[20161031], as_of=as_of), frames[1])
    client.create_tag("sales", "items", "gold", [20161031], version=3)
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions=[20161031], tag="gold"), frames[2])
    with pytest.raises(bs.InvalidArgument, match="at most one"):
        bs.load_dataframe("sales", "items", version=1, tag="gold")


def test_many_partitions_add_typed_keys(client):
    bs.create_table("sales", "daily", partition_keys={"ds": "date", "shop": "int64"})
    bs.store_dataframe(pd.DataFrame({"v": [1, 2]}), "sales", "daily", partitions=[dt.date(2016, 10, 31), 7])
    bs.store_dataframe(pd.DataFrame({"v": [3]}), "sales", "daily", partitions={"ds": "2016-11-01", "shop": 8})
    everything = bs.load_dataframe("sales", "daily").sort_values("v").reset_index(drop=True)
    assert list(everything.columns) == ["v", "ds", "shop"]
    assert list(everything["shop"]) == [7, 7, 8]
    assert everything["shop"].dtype == "int64"
    assert everything["ds"].tolist() == [dt.date(2016, 10, 31)] * 2 + [dt.date(2016, 11, 1)]
    one = bs.load_dataframe("sales", "daily", partitions={"shop": 8, "ds": "2016-11-01"})
    assert list(one.columns) == ["v"]


def test_partition_by_commits_all_or_nothing(client):
    frame = pd.DataFrame({"ds": ["a", "b", "a"], "v": [1, 2, 3]})
    bs.create_table("sales", "split", partition_keys=["ds"])
    infos = bs.store_dataframe(frame, "sales", "split", partition_by="ds")
    assert sorted((i.partition["ds"], i.rows, i.version) for i in infos) == [("a", 2, 1), ("b", 1, 1)]
    pdt.assert_frame_equal(
        bs.load_dataframe("sales", "split", partitions={"ds": "a"}).reset_index(drop=True),
        pd.DataFrame({"v": [1, 3]}),
    )
    with pytest.raises(bs.Conflict):
        bs.store_dataframe(frame, "sales", "split", partition_by="ds", expected_batch=infos[0].batch_id)
    assert all(len(bs.history("sales", "split", {"ds": p})) == 1 for p in ("a", "b"))
    # A partition named besides partition_by is refused, not ignored.
    with pytest.raises(bs.InvalidArgument, match="not both"):
        bs.store_dataframe(frame, "sales", "split", {"ds": "a"}, partition_by="ds")
    assert all(len(bs.history("sales", "split", {"ds": p})) == 1 for p in ("a", "b"))


def test_auto_create_with_dict_but_not_with_list(client):
    with pytest.raises(bs.NotFound, match="bare partition values cannot name its keys") as refused:
        bs.store_dataframe(pd.DataFrame({"v": [1]}), "fresh", "t1", partitions=["x"])
    assert refused.value.what == "table"
    assert refused.value.name == "fresh.t1"
    assert "fresh.t1" not in client.list_tables()
    info = bs.store_dataframe(pd.DataFrame({"v": [1]}), "fresh", "t2", partitions={"ds": dt.date(2016, 1, 2), "n": 5})
    assert info.partition == {"ds": "2016-01-02", "n": "5"}
    described = client.describe_table("fresh", "t2")
    assert described["partition_keys"] == [("ds", "date"), ("n", "int64")]


def test_errors_are_typed(client):
    bs.store_dataframe(pd.DataFrame({"v": [1]}), "sales", "items", partitions={"ds": "1"})
    current = bs.history("sales", "items", ["1"])["batch_id"].iloc[0]
    with pytest.raises(bs.NotFound) as missing:
        bs.load_dataframe("sales", "nope")
    assert (missing.value.what, missing.value.name) == ("table", "sales.nope")
    with pytest.raises(bs.NotFound) as missing:
        bs.load_dataframe("nowhere", "nope")
    assert (missing.value.what, missing.value.name) == ("namespace", "nowhere")
    with pytest.raises(bs.NotFound) as missing:
        bs.load_dataframe("sales", "items", {"ds": "2"})
    assert (missing.value.what, missing.value.name) == ("partition", "ds=2")
    with pytest.raises(bs.NotFound) as missing:
        bs.load_dataframe("sales", "items", {"ds": "1"}, version=7)
    assert (missing.value.what, missing.value.name) == ("version", "7")
    with pytest.raises(bs.NotFound) as missing:
        bs.load_dataframe("sales", "items", {"ds": "1"}, tag="no-such-tag")
    assert (missing.value.what, missing.value.name) == ("tag", "no-such-tag")
    with pytest.raises(bs.SchemaMismatch, match='"v"'):
        bs.store_dataframe(pd.DataFrame({"v": ["text"]}), "sales", "items", partitions={"ds": "1"})
    stale = "0" * 8 + "-0000-7000-8000-" + "0" * 12
    with pytest.raises(bs.Conflict, match=current) as conflict:
        bs.store_dataframe(pd.DataFrame({"v": [2]}), "sales", "items", partitions={"ds": "1"}, expected_batch=stale)
    assert conflict.value.current_batch_id == current
    with pytest.raises(bs.Conflict) as conflict:
        bs.store_dataframe(pd.DataFrame({"v": [2]}), "sales", "items", partitions={"ds": "3"}, expected_batch=stale)
    assert conflict.value.current_batch_id is None  # never written
    with pytest.raises(bs.InvalidArgument, match="lowercase"):
        bs.create_table("sales", "Bad-Name")
    with pytest.raises(bs.InvalidArgument, match="not a whole number"):
        bs.store_dataframe(pd.DataFrame({"v": [1]}), "sales", "items", partitions={"ds": 1.5})
    with pytest.raises(bs.InvalidArgument, match="date and time"):
        bs.store_dataframe(pd.DataFrame({"v": [1]}), "sales", "items", partitions={"ds": dt.datetime(2016, 1, 2, 3)})
    with pytest.raises(bs.InvalidArgument, match="missing"):
        bs.store_dataframe(pd.DataFrame({"v": [1]}), "sales", "items", partitions={"ds": None})
    # Every condition is also a bs.Error, so one except clause catches them all.
    with pytest.raises(bs.Error) as caught:
        bs.load_dataframe("sales", "nope")
    assert type(caught.value) is bs.NotFound
    assert len(bs.history("sales", "items", ["1"])) == 1


def test_unreachable_metastore_is_unavailable():
    with pytest.raises(bs.Unavailable, match="BATCHSTORE_ENDPOINT"):
        bs.Client("http://127.0.0.1:9")


def test_tablectl_reads_what_python_wrote(client, metastore, tmp_path):
    frame = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", None], "x": [0.5, None, 1.5]})
    bs.store_dataframe(frame, "sales", "items", partitions={"ds": "20161031"})
    out = tmp_path / "x.parquet"
    result = metastore.tablectl("read", "sales.items", "-p", "ds=20161031", "-o", str(out))
    assert result.returncode == 0, result.stderr
    import pyarrow.parquet as pq

    read = pq.read_table(out)
    assert read.column("id").to_pylist() == [1, 2, 3]
    assert read.column("name").to_pylist() == ["a", "b", None]
    assert read.column("x").to_pylist() == [0.5, None, 1.5]


def test_gil_is_released_while_storing(client):
    """Python keeps running *while* the native write runs (encoding, uploading and committing
    2,000,000 rows, all in Rust): the main thread's loop never stalls for long inside the
    native calls. With the GIL held across the native call, the loop would stall for nearly
    all of it (a build without the release measured 90-130 ms stalls per 100 ms call)."""
    import time

    big = pa.table({"a": pa.array(range(2_000_000)), "b": pa.array([1.5] * 2_000_000)})
    native = bs.connect(client.endpoint)._native
    windows: list[tuple[float, float]] = []
    done = threading.Event()

    def store():
        try:
            for i in range(3):
                started = time.perf_counter()
                native.write("sales", "items", [({"ds": f"big{i}"}, None, big)], "")
                windows.append((started, time.perf_counter()))
        finally:
            done.set()

    turns: list[float] = []
    worker = threading.Thread(target=store)
    worker.start()
    while not done.is_set():
        turns.append(time.perf_counter())
    worker.join()
    assert len(windows) == 3
    native_time = sum(b - a for a, b in windows)
    # Time the main loop stood still (gaps over 20 ms) while a native call ran.
    stalled = sum(
        max(0.0, min(later, b) - max(earlier, a))
        for earlier, later in zip(turns, turns[1:])
        if later - earlier > 0.02
        for a, b in windows
    )
    assert stalled < 0.25 * native_time, f"Python stood still {stalled:.3f} s of {native_time:.3f} s"


def test_lineage_and_unpartitioned_auto_create(client):
    first = bs.store_dataframe(pd.DataFrame({"v": [1]}), "lin", "raw")  # unpartitioned, created
    assert client.describe_table("lin", "raw")["partition_keys"] == []
    derived = bs.store_dataframe(pd.DataFrame({"v": [2]}), "lin", "clean", {"ds": 1}, inputs=[first.batch_id])
    assert client.lineage(derived.batch_id) == {"batch_id": derived.batch_id, "inputs": [first.batch_id], "outputs": []}
    assert client.lineage(first.batch_id)["outputs"] == [derived.batch_id]
    with pytest.raises(bs.NotFound):
        bs.store_dataframe(pd.DataFrame({"v": [3]}), "lin", "clean", {"ds": 2}, inputs=["0" * 8 + "-0000-7000-8000-" + "0" * 12])
    assert len(bs.partitions("lin", "clean")) == 1


def test_partition_columns_can_be_chosen(client):
    bs.store_dataframe(pd.DataFrame({"v": [1]}), "pc", "t", {"ds": 7})
    assert list(bs.load_dataframe("pc", "t", {"ds": 7}).columns) == ["v"]
    assert list(bs.load_dataframe("pc", "t", {"ds": 7}, partition_columns="always").columns) == ["v", "ds"]
    assert list(bs.load_dataframe("pc", "t", partition_columns="never").columns) == ["v"]
    with pytest.raises(bs.InvalidArgument, match="partition_columns"):
        bs.load_dataframe("pc", "t", partition_columns="sometimes")


def conversion_columns() -> dict[str, object]:
    """One column of each kind a pandas frame commonly holds (4 rows)."""
    return {
        "i64": [1, -2, 3, 4],
        "i8": pd.array([1, -2, 3, 4], dtype="int8"),
        "u32": pd.array([1, 2, 3, 4], dtype="uint32"),
        "f32": pd.array([0.5, float("nan"), -1.0, 2.0], dtype="float32"),
        "f64": [0.5, float("nan"), -1e300, 2.25],
        "b": [True, False, True, False],
        "s": ["a", "naïve", "数据", ""],
        "s_none": ["a", None, "c", ""],
        "obj_str": pd.Series(["a", "b", None, "d"], dtype=object),
        "obj_mixed": pd.Series([1, "b", 2.5, None], dtype=object),
        "obj_none": pd.Series([None, None, None, None], dtype=object),
        "bytes": pd.Series([b"a", b"", None, b"\x00"], dtype=object),
        "nullable": pd.array([1, None, 3, None], dtype="Int64"),
        "boolean": pd.array([True, None, False, True], dtype="boolean"),
        "arrow_str": pd.array(["x", None, "z", "w"], dtype="string[pyarrow]"),
        "ns": pd.to_datetime(["2016-10-31 12:00", "2016-11-01 00:00", None, "1970-01-01 00:00"]),
        "us": pd.to_datetime(["2016-10-31 12:00", "2016-11-01 00:00", None, "1970-01-01 00:00"]).astype("datetime64[us]"),
        "aware": pd.to_datetime(["2016-10-31 12:00", None, "2020-02-29 00:00", "2021-01-01 00:00"]).tz_localize("Europe/Paris"),
        "delta": pd.to_timedelta([1, 2, None, 4], unit="s"),
        "day": [dt.date(2016, 10, 31), dt.date(1970, 1, 1), None, dt.date(2100, 12, 31)],
        "price": [decimal.Decimal("1.10"), decimal.Decimal("-2.50"), None, decimal.Decimal("0.01")],
        "cat": pd.Categorical(["x", "y", "x", None], categories=["y", "x", "unused"]),
        "lists": pd.Series([[1, 2], [], None, [3]], dtype=object),
    }


def conversion_frames():
    """Frames of many layouts: each column kind alone and all together, under several kinds of
    index and column index, with attrs, and long enough for `from_pandas` to use threads."""
    columns = conversion_columns()
    layouts = [{name: values} for name, values in columns.items()]
    layouts.append(columns)
    layouts.append({name: columns[name] for name in ("i64", "f64", "s", "us")})
    for layout in layouts:
        frame = pd.DataFrame(layout)
        yield frame
        yield frame.iloc[1:3]  # a RangeIndex starting elsewhere
        yield frame.iloc[::2]  # a RangeIndex with a step
        named = frame.copy()
        named.index = pd.RangeIndex(10, 10 + 3 * len(frame), 3, name="row")
        yield named
        keyed = frame.copy()
        keyed.index = pd.Index([7, 3, 9, 1], name="k")
        yield keyed
        titled = frame.copy()
        titled.columns = pd.Index(list(frame.columns), name="fields")
        yield titled
        with_attrs = frame.copy()
        with_attrs.attrs = {"source": "test"}
        yield with_attrs
    yield pd.DataFrame({0: [1, 2], "a": [3, 4]})  # a non-str column name
    yield pd.DataFrame({"a": range(1000), "b": [0.5] * 1000})  # converted on threads
    yield pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([(1, "x"), (2, "y")]))
    yield pd.DataFrame(index=pd.RangeIndex(3))  # no columns


# pyarrow warns of the frame with a non-str column name (both conversions alike).
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_pandas_conversion_is_exactly_from_pandas():
    """The conversion of a frame of a layout seen before (schema reused) gives exactly what
    `Table.from_pandas` gives: the same columns, types and pandas metadata, byte for byte."""
    from batchstore import _frames

    _frames._LAYOUTS.clear()
    frames = list(conversion_frames())
    for round_ in ("first sight", "seen before"):
        for frame in frames:
            try:
                expected = pa.Table.from_pandas(frame, preserve_index=None)
            except (pa.ArrowException, TypeError, ValueError) as error:
                with pytest.raises(type(error)):
                    _frames._convert_pandas(frame)
                continue
            converted = _frames._convert_pandas(frame)
            assert converted.equals(expected, check_metadata=True), (round_, frame.dtypes, frame.index)
            assert converted.schema.metadata == expected.schema.metadata
    # The fast conversion was taken: frames of simple layouts were remembered.
    assert len(_frames._LAYOUTS) > 10


def batch_states(tmp_path, table: str) -> dict[str, int]:
    """How many of a table's batches the catalog holds in each state."""
    import sqlite3

    with sqlite3.connect(f"file:{tmp_path / 'catalog.db'}?mode=ro", uri=True) as catalog:
        rows = catalog.execute(
            "SELECT state, count(*) FROM batches WHERE table_id IN "
            "(SELECT id FROM tables WHERE name = ?) GROUP BY state",
            (table,),
        )
        return dict(rows.fetchall())


@pytest.mark.parametrize("metastore", ["local"], indirect=True)
def test_a_frame_that_fails_to_convert_leaves_nothing_behind(client, tmp_path):
    """A pandas frame's batch begins while the frame converts: when the conversion fails, the
    batch is aborted at once, no table is created and the partition is untouched."""
    unconvertible = pd.DataFrame({"v": pd.Series([1, "a", 2.5], dtype=object)})
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        bs.store_dataframe(unconvertible, "fresh", "never", partitions={"ds": "1"})
    assert "fresh.never" not in client.list_tables()
    with pytest.raises(bs.NotFound):
        client.describe_table("fresh", "never")

    good = pd.DataFrame({"v": [1, 2, 3]})
    first = bs.store_dataframe(good, "sales", "items", partitions={"ds": "1"})
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        bs.store_dataframe(unconvertible, "sales", "items", partitions={"ds": "1"})
    assert batch_states(tmp_path, "items") == {"committed": 1, "aborted": 1}
    assert list(bs.history("sales", "items", {"ds": "1"})["batch_id"]) == [first.batch_id]
    pdt.assert_frame_equal(bs.load_dataframe("sales", "items", partitions={"ds": "1"}), good)
    # The next write of the partition begins and commits as usual.
    second = bs.store_dataframe(good.iloc[1:], "sales", "items", partitions={"ds": "1"})
    assert second.version == 2
    assert batch_states(tmp_path, "items") == {"committed": 2, "aborted": 1}
