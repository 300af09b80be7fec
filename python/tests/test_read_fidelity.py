"""Reads across partitions written with different column orders, nullability and dictionary
widths: every batch is matched to the table's read schema by column name, never by position,
and nothing is silently turned into a null."""

from __future__ import annotations

import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pytest

import batchstore as bs


def by_ds(frame: pd.DataFrame, *sort: str) -> pd.DataFrame:
    return frame.sort_values(["ds", *sort]).reset_index(drop=True)


def test_columns_are_matched_by_name_not_position(client):
    bs.store_dataframe(pa.table({"a": [1, 2], "b": ["x", "y"]}), "sales", "order", partitions={"ds": "1"})
    bs.store_dataframe(pa.table({"b": ["z", "w"], "a": [3, 4]}), "sales", "order", partitions={"ds": "2"})
    whole = by_ds(bs.load_dataframe("sales", "order"), "a")
    expected = pd.DataFrame({"a": [1, 2, 3, 4], "b": ["x", "y", "z", "w"], "ds": ["1", "1", "2", "2"]})
    pdt.assert_frame_equal(whole[["a", "b", "ds"]], expected, check_dtype=False)
    # A projection is matched by name too, in both partitions.
    only_a = by_ds(bs.load_dataframe("sales", "order", columns=["a"]), "a")
    assert list(only_a["a"]) == [1, 2, 3, 4]
    only_b = bs.load_dataframe("sales", "order", partitions=["2"], columns=["b"])
    assert list(only_b["b"]) == ["z", "w"]


def test_dictionary_index_widths_differ_between_partitions(client):
    few = pd.DataFrame({"c": pd.Categorical(["a", "b", "c"])})  # int8 codes
    many_values = [f"v{i}" for i in range(300)]
    many = pd.DataFrame({"c": pd.Categorical(many_values)})  # int16 codes
    bs.store_dataframe(few, "sales", "cats", partitions={"ds": "1"})
    bs.store_dataframe(many, "sales", "cats", partitions={"ds": "2"})
    for order in ([["1"], ["2"]], [["2"], ["1"]], None):
        frame = bs.load_dataframe("sales", "cats", partitions=order)
        assert len(frame) == 303
        assert sorted(frame["c"].astype(str)) == sorted(["a", "b", "c", *many_values])
    table = bs.load_dataframe("sales", "cats", as_="arrow")
    assert pa.types.is_dictionary(table.schema.field("c").type)
    # The first partition alone still reads exactly.
    alone = bs.load_dataframe("sales", "cats", partitions=["1"])
    assert list(alone["c"].astype(str)) == ["a", "b", "c"]


def test_nullability_differs_between_partitions(client):
    nullable = pa.table({"v": pa.array([1, None], pa.int64())})
    not_null = pa.Table.from_arrays(
        [pa.array([5, 6], pa.int64())], schema=pa.schema([pa.field("v", pa.int64(), nullable=False)])
    )
    bs.store_dataframe(nullable, "sales", "nulls", partitions={"ds": "0"})
    bs.store_dataframe(not_null, "sales", "nulls", partitions={"ds": "1"})
    for order in ([{"ds": "1"}, {"ds": "0"}], [{"ds": "0"}, {"ds": "1"}], None):
        table = bs.load_dataframe("sales", "nulls", partitions=order, as_="arrow")
        assert table.schema.field("v").nullable
        assert sorted(table.column("v").to_pylist(), key=lambda v: (v is None, v)) == [1, 5, 6, None]


def test_retried_partition_in_one_read_is_read_once(client):
    bs.store_dataframe(pa.table({"v": [1, 2]}), "sales", "twice", partitions={"ds": "1"})
    frame = bs.load_dataframe("sales", "twice", partitions=[["1"], ["1"], {"ds": "1"}])
    assert list(frame["v"]) == [1, 2]


