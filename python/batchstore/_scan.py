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

# Up to this many files, DuckDB picks each file's key values with a CASE on its name (cheaper
# than a join); beyond, it joins to a table of them.
CASE_FILES = 64


def split_filter(filter: Any, keys: list[str], as_tuples: bool = False) -> tuple[list[tuple], Any]:
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
    if as_tuples:
        return on_keys, rest
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


def _hold(obj: Any, native_manifest: Any) -> Any:
    """Ties the manifest's read lease to ``obj``: released when ``obj`` is garbage collected."""
    weakref.finalize(obj, native_manifest.release)
    return obj


def engine_frame(engine: str, native_manifest: Any, rest: list[tuple], connection: Any = None) -> Any:
    """The selection as a DuckDB relation or a Polars LazyFrame that reads the files natively
    (local disk; on S3 through the pyarrow dataset), the keys and the read schema as in
    :func:`dataset`, ``rest`` (``(column, op, value)`` tuples) applied as the engine's filter."""
    manifest = json.loads(native_manifest.to_json())
    schema = native_manifest.schema()
    local = manifest["storage"]["kind"] == "local"
    keys = [k["name"] for k in manifest["partition_keys"]]
    key_types = {k["name"]: k["type"] for k in manifest["partition_keys"]}
    files = manifest["files"]
    if engine == "duckdb":
        import duckdb

        con = connection if connection is not None else duckdb.default_connection()
        names: list[str] = []
        if local and files:
            relation, names = _duckdb_native(con, schema, keys, key_types, files)
        else:
            relation = con.from_arrow(dataset(native_manifest, hold=False))
        for column, op, value in rest:
            relation = relation.filter(_duckdb_condition(duckdb, column, op, value))
        weakref.finalize(relation, _duckdb_release, con, names, native_manifest)
        return relation
    import polars as pl

    if local and files:
        frame = _polars_native(pl, schema, keys, key_types, files)
    else:
        frame = pl.scan_pyarrow_dataset(dataset(native_manifest, hold=False))
    for column, op, value in rest:
        frame = frame.filter(_polars_condition(pl, column, op, value))
    return _hold(frame, native_manifest)


def _duckdb_release(con: Any, names: list[str], native_manifest: Any) -> None:
    native_manifest.release()
    for name in names:
        try:
            con.unregister(name)
        except Exception:  # noqa: BLE001 - the connection may be closed already
            pass


def _duckdb_native(
    con: Any, schema: pa.Schema, keys: list[str], key_types: dict, files: list[dict]
) -> tuple[Any, list[str]]:
    """read_parquet over the files (by column name), joined to each file's key values, and
    united by name with an empty table of the read schema: its column order and types, and
    nulls for a column no file has."""
    import uuid

    name = f"__batchstore_{uuid.uuid4().hex}"
    file_column = "__batchstore_file"
    ident = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
    text = lambda v: "'" + v.replace("'", "''") + "'"  # noqa: E731
    quoted = ", ".join(text(f["path"]) for f in files)
    columns = ", ".join(ident(f.name) for f in schema)
    source = (
        f"read_parquet([{quoted}], union_by_name = true, hive_partitioning = false, "
        f"filename = '{file_column}') f"
    )
    con.register(f"{name}_schema", schema.empty_table())
    names = [f"{name}_schema"]
    if len(files) <= CASE_FILES:
        # Few files: each key's value picked by file name, in the scan itself (no join).
        def literal(key: str, value: str) -> str:
            if key_types[key] == "int64":
                return f"{int(value)}::BIGINT"
            if key_types[key] == "date":
                return f"DATE {text(value)}"
            return text(value)

        keys_sql = "".join(
            ", CASE f." + file_column + " "
            + " ".join(f"WHEN {text(f['path'])} THEN {literal(k, dict(f['partition'])[k])}" for f in files)
            + f" END AS {ident(k)}"
            for k in keys
        )
        data = f"SELECT f.* EXCLUDE ({file_column}){keys_sql} FROM {source}"
    else:
        # Many files: joined to a table of each file's key values.
        mapping = {file_column: pa.array([f["path"] for f in files], pa.string())}
        for key in keys:
            values = [dict(f["partition"])[key] for f in files]
            mapping[key] = pa.array(
                [_key_scalar(v, key_types[key], schema.field(key).type).as_py() for v in values],
                schema.field(key).type,
            )
        con.register(f"{name}_files", pa.table(mapping))
        names.append(f"{name}_files")
        key_columns = "".join(f", m.{ident(k)}" for k in keys)
        data = (
            f"SELECT f.* EXCLUDE ({file_column}){key_columns} FROM {source} "
            f"JOIN {name}_files m USING ({file_column})"
        )
    relation = con.sql(f"SELECT {columns} FROM (SELECT * FROM {name}_schema UNION ALL BY NAME {data})")
    return relation, names


def _polars_native(pl: Any, schema: pa.Schema, keys: list[str], key_types: dict, files: list[dict]) -> Any:
    """One scan per partition with its key values as literals, concatenated by column name
    after an empty frame of the read schema (its order and types; nulls where a file lacks a
    column)."""
    frame_schema = pl.from_arrow(schema.empty_table()).schema
    by_partition: dict[tuple, list[str]] = {}
    for f in files:
        by_partition.setdefault(tuple(map(tuple, f["partition"])), []).append(f["path"])
    scans = []
    for partition, paths in by_partition.items():
        values = dict(partition)
        literals = [
            pl.lit(_key_scalar(values[k], key_types[k], schema.field(k).type).as_py(), frame_schema[k]).alias(k)
            for k in keys
        ]
        scans.append(pl.scan_parquet(paths).with_columns(literals))
    combined = pl.concat([pl.LazyFrame(schema=frame_schema), *scans], how="diagonal_relaxed")
    return combined.select(list(frame_schema.keys())).cast(frame_schema)


def _duckdb_condition(duckdb: Any, column: str, op: str, value: Any) -> Any:
    left = duckdb.ColumnExpression(column)
    op = str(op).lower()
    if op in ("in", "not in"):
        condition = left.isin(*[duckdb.ConstantExpression(v) for v in value])
        return condition if op == "in" else ~condition
    right = duckdb.ConstantExpression(value)
    return _compare(op, left, right)


def _polars_condition(pl: Any, column: str, op: str, value: Any) -> Any:
    left = pl.col(column)
    op = str(op).lower()
    if op in ("in", "not in"):
        condition = left.is_in(list(value))
        return condition if op == "in" else ~condition
    return _compare(op, left, pl.lit(value))


def _compare(op: str, left: Any, right: Any) -> Any:
    if op in ("=", "=="):
        return left == right
    if op in ("!=", "<>"):
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    raise ValueError(f"unknown comparison {op!r}; use =, !=, <, <=, >, >=, in or not in")


def dataset(native_manifest: Any, rest: Any = None, *, hold: bool = True) -> ds.Dataset:
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
    return _hold(result, native_manifest) if hold else result
