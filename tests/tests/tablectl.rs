//! `tablectl` end to end: the real binary against the real metastore (SQLite catalog), with
//! the warehouse on the local filesystem and on an S3-compatible server (moto) on loopback.

use anyhow::{Context, Result};
use arrow_array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array,
    Float64Array, Int8Array, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, TimestampNanosecondArray, UInt16Array, types::Int32Type,
};
use batchstore_tests::s3::S3Server;
use batchstore_tests::tablectl::Tablectl;
use batchstore_tests::{Backend, Metastore, TestDatabase};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Stamps out one test per storage for each scenario.
macro_rules! on_both_storages {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[test]
            fn $scenario() -> anyhow::Result<()> {
                super::$scenario(super::Storage::Local)
            })*
        }
        mod s3 {
            $(#[test]
            fn $scenario() -> anyhow::Result<()> {
                super::$scenario(super::Storage::S3)
            })*
        }
    };
}

on_both_storages!(
    shell_lifecycle,
    data_types_round_trip,
    schema_mismatch_is_refused,
    killed_write_changes_nothing,
    reads_match_columns_by_name_across_partitions,
    manifest_lists_exactly_the_files_a_selection_reads
);

/// Every change records who made it (writes, rollbacks, tags: the actor travels with every
/// call), and lineage given at write time reads back both ways.
#[test]
fn actors_and_lineage_are_recorded() -> Result<()> {
    let env = Env::start(Storage::Local)?;
    let as_actor = |name: &str| Tablectl {
        endpoint: env.cli.endpoint.clone(),
        env: vec![("BATCHSTORE_ACTOR".to_owned(), name.to_owned())],
    };
    let file = env.path("in.parquet");
    write_parquet(&file, &[sample(1, 10)?])?;
    let file = file.to_str().context("path")?;
    let first = as_actor("alice").json(&["write", "sales.items", "-p", "ds=1", file])?;
    let first = first["batch_id"].as_str().context("batch_id")?.to_owned();
    let second = as_actor("bob").json(&[
        "write",
        "sales.items",
        "-p",
        "ds=2",
        file,
        "--input",
        &first,
    ])?;
    let second = second["batch_id"].as_str().context("batch_id")?.to_owned();
    as_actor("carol").ok(&["tag", "create", "sales.items", "gold", "--batch", &second])?;
    as_actor("dave").ok(&["write", "sales.items", "-p", "ds=2", file])?;
    as_actor("erin").ok(&["rollback", "sales.items", "-p", "ds=2", "--to-version", "1"])?;
    as_actor("frank").ok(&["tag", "delete", "sales.items", "gold"])?;

    let history = env.cli.json(&["history", "sales.items", "-p", "ds=2"])?;
    let actors: Vec<&str> = history
        .as_array()
        .context("history")?
        .iter()
        .filter_map(|h| h["actor"].as_str())
        .collect();
    assert_eq!(actors, ["erin", "dave", "bob"]);
    // The audit trail (read through tablectl, which waits for queued events): one event per
    // call, under the actor each client claimed (this metastore does not authenticate).
    let audit = env.cli.json(&["audit"])?;
    let changes: Vec<String> = audit
        .as_array()
        .context("audit")?
        .iter()
        .filter(|e| {
            matches!(
                e["method"].as_str(),
                Some("Commit" | "Rollback" | "CreateTag" | "DeleteTag")
            )
        })
        .map(|e| {
            format!(
                "{}:{}",
                e["claimed_actor"].as_str().unwrap_or(""),
                e["method"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            "alice:Commit",
            "bob:Commit",
            "carol:CreateTag",
            "dave:Commit",
            "erin:Rollback",
            "frank:DeleteTag",
        ],
        "{audit:?}"
    );

    let lineage = env.cli.json(&["lineage", &second])?;
    assert_eq!(lineage["inputs"], serde_json::json!([first]));
    let upstream = env.cli.json(&["lineage", &first])?;
    assert_eq!(upstream["outputs"], serde_json::json!([second]));
    let refused = env.cli.run(&[
        "write",
        "sales.items",
        "-p",
        "ds=3",
        file,
        "--input",
        "not-a-batch",
    ])?;
    assert!(!refused.status.success());
    let partitions = env.cli.json(&["partitions", "sales.items"])?;
    assert_eq!(partitions.as_array().map(Vec::len), Some(2), "{partitions}");
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    Local,
    S3,
}

struct Env {
    cli: Tablectl,
    dir: tempfile::TempDir,
    s3: Option<S3Server>,
    server: Metastore,
    _db: TestDatabase,
}

impl Env {
    fn start(storage: Storage) -> Result<Self> {
        let db = TestDatabase::create(Backend::Sqlite)?;
        let dir = tempfile::tempdir()?;
        let (server, s3) = match storage {
            Storage::Local => (Metastore::start(&db.url, &[])?, None),
            Storage::S3 => {
                let s3 = S3Server::start("lake")?;
                let server =
                    Metastore::start_with_env(&db.url, "s3://lake/warehouse", &[], &s3.env())?;
                (server, Some(s3))
            }
        };
        let env = s3.as_ref().map(S3Server::env).unwrap_or_default();
        let cli = Tablectl {
            endpoint: server.endpoint(),
            env,
        };
        cli.ok(&["namespace", "create", "sales"])?;
        cli.ok(&["table", "create", "sales.items", "--partition-key", "ds"])?;
        Ok(Env {
            cli,
            dir,
            s3,
            server,
            _db: db,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Data files of batches under the table, in storage.
    fn stored_files(&self) -> Result<Vec<String>> {
        match &self.s3 {
            Some(s3) => Ok(s3
                .list("warehouse/sales/items/")?
                .into_iter()
                .filter(|k| k.ends_with(".parquet"))
                .collect()),
            None => {
                let mut found = Vec::new();
                walk(
                    &self.server.warehouse.join("sales").join("items"),
                    &mut found,
                );
                Ok(found)
            }
        }
    }
}

fn walk(dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, found);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            found.push(path.display().to_string());
        }
    }
}

fn sample(version: i64, rows: i64) -> Result<RecordBatch> {
    let ids: Vec<i64> = (0..rows).map(|i| i * version).collect();
    let values: Vec<Option<f64>> = (0..rows)
        .map(|i| {
            if i % 7 == 0 {
                None
            } else {
                Some(i as f64 / version as f64)
            }
        })
        .collect();
    let labels: Vec<String> = (0..rows).map(|i| format!("v{version}-{}", i % 5)).collect();
    Ok(RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("value", Arc::new(Float64Array::from(values)) as ArrayRef),
        ("label", Arc::new(StringArray::from(labels)) as ArrayRef),
    ])?)
}

