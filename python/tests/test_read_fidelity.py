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
