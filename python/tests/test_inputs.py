"""`tablectl write` of Parquet files from another writer (pyarrow): every codec reads back
exactly, and a file that does not decode to the rows its footer declares is refused, never
stored short."""

from __future__ import annotations

import struct

import pandas.testing as pdt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import batchstore as bs

# pyarrow's "lz4" is the LZ4_RAW codec. pyarrow cannot write the older Hadoop-framed LZ4
# codec at all ("Unsupported compression"), so that one is not covered here.
CODECS = ["snappy", "gzip", "brotli", "lz4", "zstd", "none"]


def sample_table() -> pa.Table:
    """Built in pyarrow (no pandas metadata): the file is what any other Parquet writer makes."""
    return pa.table(
        {
            "i": pa.array([1, -2, 3], pa.int64()),
            "f": pa.array([0.5, float("nan"), -1e300], pa.float64()),
            "s": pa.array(["a", "naïve", ""], pa.string()),
            "nullable": pa.array([1, None, 3], pa.int32()),
            "t": pa.array([1477915200000000, None, 1000000], pa.timestamp("us")),
        }
    )


def create_table(metastore, table: str) -> None:
    for args in (("namespace", "create", "sales"), ("table", "create", table, "--partition-key", "ds:string")):
        done = metastore.tablectl(*args)
        assert done.returncode == 0, done.stderr


def test_every_pyarrow_codec_reads_back_exactly(client, metastore, tmp_path):
    create_table(metastore, "sales.codecs")
    table = sample_table()
    for codec in CODECS:
        path = tmp_path / f"{codec}.parquet"
        pq.write_table(table, path, compression=codec)
        written = pq.ParquetFile(path).metadata.row_group(0).column(0).compression
        assert written == ("UNCOMPRESSED" if codec == "none" else codec.upper())
        done = metastore.tablectl("write", "sales.codecs", "-p", f"ds={codec}", str(path))
        assert done.returncode == 0, f"{codec}: {done.stderr}"
    expected = table.to_pandas()
    for codec in CODECS:
        loaded = bs.load_dataframe("sales", "codecs", partitions={"ds": codec})
        pdt.assert_frame_equal(loaded, expected, obj=f"partition ds={codec}")


def footer_claiming_one_more_row(path) -> None:
    """Rewrites the file's footer so that FileMetaData.num_rows is one more than its data holds.

    The footer is Thrift compact: field 1 (version, i32), field 2 (schema, a list of structs),
    then field 3 (num_rows, i64 zigzag varint). Its row groups still declare their true counts,
    so the data decodes fine, only to fewer rows than the footer promises."""
    data = bytearray(path.read_bytes())
    (length,) = struct.unpack("<i", data[-8:-4])
    pos = len(data) - 8 - length

    def varint() -> int:
        nonlocal pos
        value, shift = 0, 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    def skip(kind: int) -> None:
        nonlocal pos
        if kind in (1, 2):  # booleans live in the field header
            return
        if kind == 3:
            pos += 1
        elif kind in (4, 5, 6):
            varint()
        elif kind == 7:
            pos += 8
        elif kind == 8:
            size = varint()
            pos += size
        elif kind in (9, 10):
            header = data[pos]
            pos += 1
            count = header >> 4 if header >> 4 != 15 else varint()
            for _ in range(count):
                if header & 15 in (1, 2):
                    pos += 1
                else:
                    skip(header & 15)
        elif kind == 12:
            while data[pos] != 0:
                header = data[pos]
                pos += 1
                if header >> 4 == 0:
                    varint()  # a long-form field id
                skip(header & 15)
            pos += 1
        else:
            raise AssertionError(f"unexpected Thrift type {kind}")

    assert data[pos] == 0x15, "FileMetaData should start with field 1 (i32)"
    pos += 1
    varint()
    assert data[pos] == 0x19, "field 2 (list) should follow"
    pos += 1
    skip(9)
    assert data[pos] == 0x16, "field 3 (i64 num_rows) should follow"
    pos += 1
    start = pos
    rows = varint() >> 1
    patched = (rows + 1) << 1
    assert patched < 0x80 and pos == start + 1, "keep the test table under 64 rows"
    data[start] = patched
    path.write_bytes(bytes(data))


def test_file_decoding_to_fewer_rows_than_its_footer_is_refused(client, metastore, tmp_path):
    create_table(metastore, "sales.liars")
    path = tmp_path / "liar.parquet"
    pq.write_table(pa.table({"v": [1, 2, 3, 4]}), path)
    footer_claiming_one_more_row(path)
    assert pq.ParquetFile(path).metadata.num_rows == 5
    done = metastore.tablectl("write", "sales.liars", "-p", "ds=1", str(path))
    assert done.returncode != 0
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert error and "rows" in error[0], done.stderr
    with pytest.raises(bs.NotFound):
        bs.history("sales", "liars", {"ds": "1"})
    history = metastore.tablectl("history", "sales.liars", "-p", "ds=1")
    assert history.returncode != 0 and "never been written" in history.stderr


def test_non_compliant_nested_list_keeps_all_its_rows(client, metastore, tmp_path):
    """pyarrow's older list layout (`repeated group list { item }`) reads back with every row
    its footer declares, empty and null lists included."""
    create_table(metastore, "sales.lists")
    table = pa.table({"l": pa.array([[1, 2], [], None, [3]], pa.list_(pa.int32())), "i": [1, 2, 3, 4]})
    path = tmp_path / "legacy.parquet"
    pq.write_table(table, path, use_compliant_nested_type=False)
    assert pq.ParquetFile(path).schema.column(0).path == "l.list.item"
    done = metastore.tablectl("write", "sales.lists", "-p", "ds=1", str(path))
    assert done.returncode == 0, done.stderr
    loaded = bs.load_dataframe("sales", "lists", partitions={"ds": "1"}, as_="arrow")
    assert loaded.num_rows == pq.ParquetFile(path).metadata.num_rows
    assert loaded.column("l").to_pylist() == [[1, 2], [], None, [3]]
    assert loaded.column("i").to_pylist() == [1, 2, 3, 4]