fn write_parquet(path: &Path, batches: &[RecordBatch]) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, batches[0].schema(), None)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(())
}

fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .context("no batches")?;
    Ok(arrow_select::concat::concat_batches(&schema, &batches)?)
}

/// A CSV file's header and its rows, sorted (partitions come back in any order).
fn sorted_csv(path: &Path) -> Result<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut rows: Vec<String> = text.lines().map(str::to_owned).collect();
    if rows.is_empty() {
        anyhow::bail!("{} is empty", path.display());
    }
    let header = rows.remove(0);
    rows.sort();
    Ok((header, rows))
}

/// Same columns, types and values (schema metadata aside).
fn assert_same_data(expected: &RecordBatch, actual: &RecordBatch, what: &str) {
    let names = |b: &RecordBatch| {
        b.schema()
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(expected), names(actual), "{what}: columns");
    assert_eq!(expected.columns(), actual.columns(), "{what}: values");
}

fn read_version(env: &Env, selector: &[&str], name: &str) -> Result<RecordBatch> {
    let out = env.path(name);
    let mut args = vec![
        "read",
        "sales.items",
        "-p",
        "ds=20161031",
        "-o",
        out.to_str().context("path")?,
    ];
    args.extend_from_slice(selector);
    env.cli.ok(&args)?;
    read_parquet(&out)
}

