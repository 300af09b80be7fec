"""Query engines over exact, pinned selections: a manifest's files as a ``pyarrow`` dataset.

The metastore resolves the selection (and the partition-key part of a filter); the files are
then read by pyarrow's dataset scanner, so DuckDB, Polars, Dask and pyarrow itself stream them
with projection and predicate pushdown and no copy. The dataset holds the manifest, whose read
lease keeps garbage collection away from the files for as long as the dataset lives.
"""

from __future__ import annotations

import datetime as _dt
import json
import weakref
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

_OPS = {"=", "==", "!=", "<>", "<", "<=", ">", ">=", "in"}


def split_filter(filter: Any, keys: list[str]) -> tuple[list[tuple], Any]:
    """Splits a filter into conditions on partition keys (for the metastore) and the rest (a
    pyarrow expression for the scan, or None).

    ``filter`` is a ``pyarrow.compute.Expression`` (applied by the scan, which prunes files by
    their partition values without opening them), or a list of ``(column, op, value)`` tuples
    that must all hold (op one of ``= == != < <= > >= in``, plus ``not in`` for data columns),
    the form ``pyarrow.parquet.read_table(filters=...)`` takes.
    """
    if filter is None:
        return [], None
    if isinstance(filter, pc.Expression):
        return [], filter
    if not isinstance(filter, (list, tuple)) or not all(
        isinstance(t, (list, tuple)) and len(t) == 3 for t in filter
    ):
        raise TypeError(
            "filter is a pyarrow.compute.Expression or a list of (column, op, value) tuples, "
            f"not {type(filter).__name__}"
        )
    on_keys, rest = [], []
    for column, op, value in filter:
        if column in keys and str(op).lower() in _OPS:
            on_keys.append((column, str(op).lower(), value))
        else:
            rest.append((column, op, value))
    if not rest:
        return on_keys, None
    import pyarrow.parquet as pq

    return on_keys, pq.filters_to_expression(rest)


def _filesystem(storage: dict) -> pafs.FileSystem:
    if storage["kind"] == "local":
        return pafs.LocalFileSystem()
    options: dict[str, Any] = {}
    endpoint = storage.get("endpoint")
    if endpoint:
        scheme, _, host = endpoint.rpartition("://")
        options["endpoint_override"] = host.split("/", 1)[0]
        options["scheme"] = scheme.lower() or "https"
    if storage.get("region"):
        options["region"] = storage["region"]
    return pafs.S3FileSystem(**options)


def _key_scalar(value: str, key_type: str, arrow_type: pa.DataType) -> pa.Scalar:
    if key_type == "int64":
        return pa.scalar(int(value), arrow_type)
    if key_type == "date":
        return pa.scalar(_dt.date.fromisoformat(value), arrow_type)
    return pa.scalar(value, arrow_type)


def dataset(native_manifest: Any, rest: Any = None) -> ds.Dataset:
    """The dataset over a native manifest's files, with partition keys as columns."""
    manifest = json.loads(native_manifest.to_json())
    schema = native_manifest.schema()
    key_types = {k["name"]: k["type"] for k in manifest["partition_keys"]}
    paths, partitions = [], []
    for f in manifest["files"]:
        paths.append(f["path"])
        condition = pc.scalar(True)
        for key, value in f["partition"]:
            scalar = _key_scalar(value, key_types[key], schema.field(key).type)
            condition = condition & (pc.field(key) == scalar)
        partitions.append(condition)
    result = ds.FileSystemDataset.from_paths(
        paths,
        schema=schema,
        format=ds.ParquetFileFormat(),
        filesystem=_filesystem(manifest["storage"]),
        partitions=partitions,
    )
    if rest is not None:
        result = result.filter(rest)
    # The lease lives as long as the dataset: released when it is garbage collected. (A
    # scanner or batch iterator taken from it does not keep it alive: keep the dataset.)
    weakref.finalize(result, native_manifest.release)
    return result
