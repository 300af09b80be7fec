"""The batchstore client for Python: tables, data frames, history and rollback."""

from __future__ import annotations

import datetime as _dt
import os
import sys
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any, Literal

from . import _frames
from ._native import InvalidArgument, NativeClient


@dataclass(frozen=True)
class CommitInfo:
    """A version created by a store or rollback."""

    batch_id: str
    version: int
    rows: int
    bytes: int
    committed_at: _dt.datetime
    partition: dict[str, str] = field(default_factory=dict)

    @classmethod
    def _from_native(cls, d: dict) -> CommitInfo:
        return cls(
            batch_id=d["batch_id"],
            version=d["version"],
            rows=d["rows"],
            bytes=d["bytes"],
            committed_at=_from_micros(d["committed_at_us"]),
            partition=dict(d["partition"]),
        )


# How this interpreter runs a local metastore when none is configured (see Client).
_LOCAL_SERVER = [sys.executable, "-c", "from batchstore._native import serve_home; serve_home()"]


def _from_micros(micros: int) -> _dt.datetime:
    return _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=micros)


class Client:
    """A connection to a batchstore metastore.

    ``endpoint`` defaults to ``BATCHSTORE_ENDPOINT``, else ``http://127.0.0.1:50051`` when a
    metastore listens there, else a local one: a SQLite catalog and a warehouse in
    ``BATCHSTORE_HOME`` (default ``~/.local/share/batchstore``), served by a process started on
    demand, shared by every process of the user, and stopped when no client has been connected
    for a minute (``BATCHSTORE_IDLE_SECONDS``). An ``https://`` endpoint uses TLS. For a metastore that authenticates, ``token`` (default
    ``BATCHSTORE_TOKEN``, else the first line of ``token_file`` or ``BATCHSTORE_TOKEN_FILE``)
    proves who you are; prefer the variables to writing a token into code. ``ca_file``
    (default ``BATCHSTORE_CA_FILE``) adds the CA that signed the metastore's certificate to the
    system's roots; ``client_cert`` and ``client_key`` (default ``BATCHSTORE_CLIENT_CERT`` and
    ``BATCHSTORE_CLIENT_KEY``) answer a metastore that requires client certificates. A refused
    token raises :class:`Unauthenticated`, a missing grant :class:`PermissionDenied`.

    Storage credentials come from the standard ``AWS_*`` variables. Every call releases the
    GIL while it waits, encodes or decodes; Ctrl-C cancels a call and leaves the partition
    unchanged.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        token: str | None = None,
        token_file: str | os.PathLike | None = None,
        ca_file: str | os.PathLike | None = None,
        client_cert: str | os.PathLike | None = None,
        client_key: str | os.PathLike | None = None,
    ) -> None:
        self._native = NativeClient(
            endpoint, token, token_file, ca_file, client_cert, client_key, _LOCAL_SERVER
        )

    @property
    def endpoint(self) -> str:
        """The metastore address this client talks to."""
        return self._native.endpoint

    def __repr__(self) -> str:
        return f"batchstore.Client({self.endpoint!r})"

    # -- namespaces and tables ------------------------------------------------------------

    def create_namespace(self, namespace: str, if_not_exists: bool = True) -> bool:
        """Create a namespace. Returns False when it existed and ``if_not_exists`` is set."""
        return self._native.create_namespace(namespace, if_not_exists)

    def create_table(self, namespace: str, table: str, partition_keys=(), if_not_exists: bool = False) -> bool:
        """Create a table partitioned by ``partition_keys``.

        Keys are names (string keys), ``(name, type)`` pairs, or a dict ``{name: type}``, with
        type ``"string"``, ``"int64"`` or ``"date"``. The namespace is created if missing.
        """
        if isinstance(partition_keys, dict):
            keys = [(str(k), str(t)) for k, t in partition_keys.items()]
        else:
            keys = [(k, "string") if isinstance(k, str) else (str(k[0]), str(k[1])) for k in partition_keys]
        self._native.create_namespace(namespace, True)
        return self._native.create_table(namespace, table, keys, if_not_exists)

    def describe_table(self, namespace: str, table: str) -> dict:
        """Partition keys, columns, location and partition count of a table."""
        return dict(self._native.get_table(namespace, table))

    def list_tables(self, namespace: str | None = None) -> list[str]:
        """Tables as ``namespace.table`` names, in one namespace or all."""
        return list(self._native.list_tables(namespace))

    def drop_table(self, namespace: str, table: str) -> None:
        """Drop a table (its data stays until garbage collection)."""
        self._native.drop_table(namespace, table)

    # -- data ------------------------------------------------------------------------------

    def store_dataframe(
        self,
        df: Any,
        namespace: str,
        table: str,
        partitions: Any = None,
        *,
        expected_batch: str | None = None,
        message: str = "",
        partition_by: str | None = None,
        inputs: Sequence[str] = (),
    ) -> CommitInfo | list[CommitInfo]:
        """Store a frame as a new version of a partition.

        ``df`` is a pandas or polars DataFrame, a pyarrow Table or RecordBatchReader, or any
        object with ``__arrow_c_stream__``. ``partitions`` names the partition: a dict
        ``{"ds": "20161031"}`` or a list of values in key order. With a dict and a table that
        does not exist yet, the namespace and table are created (key types from the values).

        ``expected_batch`` makes the write a compare-and-swap: it fails with :class:`Conflict`
        unless the partition's current batch is that one (``"-"``: the partition must be new).
        ``partition_by="col"`` splits the frame by that column's values and commits every
        partition at once (all or nothing); it returns a list of :class:`CommitInfo`.

        Ctrl-C stops the store with ``KeyboardInterrupt``; its ``committed`` attribute lists
        the :class:`CommitInfo` of each partition when the commit had already been sent and
        succeeded, and is empty when nothing was committed.
        """
        if partition_by is not None and partitions is not None:
            raise InvalidArgument(
                "give partitions (the one partition to store) or partition_by (the column whose "
                "values name the partitions), not both"
            )
        # The batch of one partition begins while a pandas frame converts (that takes a while).
        early = None
        if partition_by is None and _frames.is_pandas(df):
            early = self._native.begin_early(namespace, table, partitions)
        try:
            data = _frames.to_arrow(df)
        except BaseException:
            if early is not None:
                early.abort()
            raise
        if partition_by is not None:
            parts = [({partition_by: value}, expected_batch, rows) for value, rows in _frames.split_by(data, partition_by)]
        else:
            parts = [(partitions, expected_batch, data)]
        try:
            committed = self._native.write(namespace, table, parts, message, list(inputs), early)
        except KeyboardInterrupt as interrupt:
            # What the interrupted store committed (its commit had been sent): empty if nothing.
            if hasattr(interrupt, "committed"):
                interrupt.committed = [CommitInfo._from_native(c) for c in interrupt.committed]
            raise
        infos = [CommitInfo._from_native(c) for c in committed]
        return infos if partition_by is not None else infos[0]

    def load_dataframe(
        self,
        namespace: str,
        table: str,
        partitions: Any = None,
        *,
        version: int | None = None,
        batch_id: str | None = None,
        tag: str | None = None,
        as_of: _dt.datetime | _dt.date | str | None = None,
        columns: list[str] | None = None,
        filter: list[tuple] | None = None,
        as_: Literal["pandas", "arrow", "polars"] = "pandas",
        partition_columns: Literal["auto", "always", "never"] = "auto",
    ) -> Any:
        """Load partitions as a frame (pandas by default; ``as_="arrow"`` or ``"polars"``).

        ``partitions``: None for every partition, one partition (dict or list of values), or
        a list of partitions. At most one of ``version``, ``batch_id``, ``tag`` and ``as_of``
        (a time; naive times are UTC) picks which version; by default the current one.
        ``columns`` reads only those columns. One named partition comes back exactly as it
        was stored; a load spanning several partitions adds the partition keys as columns
        (``partition_columns="always"`` or ``"never"`` decides it yourself). ``filter``: a
        list of ``(key, op, value)`` conditions on partition keys that must all hold (``=``,
        ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in`` with a list), resolved by the metastore so
        only matching partitions are fetched; for conditions on data columns use :meth:`scan`.
        """
        arrow = self._native.read(
            namespace, table, partitions, version, batch_id, tag, as_of, columns, partition_columns,
            list(filter or []),
        )
        return _frames.from_arrow(arrow, as_)

    # -- engines ---------------------------------------------------------------------------

    def scan(
        self,
        namespace: str,
        table: str,
        partitions: Any = None,
        *,
        version: int | None = None,
        batch_id: str | None = None,
        tag: str | None = None,
        as_of: _dt.datetime | _dt.date | str | None = None,
        columns: list[str] | None = None,
        filter: Any = None,
        engine: Literal["pyarrow", "duckdb", "polars"] = "pyarrow",
        connection: Any = None,
    ):
        """A ``pyarrow.dataset.Dataset`` over exactly the files of a selection, for query engines.

        Selects like :meth:`load_dataframe`, but reads nothing yet: DuckDB
        (``duckdb.sql("SELECT … FROM ds")``), Polars (``pl.scan_pyarrow_dataset(ds)``),
        Dask and pyarrow stream the files themselves, with projection and predicate pushdown.
        The partition keys are columns (typed as the table declares them) and every file is
        read with the table's read schema, matching columns by name. ``columns`` limits the
        data columns (the keys are always there).

        ``filter``: a list of ``(column, op, value)`` tuples that must all hold (``=``, ``!=``,
        ``<``, ``<=``, ``>``, ``>=``, ``in``): conditions on partition keys are resolved by the
        metastore, so only matching partitions are in the dataset; the others are pushed into
        the Parquet scan. A ``pyarrow.compute.Expression`` is applied by the scan instead.

        The dataset is a snapshot: later writes and rollbacks do not change what it reads, and
        its files are pinned against garbage collection (a read lease, renewed in the
        background) for as long as the dataset object lives: keep a reference to it while
        anything reads from it (a scanner or batch iterator taken from it, or a dataset made
        by its ``filter``, does not hold the lease by itself).

        ``engine="duckdb"`` returns a DuckDB relation (on ``connection``, default DuckDB's
        default connection) and ``engine="polars"`` a Polars LazyFrame instead, reading the
        files with the engine's own Parquet reader (on local disk; on S3 through the pyarrow
        dataset), which is faster than through the dataset; the same keys, schema, snapshot
        and pin, for as long as the returned object lives. Their ``filter`` is a list of
        tuples (``not in`` too).
        """
        from . import _scan

        if engine not in ("pyarrow", "duckdb", "polars"):
            raise ValueError(f'engine is "pyarrow", "duckdb" or "polars", not {engine!r}')
        native_engine = engine != "pyarrow"
        if native_engine and isinstance(filter, _scan.pc.Expression):
            raise TypeError(f"engine={engine!r} takes its filter as (column, op, value) tuples")
        keys = []
        if filter is not None and not isinstance(filter, _scan.pc.Expression):
            keys = [name for name, _ in self.describe_table(namespace, table)["partition_keys"]]
        on_keys, rest = _scan.split_filter(filter, keys, as_tuples=native_engine)
        native = self._native.manifest(
            namespace, table, partitions, version, batch_id, tag, as_of, columns, on_keys
        )
        if native_engine:
            return _scan.engine_frame(engine, native, rest or [], connection)
        return _scan.dataset(native, rest)

    def manifest(
        self,
        namespace: str,
        table: str,
        partitions: Any = None,
        *,
        version: int | None = None,
        batch_id: str | None = None,
        tag: str | None = None,
        as_of: _dt.datetime | _dt.date | str | None = None,
        columns: list[str] | None = None,
        filter: list[tuple] | None = None,
    ) -> dict:
        """The exact files of a selection, for any engine that reads Parquet (Spark:
        ``spark.read.parquet(*[f["path"] for f in m["files"]])``).

        Returns a dict: ``table``, ``schema`` (fields with name, Arrow type and nullability,
        partition keys last), ``partition_keys``, ``storage`` (local, or S3 with its endpoint
        and region), ``lease_id`` and ``files`` (each with ``uri``, ``path``, ``size_bytes``,
        ``rows``, ``partition``, ``batch_id``, ``version``, ``committed_at``). ``filter``: the
        ``(key, op, value)`` conditions on partition keys of :meth:`scan`. The files are pinned
        only while this call runs; hold a :meth:`lease` to keep them for a job.
        """
        import json

        native = self._native.manifest(
            namespace, table, partitions, version, batch_id, tag, as_of, columns, list(filter or [])
        )
        try:
            return json.loads(native.to_json())
        finally:
            native.release()

    # -- history ---------------------------------------------------------------------------

    def history(self, namespace: str, table: str, partitions: Any):
        """A partition's history as a pandas DataFrame, newest first.

        Columns: version, batch_id, operation ("write" or "rollback"), actor, message,
        committed_at (UTC), rows, bytes, current, and expired_at / expired_reason for versions
        garbage collection expired (they can no longer be read).
        """
        import pandas as pd

        entries = self._native.history(namespace, table, partitions)
        frame = pd.DataFrame(
            entries,
            columns=[
                "version", "batch_id", "operation", "actor", "message", "committed_at_us", "rows", "bytes",
                "current", "expired_at_us", "expired_reason",
            ],
        )
        frame.insert(5, "committed_at", pd.to_datetime(frame.pop("committed_at_us"), unit="us", utc=True))
        frame["expired_at"] = pd.to_datetime(frame.pop("expired_at_us"), unit="us", utc=True)
        frame["expired_reason"] = frame.pop("expired_reason")
        return frame

    def rollback(
        self,
        namespace: str,
        table: str,
        partitions: Any,
        *,
        to_version: int | None = None,
        to_batch: str | None = None,
        expected_batch: str | None = None,
        message: str = "",
    ) -> CommitInfo:
        """Point a partition back at an earlier version or batch.

        Nothing is deleted: the rollback is a new version that points at the older batch.
        """
        committed = self._native.rollback(
            namespace, table, partitions, to_version, to_batch, expected_batch, message
        )
        return CommitInfo._from_native(committed)

    def partitions(self, namespace: str, table: str):
        """A table's partitions with their current batch, as a pandas DataFrame."""
        import pandas as pd

        rows = [{**p, "partition": p["name"]} for p in self._native.partitions(namespace, table)]
        return pd.DataFrame(rows, columns=["partition", "batch_id", "version", "rows", "bytes", "updated_at_us"])

    def create_tag(self, namespace: str, table: str, name: str, partitions: Any = None, *, version: int = 0, batch_id: str | None = None) -> dict:
        """Name a batch: a partition's version (0 = current) or a batch id."""
        return dict(self._native.create_tag(namespace, table, name, partitions, version, batch_id))

    def lineage(self, batch_id: str) -> dict:
        """A batch's lineage: ``{"batch_id", "inputs", "outputs"}``, the batches it was computed
        from (``inputs=`` of :meth:`store_dataframe`) and the batches computed from it."""
        return dict(self._native.lineage(batch_id))

    def list_tags(self, namespace: str, table: str) -> list[dict]:
        """The tags of a table."""
        return [dict(t) for t in self._native.list_tags(namespace, table)]

    def delete_tag(self, namespace: str, table: str, name: str) -> None:
        """Delete a tag (the batch stays)."""
        self._native.delete_tag(namespace, table, name)

    # -- lifecycle: retention, leases, garbage collection ----------------------------------

    def set_retention(
        self,
        namespace: str,
        table: str | None = None,
        *,
        keep_versions: int | None = None,
        keep_for: Any = None,
    ) -> dict:
        """Set how many old versions garbage collection keeps.

        For a table, or with ``table=None`` as the namespace's default. ``keep_versions=N``
        keeps the last N versions of each partition (1: only the current one); ``keep_for``
        (a ``timedelta``, seconds, or text such as ``"30d"``) keeps every version that was
        current within that long, so as-of reads of that window keep working. A version is
        kept when any rule keeps it; with no rule, every version is kept. The current version,
        tagged and leased batches are always kept. Returns the effective retention as
        ``{"keep_versions", "keep_seconds"}``.
        """
        versions, seconds = self._native.set_retention(namespace, table, keep_versions, keep_for)
        return {"keep_versions": versions, "keep_seconds": seconds}

    def undrop_table(self, namespace: str, table: str) -> None:
        """Bring back the most recently dropped table of this name, with its data and history,
        until garbage collection frees it (at the earliest after the metastore's grace period)."""
        self._native.undrop_table(namespace, table)

    def lease(
        self,
        namespace: str,
        table: str,
        name: str,
        partitions: Any = None,
        *,
        version: int | None = None,
        batch_id: str | None = None,
        tag: str | None = None,
        as_of: Any = None,
        ttl: Any = None,
    ) -> Lease:
        """Pin a selection (default: the current version of every partition) against garbage
        collection under ``name``, for ``ttl`` (a ``timedelta``, seconds or text such as
        ``"7d"``; default the metastore's, one day). Use it as a context manager to release it
        at the end, or call :meth:`Lease.renew` / :meth:`Lease.release`."""
        info = self._native.acquire_lease(namespace, table, name, partitions, version, batch_id, tag, as_of, ttl)
        return Lease(self, dict(info))

    def leases(self, namespace: str | None = None, table: str | None = None, *, include_reads: bool = False) -> list[dict]:
        """Live leases, soonest to expire first (named ones; ``include_reads`` adds reads' own)."""
        return [dict(lease) for lease in self._native.leases(namespace, table, include_reads)]

    def collect_garbage(self, namespace: str | None = None, table: str | None = None, *, dry_run: bool = False) -> dict:
        """Run garbage collection to the end (everything, a namespace, or one table) and return
        what it did: ``batches_expired``, ``batches_deleted``, ``files_deleted``, ``bytes_deleted``,
        ``tables_purged``. With ``dry_run``, nothing changes and the counts say what a run would do."""
        return dict(self._native.collect_garbage(namespace, table, dry_run))


class Lease:
    """A named lease pinning a selection against garbage collection (see :meth:`Client.lease`)."""

    def __init__(self, client: Client, info: dict) -> None:
        self._client = client
        self.info = info

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def expires_at(self) -> _dt.datetime:
        return _from_micros(self.info["expires_at_us"])

    def renew(self, ttl: Any = None) -> _dt.datetime:
        """Extend the lease to ``ttl`` from now (the catalog's clock); returns the new expiry."""
        until = self._client._native.extend_lease(self.info["namespace"], self.info["table"], self.name, ttl)
        self.info["expires_at_us"] = until
        return self.expires_at

    def release(self) -> bool:
        """Release the lease; False when it had already run out or been released."""
        return self._client._native.release_lease(self.info["namespace"], self.info["table"], self.name)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"batchstore.Lease({self.info['namespace']}.{self.info['table']}:{self.name}, until {self.expires_at})"