fn shell_lifecycle(storage: Storage) -> Result<()> {
    let env = Env::start(storage)?;
    let mut data = Vec::new();
    let mut batches = Vec::new();
    for version in 1..=3 {
        let batch = sample(version, 1000 + version * 10)?;
        let file = env.path(&format!("in{version}.parquet"));
        write_parquet(&file, std::slice::from_ref(&batch))?;
        let written = env.cli.json(&[
            "write",
            "sales.items",
            "-p",
            "ds=20161031",
            file.to_str().context("path")?,
            "-m",
            &format!("load {version}"),
        ])?;
        assert_eq!(written["version"], version);
        assert_eq!(written["rows"], batch.num_rows());
        batches.push(written["batch_id"].as_str().context("batch_id")?.to_owned());
        data.push(batch);
    }
    let location = env.cli.json(&["table", "describe", "sales.items"])?["location"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected_scheme = if storage == Storage::S3 {
        "s3://lake/warehouse/"
    } else {
        "file:///"
    };
    assert!(location.starts_with(expected_scheme), "{location}");
    assert_eq!(
        env.stored_files()?.len(),
        3,
        "one file per version, in the warehouse"
    );
    let history = env
        .cli
        .json(&["history", "sales.items", "-p", "20161031"])?;
    let entries = history.as_array().context("list")?;
    assert_eq!(
        entries
            .iter()
            .map(|e| e["version"].as_i64())
            .collect::<Vec<_>>(),
        vec![Some(3), Some(2), Some(1)]
    );
    assert_eq!(entries[0]["current"], true);
    assert_eq!(entries[1]["current"], false);
    assert_eq!(entries[2]["batch_id"], batches[0].as_str());
    assert_eq!(entries[0]["operation"], "write");
    assert!(entries[0]["committed_at"].is_string());
    assert_eq!(entries[1]["rows"], data[1].num_rows());

    for (i, expected) in data.iter().enumerate() {
        let version = (i + 1).to_string();
        let read = read_version(
            &env,
            &["--version", &version],
            &format!("v{version}.parquet"),
        )?;
        assert_same_data(expected, &read, &format!("version {version}"));
    }

    let rolled = env.cli.json(&[
        "rollback",
        "sales.items",
        "-p",
        "ds=20161031",
        "--to-version",
        "1",
        "--expect-batch",
        &batches[2],
    ])?;
    assert_eq!(rolled["version"], 4);
    assert_eq!(rolled["batch_id"], batches[0].as_str());
    assert_same_data(
        &data[0],
        &read_version(&env, &[], "current.parquet")?,
        "current after rollback",
    );

    // A read pinned to batch 2 returns the same data after more writes and rollbacks.
    let pinned_before = read_version(&env, &["--batch", &batches[1]], "pinned1.parquet")?;
    let extra = env.path("in4.parquet");
    write_parquet(&extra, &[sample(4, 50)?])?;
    env.cli.ok(&[
        "write",
        "sales.items",
        "-p",
        "ds=20161031",
        extra.to_str().context("path")?,
    ])?;
    env.cli.ok(&[
        "rollback",
        "sales.items",
        "-p",
        "ds=20161031",
        "--to-batch",
        &batches[2],
    ])?;
    let pinned_after = read_version(&env, &["--batch", &batches[1]], "pinned2.parquet")?;
    assert_same_data(&data[1], &pinned_before, "pinned before");
    assert_same_data(&pinned_before, &pinned_after, "pinned after");

    let v2_time = entries[1]["committed_at"]
        .as_str()
        .context("time")?
        .to_owned();
    assert_same_data(
        &data[1],
        &read_version(&env, &["--as-of", &v2_time], "asof.parquet")?,
        "as of v2",
    );

    env.cli.ok(&[
        "tag",
        "create",
        "sales.items",
        "gold",
        "-p",
        "ds=20161031",
        "--version",
        "2",
    ])?;
    assert_same_data(
        &data[1],
        &read_version(&env, &["--tag", "gold"], "tag.parquet")?,
        "tag gold",
    );

    let other = env.path("other.parquet");
    write_parquet(&other, &[sample(9, 10)?])?;
    env.cli.ok(&[
        "write",
        "sales.items",
        "-p",
        "ds=20161101",
        other.to_str().context("path")?,
    ])?;
    let partitions = env.cli.json(&["partitions", "sales.items"])?;
    let list = partitions.as_array().context("list")?;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["partition"]["ds"], "20161031");
    assert_eq!(list[0]["version"], 6);
    assert_eq!(list[0]["batch_id"], batches[2].as_str());
    assert_eq!(list[1]["rows"], 10);

    // Reading the whole table adds the partition key as a column.
    let all = env.path("all.csv");
    env.cli.ok(&[
        "read",
        "sales.items",
        "-o",
        all.to_str().context("path")?,
        "--columns",
        "id,label",
    ])?;
    let csv = std::fs::read_to_string(&all)?;
    assert!(
        csv.starts_with("id,label,ds\n"),
        "{}",
        &csv[..40.min(csv.len())]
    );
    assert_eq!(csv.lines().count(), 1 + data[2].num_rows() + 10);

    let human = env
        .cli
        .ok(&["read", "sales.items", "-p", "20161031", "--limit", "3"])?;
    assert!(human.contains("first 3 shown"), "{human}");
    Ok(())
}

