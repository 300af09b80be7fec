"""Data frames in and out: pandas, polars and pyarrow to Arrow, and back.

Data crosses into Rust through the Arrow C stream interface without copies. pandas needs one
extra step each way: ``pyarrow.Table.from_pandas`` (index and dtypes recorded in the schema's
pandas metadata) and ``to_pandas``. Parquet rebuilds dictionaries from the values present, so
the categories of categorical columns (with their order, and unused ones) are recorded in the
schema metadata and restored on load.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_CATEGORIES_KEY = b"batchstore.categories"


def is_pandas(data: Any) -> bool:
    """True for a pandas object: its conversion to Arrow takes Python work of its own."""
    return type(data).__module__.split(".")[0] == "pandas"


def to_arrow(data: Any) -> Any:
    """An object exporting an Arrow C stream for ``data``."""
    if isinstance(data, (pa.Table, pa.RecordBatchReader)):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if is_pandas(data):
        return _from_pandas(data)
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if type(data).__module__.split(".")[0] == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    raise TypeError(
        f"cannot store a {type(data).__module__}.{type(data).__name__}; pass a pandas or polars "
        "DataFrame, a pyarrow Table or RecordBatchReader, or any object with __arrow_c_stream__"
    )


def _from_pandas(df: Any) -> pa.Table:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"expected a pandas DataFrame, got {type(df).__name__}")
    table = _convert_pandas(df)
    # Categoricals become dictionary columns: without one there is nothing to record, and
    # `df.dtypes` (a Series) is not built at all.
    if not any(pa.types.is_dictionary(field.type) for field in table.schema):
        return table
    categories = {}
    # `df.dtypes` once: `df[name]` builds a Series per column, which costs more than a tiny
    # frame's whole conversion.
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.CategoricalDtype):
            values = dtype.categories.tolist()
            try:
                json.dumps(values)
            except TypeError:
                continue
            categories[str(name)] = {"categories": values, "ordered": bool(dtype.ordered)}
    if categories:
        metadata = dict(table.schema.metadata or {})
        metadata[_CATEGORIES_KEY] = json.dumps(categories).encode()
        table = table.replace_schema_metadata(metadata)
    return table


# A tiny frame's `Table.from_pandas` is mostly Python work that depends only on the frame's
# layout (names, dtypes, Arrow types, index and column-index kind), not on its values: the
# pandas metadata it records. Frames of a layout seen before convert each column exactly as
# `from_pandas` does (`pa.array(column, from_pandas=True)`) and reuse that layout's schema;
# only the RangeIndex descriptor, which opens the metadata, is written anew. Anything else
# (another index, categoricals, attrs, non-str names, frames long enough for `from_pandas`
# to convert columns on threads) takes `from_pandas` itself.
_LAYOUTS: dict[tuple, tuple[pa.Schema, str]] = {}
_MAX_LAYOUTS = 64
_METADATA_OPENING = '{"index_columns": ['


def _layout(df: Any) -> tuple[tuple, list] | None:
    """The layout key of a frame the fast conversion may take, with its converted columns."""
    import pandas as pd

    index, columns = df.index, df.columns
    count = len(columns)
    if (
        type(index) is not pd.RangeIndex
        or type(columns) is not pd.Index
        or df.attrs
        or count == 0
        or (len(df) > count * 100 and count > 1)
        or not (index.name is None or isinstance(index.name, str))
        or not columns.is_unique
    ):
        return None
    key: list = [columns.dtype, columns.name, index.name]
    arrays = []
    for name, column in df.items():
        dtype = column.dtype
        if not isinstance(name, str) or isinstance(dtype, (pd.CategoricalDtype, pd.SparseDtype)):
            return None
        try:
            array = pa.array(column, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            return None  # `from_pandas` raises its own, clearer error
        arrays.append(array)
        key += (name, dtype, array.type)
    return tuple(key), arrays


def _range_descriptor(index: Any) -> str:
    return json.dumps(
        {"kind": "range", "name": index.name, "start": index.start, "stop": index.stop, "step": index.step}
    )


def _convert_pandas(df: Any) -> pa.Table:
    """`pa.Table.from_pandas(df, preserve_index=None)`, from the layout's schema when known."""
    layout = _layout(df)
    if layout is None:
        return pa.Table.from_pandas(df, preserve_index=None)
    key, arrays = layout
    opening = _METADATA_OPENING + _range_descriptor(df.index)
    try:
        known = _LAYOUTS.get(key)
    except TypeError:  # an unhashable extension dtype
        return pa.Table.from_pandas(df, preserve_index=None)
    if known is not None:
        schema, rest = known
        metadata = {b"pandas": (opening + rest).encode()}
        return pa.Table.from_arrays(arrays, schema=schema.with_metadata(metadata))
    table = pa.Table.from_pandas(df, preserve_index=None)
    recorded = (table.schema.metadata or {}).get(b"pandas", b"").decode()
    if recorded.startswith(opening) and [a.type for a in arrays] == table.schema.types:
        if len(_LAYOUTS) >= _MAX_LAYOUTS:
            del _LAYOUTS[next(iter(_LAYOUTS))]
        _LAYOUTS[key] = (table.schema.remove_metadata(), recorded[len(opening):])
    return table


