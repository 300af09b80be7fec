"""Retention, leases and garbage collection from Python, on the local disk and on S3 (moto):
a long load of an old version survives a GC sweep, leased versions stay, expired ones are
refused with when and why."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pandas as pd
import pytest

import batchstore as bs


def _write(value: int, ds: str = "1") -> None:
    bs.store_dataframe(pd.DataFrame({"x": [value] * 20}), "lc", "t", partitions={"ds": ds})


def test_retention_leases_and_gc(client):
    for value in (1, 2, 3, 4):
        _write(value)
    effective = client.set_retention("lc", "t", keep_versions=1)
    assert effective == {"keep_versions": 1, "keep_seconds": None}
    with client.lease("lc", "t", "job-1", {"ds": "1"}, version=1, ttl=dt.timedelta(hours=1)) as lease:
        assert lease.expires_at > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=50)
        assert [entry["name"] for entry in client.leases("lc")] == ["job-1"]
        dry = client.collect_garbage("lc", "t", dry_run=True)
        assert dry["batches_expired"] == 2
        assert bs.load_dataframe("lc", "t", {"ds": "1"}, version=2)["x"].tolist() == [2] * 20
        done = client.collect_garbage("lc", "t")
        assert done["batches_expired"] == 2 and done["batches_deleted"] == 2
        # Leased: still there. Expired: refused, saying when and why.
        assert bs.load_dataframe("lc", "t", {"ds": "1"}, version=1)["x"].tolist() == [1] * 20
        with pytest.raises(bs.NotFound, match="expired by garbage collection"):
            bs.load_dataframe("lc", "t", {"ds": "1"}, version=2)
        assert lease.renew("2h") > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=110)
    history = bs.history("lc", "t", {"ds": "1"})
    assert history.loc[history["expired_at"].notna(), "version"].tolist() == [3, 2]
    assert history["expired_reason"].dropna().str.contains("keep only the current version").all()
    # Released on leaving the block: the next run takes version 1 too.
    assert client.collect_garbage("lc", "t")["batches_expired"] == 1
    assert bs.load_dataframe("lc", "t", {"ds": "1"})["x"].tolist() == [4] * 20


def test_a_long_load_survives_a_gc_sweep(client, monkeypatch):
    for value in (1, 2, 3):
        _write(value)
    client.set_retention("lc", None, keep_versions=1)
    # The debug build pauses a read between resolving and fetching.
    monkeypatch.setenv("BATCHSTORE_DEBUG_READ_PAUSE_MS", "2000")
    loaded = {}
    reader = threading.Thread(
        target=lambda: loaded.update(frame=bs.load_dataframe("lc", "t", {"ds": "1"}, version=1))
    )
    reader.start()
    time.sleep(0.8)
    during = bs.Client(client.endpoint).collect_garbage("lc")
    reader.join()
    # Version 2 went; version 1 was under the load's own lease.
    assert during["batches_expired"] == 1
    assert loaded["frame"]["x"].tolist() == [1] * 20


def test_durations_and_names_are_checked(client):
    _write(1)
    with pytest.raises(bs.InvalidArgument, match="duration"):
        client.set_retention("lc", "t", keep_for="soon")
    with pytest.raises(bs.InvalidArgument, match="keep_versions"):
        client.set_retention("lc", "t", keep_versions=0)
    with pytest.raises(bs.InvalidArgument, match="lease name"):
        client.lease("lc", "t", "no spaces allowed")
    assert client.set_retention("lc", "t", keep_for=3600)["keep_seconds"] == 3600
    assert client.set_retention("lc", "t", keep_for="7d")["keep_seconds"] == 7 * 86400
    client.drop_table("lc", "t")
    client.undrop_table("lc", "t")
    assert bs.load_dataframe("lc", "t", {"ds": "1"})["x"].tolist() == [1] * 20


def test_schema_evolves_additively(client, metastore):
    def store(ds: str, **columns) -> None:
        bs.store_dataframe(pd.DataFrame(columns), "lc", "e", partitions={"ds": ds})

    store("1", a=pd.array([1, 1], dtype="int32"), b=["one", "one"])
    with pytest.raises(bs.SchemaMismatch, match="additive schema policy would allow"):
        store("2", a=pd.array([2, 2], dtype="int32"), b=["two", "two"], c=[2.5, 2.5])
    done = metastore.tablectl("table", "set-schema-policy", "lc.e", "additive")
    assert done.returncode == 0, done.stderr
    store("2", a=pd.array([2, 2], dtype="int32"), b=["two", "two"], c=[2.5, 2.5])
    store("3", a=pd.array([3, 3], dtype="int32"), b=["three", "three"])
    store("3", a=pd.array([4, 4], dtype="int64"), b=["four", "four"], c=[4.5, 4.5])

    def rows() -> list[tuple]:
        frame = bs.load_dataframe("lc", "e").sort_values(["ds", "a"])
        assert str(frame["a"].dtype) == "int64"
        return [(r.ds, r.a, r.b, None if pd.isna(r.c) else r.c) for r in frame.itertuples()]

    assert rows() == [
        ("1", 1, "one", None), ("1", 1, "one", None),
        ("2", 2, "two", 2.5), ("2", 2, "two", 2.5),
        ("3", 4, "four", 4.5), ("3", 4, "four", 4.5),
    ]
    bs.rollback("lc", "e", {"ds": "3"}, to_version=1)
    assert rows()[4:] == [("3", 3, "three", None), ("3", 3, "three", None)]
    shown = metastore.tablectl("table", "schema", "lc.e", "--history")
    assert "added column" in shown.stdout and "widened" in shown.stdout