fn typed_batch() -> Result<RecordBatch> {
    let dictionary: DictionaryArray<Int32Type> = vec![Some("red"), None, Some("blue"), Some("red")]
        .into_iter()
        .collect();
    Ok(RecordBatch::try_from_iter(vec![
        (
            "i8",
            Arc::new(Int8Array::from(vec![Some(-8), None, Some(7), Some(0)])) as ArrayRef,
        ),
        (
            "i32",
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(1),
                None,
                Some(i32::MAX),
            ])) as ArrayRef,
        ),
        (
            "i64",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                None,
                Some(3),
                Some(i64::MAX),
            ])) as ArrayRef,
        ),
        (
            "u16",
            Arc::new(UInt16Array::from(vec![Some(65535), Some(0), None, Some(1)])) as ArrayRef,
        ),
        (
            "f32",
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                None,
                Some(f32::NAN),
                Some(-0.0),
            ])) as ArrayRef,
        ),
        (
            "f64",
            Arc::new(Float64Array::from(vec![
                Some(f64::INFINITY),
                Some(2.25),
                None,
                Some(1e300),
            ])) as ArrayRef,
        ),
        (
            "flag",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])) as ArrayRef,
        ),
        (
            "text",
            Arc::new(StringArray::from(vec![
                Some("naïve"),
                Some(""),
                None,
                Some("数据 \"q\""),
            ])) as ArrayRef,
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                Some(17105),
                None,
                Some(-1),
                Some(0),
            ])) as ArrayRef,
        ),
        (
            "at_paris",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(1_477_915_200_000_000),
                    None,
                    Some(0),
                    Some(-1),
                ])
                .with_timezone("Europe/Paris"),
            ) as ArrayRef,
        ),
        (
            "at_ns",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(1),
                Some(i64::MAX),
                None,
                Some(0),
            ])) as ArrayRef,
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), None, Some(-1), Some(0)])
                    .with_precision_and_scale(12, 3)?,
            ) as ArrayRef,
        ),
        ("colour", Arc::new(dictionary) as ArrayRef),
    ])?)
}