def from_arrow(table: pa.Table, as_: str) -> Any:
    """Convert a loaded table to the requested kind of frame."""
    if as_ == "arrow":
        return table
    if as_ == "polars":
        import polars as pl

        return pl.from_arrow(table)
    if as_ == "pandas":
        import pandas as pd

        df = _to_pandas(table)
        for name, spec in _recorded_categories(table).items():
            if name in df.columns and isinstance(df[name].dtype, pd.CategoricalDtype):
                # The recorded categories (order, unused ones) first; categories of other
                # partitions' data after them, so that no value ever becomes missing.
                recorded = list(spec["categories"])
                known = set(recorded)
                more = [c for c in df[name].cat.categories if c not in known]
                df[name] = df[name].cat.set_categories(recorded + more, ordered=bool(spec.get("ordered")))
        return df
    raise ValueError(f"as_ must be 'pandas', 'arrow' or 'polars', not {as_!r}")


def _to_pandas(table: pa.Table) -> Any:
    """``table.to_pandas()``; pandas metadata that cannot be applied (another writer's, broken)
    is set aside with a warning rather than making the data unloadable."""
    try:
        return table.to_pandas()
    except Exception as error:
        metadata = dict(table.schema.metadata or {})
        if metadata.pop(b"pandas", None) is None:
            raise
        warnings.warn(
            f"the stored pandas metadata could not be applied ({type(error).__name__}: {error}); "
            "the frame is loaded without it (default index and dtypes)",
            stacklevel=3,
        )
        return table.replace_schema_metadata(metadata).to_pandas()


def _recorded_categories(table: pa.Table) -> dict:
    """The categories recorded at store time, by column; what does not parse is ignored."""
    raw = (table.schema.metadata or {}).get(_CATEGORIES_KEY)
    try:
        recorded = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {
        name: spec
        for name, spec in recorded.items()
        if isinstance(spec, dict) and isinstance(spec.get("categories"), list)
    }


def split_by(data: Any, column: str) -> list[tuple[Any, pa.Table]]:
    """Split a frame into ``(value, rows without the column)`` by the values of ``column``."""
    table = data if isinstance(data, pa.Table) else pa.table(data)
    if column not in table.column_names:
        raise KeyError(f"partition_by column {column!r} is not in the frame (columns: {table.column_names})")
    keys = table.column(column)
    if keys.null_count:
        raise ValueError(f"partition_by column {column!r} has nulls; every row needs a partition value")
    parts = []
    for value in pc.unique(keys).to_pylist():
        rows = table.filter(pc.equal(keys, pa.scalar(value, type=keys.type)))
        parts.append((value, _without_column(rows, column)))
    return parts


def _without_column(table: pa.Table, column: str) -> pa.Table:
    """The table without ``column``, in its data and in what its metadata says about it."""
    table = table.drop_columns([column])
    metadata = dict(table.schema.metadata or {})
    if b"pandas" in metadata:
        try:
            pandas_meta = json.loads(metadata[b"pandas"])
            pandas_meta["columns"] = [c for c in pandas_meta.get("columns", []) if c.get("name") != column]
            metadata[b"pandas"] = json.dumps(pandas_meta).encode()
        except (ValueError, TypeError, AttributeError):
            del metadata[b"pandas"]  # another writer's, unreadable: it would not load either
    if _CATEGORIES_KEY in metadata:
        categories = {k: v for k, v in _recorded_categories(table).items() if k != column}
        if categories:
            metadata[_CATEGORIES_KEY] = json.dumps(categories).encode()
        else:
            del metadata[_CATEGORIES_KEY]
    return table.replace_schema_metadata(metadata)
