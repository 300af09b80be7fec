"""Partition values: how Python values name a partition.

Values are normalised to text the same way in every front end, so Python, R and tablectl name
the same partition identically: integers as decimal digits (``20161031``), dates as
``YYYY-MM-DD``, strings unchanged. Floats are accepted only when whole; datetimes are refused
(say a date or a string instead).
"""

from __future__ import annotations

import datetime as _dt
import numbers
from collections.abc import Mapping, Sequence

from ._native import InvalidArgument

Pairs = list[tuple["str | None", str]]


def normalise(value: object) -> str:
    """The canonical text of one partition value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        if float(value).is_integer():
            return str(int(value))
        raise InvalidArgument(f"partition value {value!r} is not a whole number; use an integer, a date or a string")
    if isinstance(value, _dt.datetime):
        raise InvalidArgument(
            f"partition value {value!r} is a date and time; use a date (value.date()) or a string"
        )
    if isinstance(value, _dt.date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return normalise(value.item())
    raise InvalidArgument(
        f"partition value {value!r} of type {type(value).__name__} is not supported; "
        "use a string, an integer or a date"
    )


def key_type(value: object) -> str:
    """The partition key type a value suggests when a table is created from it."""
    if isinstance(value, bool):
        return "string"
    if isinstance(value, numbers.Integral) or (hasattr(value, "item") and isinstance(value.item(), int)):
        return "int64"
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return "date"
    return "string"


def _is_scalar(value: object) -> bool:
    return not isinstance(value, (Mapping, list, tuple))


def one(partition: object) -> Pairs:
    """One partition: a dict ``{key: value}``, a list of values in key order, a scalar, or None."""
    if partition is None:
        return []
    if isinstance(partition, Mapping):
        return [(str(k), normalise(v)) for k, v in partition.items()]
    if isinstance(partition, (list, tuple)):
        if not all(_is_scalar(v) for v in partition):
            raise InvalidArgument("a partition is a dict {key: value} or a list of values, not a nested list")
        return [(None, normalise(v)) for v in partition]
    return [(None, normalise(partition))]


def many(partitions: object) -> list[Pairs]:
    """Several partitions: None (all), one partition in any form of :func:`one`, or a list of them."""
    if partitions is None:
        return []
    if isinstance(partitions, (list, tuple)) and partitions and all(not _is_scalar(p) for p in partitions):
        return [one(p) for p in partitions]
    return [one(partitions)]


def is_named(partition: object) -> bool:
    return isinstance(partition, Mapping)


def describe(partition: Sequence[tuple[str | None, str]]) -> str:
    return "/".join(f"{k}={v}" if k else v for k, v in partition) or "(unpartitioned)"