fn data_types_round_trip(storage: Storage) -> Result<()> {
    let env = Env::start(storage)?;
    let batch = typed_batch()?;
    let input = env.path("typed.parquet");
    write_parquet(&input, std::slice::from_ref(&batch))?;
    env.cli.ok(&[
        "write",
        "sales.items",
        "-p",
        "ds=t",
        input.to_str().context("path")?,
    ])?;
    let output = env.path("typed-out.parquet");
    env.cli.ok(&[
        "read",
        "sales.items",
        "-p",
        "ds=t",
        "-o",
        output.to_str().context("path")?,
    ])?;
    let read = read_parquet(&output)?;
    assert_same_data(&batch, &read, "typed round trip");
    let described = env.cli.json(&["table", "describe", "sales.items"])?;
    let columns = described["columns"].as_array().context("columns")?;
    assert_eq!(columns.len(), batch.num_columns());
    Ok(())
}

fn schema_mismatch_is_refused(storage: Storage) -> Result<()> {
    let env = Env::start(storage)?;
    let first = env.path("first.parquet");
    write_parquet(&first, &[sample(1, 10)?])?;
    env.cli.ok(&[
        "write",
        "sales.items",
        "-p",
        "ds=1",
        first.to_str().context("path")?,
    ])?;
    let wrong = RecordBatch::try_from_iter(vec![
        ("id", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
        ("value", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
        ("label", Arc::new(Int64Array::from(vec![5])) as ArrayRef),
    ])?;
    let second = env.path("second.parquet");
    write_parquet(&second, &[wrong])?;
    let out = env.cli.run(&[
        "write",
        "sales.items",
        "-p",
        "ds=1",
        second.to_str().context("path")?,
    ])?;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("\"label\""), "names the column: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    let history = env.cli.json(&["history", "sales.items", "-p", "ds=1"])?;
    assert_eq!(
        history.as_array().map(Vec::len),
        Some(1),
        "the partition is unchanged"
    );

    // The refused batch was given up at once (AbortWrite), not left to its lease.
    let committed = history[0]["batch_id"]
        .as_str()
        .context("batch id")?
        .to_owned();
    let refused: Vec<String> = env
        .stored_files()?
        .iter()
        .filter_map(|f| {
            f.split("_batch=")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned)
        })
        .filter(|id| *id != committed)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "one refused batch in storage: {refused:?}"
    );
    let state = tokio::runtime::Runtime::new()?.block_on(async {
        let mut client = env.server.client().await?;
        let batch = client
            .get_batch(batchstore_proto::v1::GetBatchRequest {
                batch_id: refused[0].clone(),
            })
            .await?
            .into_inner()
            .batch
            .context("batch")?;
        anyhow::Ok(batch.state)
    })?;
    assert_eq!(state, batchstore_proto::v1::BatchState::Aborted as i32);

    let usage = env.cli.run(&["read"])?;
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
    Ok(())
}

