"""batchstore: versioned, partitioned tables for data science.

Every write lands in a fresh, immutable batch and then atomically becomes the partition's
current version, so overwriting is safe, history is complete, rollback is one call, and a job
can pin the exact batch it read.

    >>> import batchstore as bs
    >>> bs.store_dataframe(df, "sales", "sold_items", partitions={"ds": "20161031"})
    >>> df = bs.load_dataframe("sales", "sold_items", partitions=["20161031"])

Module-level functions use a default client connected to ``BATCHSTORE_ENDPOINT`` (or a
metastore at ``http://127.0.0.1:50051``, else a local one in ``~/.local/share/batchstore``
started on demand: nothing to set up); call :func:`connect` to choose another, or use
:class:`Client`.
"""

from __future__ import annotations

import os

from ._client import Client, CommitInfo, Lease
from ._native import (
    AlreadyExists,
    Conflict,
    DataError,
    Error,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    SchemaMismatch,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "AlreadyExists",
    "Client",
    "CommitInfo",
    "Conflict",
    "DataError",
    "Error",
    "FailedPrecondition",
    "InvalidArgument",
    "Lease",
    "NotFound",
    "OutcomeUnknown",
    "PermissionDenied",
    "SchemaMismatch",
    "Unauthenticated",
    "Unavailable",
    "connect",
    "create_namespace",
    "create_table",
    "history",
    "load_dataframe",
    "manifest",
    "partitions",
    "rollback",
    "scan",
    "set_retention",
    "store_dataframe",
]

_default: Client | None = None


def connect(
    endpoint: str | None = None,
    *,
    token: str | None = None,
    token_file: str | os.PathLike | None = None,
    ca_file: str | os.PathLike | None = None,
    client_cert: str | os.PathLike | None = None,
    client_key: str | os.PathLike | None = None,
) -> Client:
    """Connect the module-level functions to the metastore at ``endpoint``.

    Without an endpoint, ``BATCHSTORE_ENDPOINT`` is used, else ``http://127.0.0.1:50051``.
    The credentials are those of :class:`Client`. Returns the client, which can also be used
    directly.
    """
    global _default
    _default = Client(
        endpoint,
        token=token,
        token_file=token_file,
        ca_file=ca_file,
        client_cert=client_cert,
        client_key=client_key,
    )
    return _default


def _client() -> Client:
    return _default if _default is not None else connect()


def create_namespace(namespace: str, if_not_exists: bool = True) -> bool:
    """Create a namespace; see :meth:`Client.create_namespace`."""
    return _client().create_namespace(namespace, if_not_exists=if_not_exists)


def create_table(namespace: str, table: str, partition_keys=(), if_not_exists: bool = False) -> bool:
    """Create a table; see :meth:`Client.create_table`."""
    return _client().create_table(namespace, table, partition_keys=partition_keys, if_not_exists=if_not_exists)


def store_dataframe(df, namespace: str, table: str, partitions=None, **kwargs):
    """Store a data frame as a new version of a partition; see :meth:`Client.store_dataframe`."""
    return _client().store_dataframe(df, namespace, table, partitions, **kwargs)


def load_dataframe(namespace: str, table: str, partitions=None, **kwargs):
    """Load partitions as a data frame; see :meth:`Client.load_dataframe`."""
    return _client().load_dataframe(namespace, table, partitions, **kwargs)


def scan(namespace: str, table: str, partitions=None, **kwargs):
    """A pyarrow dataset over a pinned selection, for DuckDB, Polars, Dask; see :meth:`Client.scan`."""
    return _client().scan(namespace, table, partitions, **kwargs)


def manifest(namespace: str, table: str, partitions=None, **kwargs) -> dict:
    """The exact files of a selection; see :meth:`Client.manifest`."""
    return _client().manifest(namespace, table, partitions, **kwargs)


def history(namespace: str, table: str, partitions):
    """A partition's history as a pandas DataFrame, newest first; see :meth:`Client.history`."""
    return _client().history(namespace, table, partitions)


def rollback(namespace: str, table: str, partitions, **kwargs) -> CommitInfo:
    """Point a partition back at an earlier version or batch; see :meth:`Client.rollback`."""
    return _client().rollback(namespace, table, partitions, **kwargs)


def partitions(namespace: str, table: str):
    """A table's partitions with their current batch, as a pandas DataFrame."""
    return _client().partitions(namespace, table)


def set_retention(namespace: str, table: str | None = None, **kwargs) -> dict:
    """Set how many old versions garbage collection keeps; see :meth:`Client.set_retention`."""
    return _client().set_retention(namespace, table, **kwargs)