@pytest.mark.parametrize("metastore", ["local"], indirect=True)
def test_a_new_partition_compare_and_swap_accepts_the_begin_reply(client, metastore):
    info = bs.store_dataframe(pa.table({"v": [1]}), "sales", "cas", partitions={"ds": "1"}, expected_batch="-")
    assert info.version == 1
    with pytest.raises(bs.Conflict):
        bs.store_dataframe(pa.table({"v": [2]}), "sales", "cas", partitions={"ds": "1"}, expected_batch="-")


# -- what each writer recorded about its frame comes back with its own data ------------------

BIG = 2**53 + 1  # not a float64: a conversion through float changes it

# (first frame, later frame): the later one differs from the first in pandas dtypes or index.
LATER_FRAMES = {
    "nullable integers": (
        pd.DataFrame({"x": pd.array([1, 2], dtype="int64")}),
        pd.DataFrame({"x": pd.array([BIG, None], dtype="Int64")}),
    ),
    "category order": (
        pd.DataFrame({"c": pd.Categorical(["x", "y"])}),
        pd.DataFrame({"c": pd.Categorical(["x", "y"], categories=["y", "x", "z"], ordered=True)}),
    ),
    "range index": (
        pd.DataFrame({"a": [1, 2]}),
        pd.DataFrame({"a": [3, 4, 5]}, index=pd.RangeIndex(100, 103)),
    ),
    "filtered rows": (
        pd.DataFrame({"x": [1, -2, 3]}),
        pd.DataFrame({"x": [1, -2, 3]}).query("x > 0"),
    ),
}


@pytest.mark.parametrize("case", sorted(LATER_FRAMES))
@pytest.mark.parametrize("later_as", ["version", "partition"])
def test_every_write_loads_as_it_was_stored_not_as_the_first(client, case, later_as):
    first, later = LATER_FRAMES[case]
    bs.store_dataframe(first, "m", "t", partitions={"ds": "1"})
    where = {"ds": "1"} if later_as == "version" else {"ds": "2"}
    bs.store_dataframe(later, "m", "t", partitions=where)
    pdt.assert_frame_equal(bs.load_dataframe("m", "t", partitions=where), later)
    pinned = 1 if later_as == "version" else None
    pdt.assert_frame_equal(bs.load_dataframe("m", "t", partitions={"ds": "1"}, version=pinned), first)
    # Partitions whose writers agree load with what they recorded; a read spanning writers
    # that disagree still loads every value exactly.
    if later_as == "partition":
        both = bs.load_dataframe("m", "t", as_="arrow").sort_by("ds")
        column = first.columns[0]
        values = [*first[column], *later[column]]
        assert both.column(column).to_pylist() == [None if v is pd.NA else v for v in values]


def test_pandas_metadata_that_cannot_be_applied_loads_the_data_with_a_warning(client):
    table = pa.table({"x": [1, 2, 3]}).replace_schema_metadata({b"pandas": b"{not json"})
    bs.store_dataframe(table, "m", "foreign", partitions={"ds": "1"})
    with pytest.warns(UserWarning, match="pandas metadata could not be applied"):
        loaded = bs.load_dataframe("m", "foreign", partitions={"ds": "1"})
    assert loaded["x"].tolist() == [1, 2, 3]
    # A later, ordinary pandas write of the same partition loads without any warning.
    bs.store_dataframe(pd.DataFrame({"x": [4]}), "m", "foreign", partitions={"ds": "1"})
    pdt.assert_frame_equal(bs.load_dataframe("m", "foreign", partitions={"ds": "1"}), pd.DataFrame({"x": [4]}))