fn killed_write_changes_nothing(storage: Storage) -> Result<()> {
    let env = Env::start(storage)?;
    let small = env.path("small.parquet");
    let original = sample(1, 100)?;
    write_parquet(&small, std::slice::from_ref(&original))?;
    let first = env.cli.json(&[
        "write",
        "sales.items",
        "-p",
        "ds=1",
        small.to_str().context("path")?,
    ])?;
    let files_before = env.stored_files()?;

    let big = env.path("big.parquet");
    let chunks = (0..40)
        .map(|i| sample(i + 2, 100_000))
        .collect::<Result<Vec<_>>>()?;
    write_parquet(&big, &chunks)?;
    let mut child = env
        .cli
        .command(&[
            "write",
            "sales.items",
            "-p",
            "ds=1",
            big.to_str().context("path")?,
            "--rows-per-file",
            "50000",
        ])?
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait until the upload has started: a new data file exists in storage.
    let mut started = false;
    for _ in 0..2000 {
        if env.stored_files()?.len() > files_before.len() {
            started = true;
            break;
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?;
    let status = child.wait()?;
    assert!(started, "the upload never started");
    assert_eq!(
        status.code(),
        None,
        "tablectl was killed mid-upload, not finished"
    );

    let history = env.cli.json(&["history", "sales.items", "-p", "ds=1"])?;
    let entries = history.as_array().context("list")?;
    assert_eq!(entries.len(), 1, "history unchanged");
    assert_eq!(entries[0]["batch_id"], first["batch_id"]);
    let out = env.path("after.parquet");
    env.cli.ok(&[
        "read",
        "sales.items",
        "-p",
        "ds=1",
        "-o",
        out.to_str().context("path")?,
    ])?;
    assert_same_data(&original, &read_parquet(&out)?, "current data unchanged");
    Ok(())
}

/// Partitions written with their columns in different orders, one nullable and one not, and
/// with dictionary indexes of different widths, read back through tablectl whole and
/// projected: every value lands in its own column (matched by name, never by position).
fn reads_match_columns_by_name_across_partitions(storage: Storage) -> Result<()> {
    use arrow_schema::{DataType, Field, Schema};
    let env = Env::start(storage)?;
    let dict8 = DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8));
    let dict16 = DataType::Dictionary(Box::new(DataType::Int16), Box::new(DataType::Utf8));
    let labels8: DictionaryArray<arrow_array::types::Int8Type> =
        vec!["x", "y", "x"].into_iter().collect();
    let labels16: DictionaryArray<arrow_array::types::Int16Type> =
        vec!["z", "z", "w"].into_iter().collect();
    // ds=1: (a, b, c), a nullable with a null, int8 dictionary.
    let first = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, false),
            Field::new("c", dict8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
            Arc::new(StringArray::from(vec!["one", "two", "three"])),
            Arc::new(labels8),
        ],
    )?;
    // ds=2: (c, b, a), a not null, int16 dictionary.
    let second = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("c", dict16, true),
            Field::new("b", DataType::Utf8, false),
            Field::new("a", DataType::Int64, false),
        ])),
        vec![
            Arc::new(labels16),
            Arc::new(StringArray::from(vec!["four", "five", "six"])),
            Arc::new(Int64Array::from(vec![4, 5, 6])),
        ],
    )?;
    for (ds, batch) in [("1", &first), ("2", &second)] {
        let file = env.path(&format!("in{ds}.parquet"));
        write_parquet(&file, std::slice::from_ref(batch))?;
        let partition = format!("ds={ds}");
        env.cli.ok(&[
            "write",
            "sales.items",
            "-p",
            &partition,
            file.to_str().context("path")?,
        ])?;
    }
    let whole = env.path("whole.csv");
    env.cli
        .ok(&["read", "sales.items", "-o", whole.to_str().context("path")?])?;
    let (header, rows) = sorted_csv(&whole)?;
    assert_eq!(header, "a,b,c,ds");
    assert_eq!(
        rows,
        [
            ",two,y,1",
            "1,one,x,1",
            "3,three,x,1",
            "4,four,z,2",
            "5,five,z,2",
            "6,six,w,2"
        ]
    );
    // Projection by name, in the order asked for.
    let projected = env.path("projected.csv");
    env.cli.ok(&[
        "read",
        "sales.items",
        "--columns",
        "b,a",
        "-o",
        projected.to_str().context("path")?,
    ])?;
    let (header, rows) = sorted_csv(&projected)?;
    assert!(header.starts_with("b,a"), "{header}");
    let values: Vec<&str> = rows
        .iter()
        .map(|r| r.rsplit_once(',').map_or(r.as_str(), |(v, _)| v))
        .collect();
    assert_eq!(
        values,
        ["five,5", "four,4", "one,1", "six,6", "three,3", "two,"]
    );
    // One partition reads back in the table's column order, without the key column.
    let one = env.path("one.parquet");
    env.cli.ok(&[
        "read",
        "sales.items",
        "-p",
        "ds=2",
        "-o",
        one.to_str().context("path")?,
    ])?;
    let back = read_parquet(&one)?;
    let names: Vec<String> = back
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(back.column(0).as_ref(), second.column(2).as_ref());
    assert_eq!(back.column(1).as_ref(), second.column(1).as_ref());
    Ok(())
}

/// `tablectl manifest` lists exactly the files of the resolved selection (a `--where` filter
/// resolved by the metastore, a version selector), each one in storage with its size and rows;
/// `tablectl read --where` reads exactly the matching partitions; a bad condition is refused.
fn manifest_lists_exactly_the_files_a_selection_reads(storage: Storage) -> Result<()> {
    let env = Env::start(storage)?;
    for ds in 1..=4 {
        let file = env.path(&format!("in{ds}.parquet"));
        write_parquet(&file, &[sample(ds, 10 * ds)?])?;
        let partition = format!("ds={ds}");
        env.cli.ok(&[
            "write",
            "sales.items",
            "-p",
            &partition,
            file.to_str().context("path")?,
        ])?;
    }
    // A second version of ds=3: the manifest of version 1 must not list it.
    let file = env.path("again.parquet");
    write_parquet(&file, &[sample(9, 7)?])?;
    env.cli.ok(&[
        "write",
        "sales.items",
        "-p",
        "ds=3",
        file.to_str().context("path")?,
    ])?;

    let stored = env.stored_files()?;
    let in_storage = |path: &str| match storage {
        Storage::Local => stored.iter().any(|f| f == path),
        Storage::S3 => path
            .strip_prefix("lake/")
            .is_some_and(|key| stored.iter().any(|f| f == key)),
    };
    for (args, want) in [
        (vec!["--where", "ds >= 3"], vec![("3", 7), ("4", 40)]),
        (vec!["-w", "ds in (1, 4)", "-w", "ds != 4"], vec![("1", 10)]),
        (
            vec!["--version", "1", "--where", "ds > 2"],
            vec![("3", 30), ("4", 40)],
        ),
        (vec!["-p", "ds=2", "--where", "ds = 1"], vec![]),
    ] {
        let mut all = vec!["manifest", "sales.items"];
        all.extend(args.iter().copied());
        let manifest = env.cli.json(&all)?;
        let files = manifest["files"].as_array().context("files")?;
        let mut got: Vec<(String, i64)> = files
            .iter()
            .map(|f| {
                (
                    f["partition"][0][1].as_str().unwrap_or_default().to_owned(),
                    f["rows"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        got.sort();
        let want: Vec<(String, i64)> = want.iter().map(|(d, r)| ((*d).to_owned(), *r)).collect();
        assert_eq!(got, want, "{args:?}");
        for f in files {
            let path = f["path"].as_str().context("path")?;
            assert!(in_storage(path), "{path} is not in storage: {stored:?}");
            assert!(f["size_bytes"].as_i64().unwrap_or(0) > 0);
            let scheme = if storage == Storage::S3 {
                "s3://"
            } else {
                "file://"
            };
            assert!(f["uri"].as_str().is_some_and(|u| u.starts_with(scheme)));
        }
        let names: Vec<&str> = manifest["schema"]
            .as_array()
            .context("schema")?
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(names.last(), Some(&"ds"), "partition keys come last");
    }
    let out = env.path("some.csv");
    env.cli.ok(&[
        "read",
        "sales.items",
        "--where",
        "ds in ('1', '4')",
        "-o",
        out.to_str().context("path")?,
    ])?;
    let (header, rows) = sorted_csv(&out)?;
    let ds_index = header
        .split(',')
        .position(|c| c == "ds")
        .context("ds column")?;
    let mut seen: Vec<String> = rows
        .iter()
        .filter_map(|r| r.split(',').nth(ds_index).map(str::to_owned))
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen, ["1", "4"]);
    assert_eq!(rows.len(), 50);
    for bad in ["ds ~ 1", "nope = 1", "ds in ()"] {
        let refused = env.cli.run(&["manifest", "sales.items", "--where", bad])?;
        assert!(!refused.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            stderr.contains("filter") || stderr.contains("comparison"),
            "{bad}: {stderr}"
        );
    }
    Ok(())
}