def test_categories_recorded_for_a_column_that_is_no_longer_categorical_are_ignored(client):
    # partition_by a categorical column: the key comes back as a plain column.
    frame = pd.DataFrame({"region": pd.Categorical(["eu", "us", "eu"]), "v": pd.Categorical(["a", "b", "c"])})
    bs.store_dataframe(frame, "m", "by_region", partition_by="region")
    whole = bs.load_dataframe("m", "by_region").sort_values("v").reset_index(drop=True)
    assert whole["region"].tolist() == ["eu", "us", "eu"]
    assert isinstance(whole["v"].dtype, pd.CategoricalDtype)
    assert whole["v"].astype(str).tolist() == ["a", "b", "c"]
    both = bs.load_dataframe("m", "by_region", partitions=[["eu"], ["us"]])
    assert len(both) == 3
    # An Arrow load carries the recorded categories; the column cast to strings and stored
    # again is a string column, not a categorical one.
    arrow = bs.load_dataframe("m", "by_region", partitions={"region": "eu"}, as_="arrow")
    recast = arrow.set_column(arrow.schema.get_field_index("v"), "v", arrow.column("v").cast(pa.string()))
    bs.store_dataframe(recast, "m", "recast", partitions={"ds": "1"})
    loaded = bs.load_dataframe("m", "recast", partitions={"ds": "1"})
    assert loaded["v"].tolist() == ["a", "c"]


def test_union_columns_are_refused_with_a_clear_error(client):
    union = pa.UnionArray.from_dense(
        pa.array([0, 1], pa.int8()), pa.array([0, 0], pa.int32()), [pa.array([1]), pa.array(["a"])]
    )
    in_struct = pa.StructArray.from_arrays([union], names=["inner"])
    in_list = pa.ListArray.from_arrays(pa.array([0, 1, 2], pa.int32()), union)
    bs.store_dataframe(pa.table({"k": [0]}), "m", "unions", partitions={"ds": "0"})
    for column in (union, in_struct, in_list):
        with pytest.raises(bs.InvalidArgument, match="union"):
            bs.store_dataframe(pa.table({"u": column, "k": [1, 2]}), "m", "unions", partitions={"ds": "1"})
    assert len(bs.partitions("m", "unions")) == 1


def test_racing_first_writes_of_other_key_types_settle_as_if_in_turn(client):
    import threading

    for attempt in range(6):
        table = f"race{attempt}"
        outcomes: dict = {}
        barrier = threading.Barrier(2)

        def write(value):
            barrier.wait()
            try:
                bs.store_dataframe(pd.DataFrame({"a": [0]}), "m", table, partitions={"k": value})
                outcomes[value] = "ok"
            except bs.Error as error:
                outcomes[value] = type(error).__name__

        threads = [threading.Thread(target=write, args=(value,)) for value in (1, "s1")]
        [t.start() for t in threads]
        [t.join() for t in threads]
        key_type = client.describe_table("m", table)["partition_keys"][0][1]
        # A string key takes 1 as "1"; an int64 key refuses "s1"; nothing else may happen.
        expected = {1: "ok", "s1": "ok" if key_type == "string" else "InvalidArgument"}
        assert outcomes == expected, (key_type, outcomes)


def test_a_file_changed_after_its_commit_is_refused_on_read(client, metastore):
    import io

    import pyarrow.parquet as pq

    bs.store_dataframe(pd.DataFrame({"a": list(range(100))}), "m", "swap", partitions={"ds": "1"})
    (committed,) = bs.manifest("m", "swap", partitions={"ds": "1"})["files"]
    for replacement in (pa.table({"a": [7, 7, 7]}), pa.table({"a": list(range(100, 200))})):
        data = io.BytesIO()
        pq.write_table(replacement, data)
        _replace(metastore.storage, committed, data.getvalue())
        with pytest.raises(bs.DataError, match="changed after the commit"):
            bs.load_dataframe("m", "swap", partitions={"ds": "1"})


def _replace(storage: str, file: dict, data: bytes) -> None:
    """Overwrites a committed file behind the catalog's back."""
    if storage == "local":
        with open(file["path"], "wb") as out:
            out.write(data)
        return
    import os

    import boto3

    bucket, key = file["uri"].removeprefix("s3://").split("/", 1)
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=key, Body=data)
