//! `gc-bench`: garbage collection of many expired batches through the real metastore, on a
//! local warehouse and on S3 (moto): the run's time, files deleted per second, and catalog
//! statements per batch (counted from the metastore's own statement log).
//!
//! Batches are written through the client (one-row Parquet files, 1,000 partitions per atomic
//! commit), then retention is set to one version and one GC run deletes every older version.
//! A benchmark, not a test: it prints figures. Run it with `make bench-gc`.

use anyhow::{Context, Result};
use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use batchstore_client::{
    Client, GcScope, KeyType, PartitionData, PartitionKey, PartitionSpec, Retention, Rows,
    TableName, WriteOptions, WriteRequest,
};
use batchstore_tests::s3::S3Server;
use batchstore_tests::{Backend, Metastore, TestDatabase};
use clap::Parser;
use std::sync::Arc;
use std::time::Instant;

/// Set in the child run that benchmarks S3: the moto endpoint the parent started.
const S3_CHILD: &str = "BATCHSTORE_BENCH_S3_ENDPOINT";

#[derive(Debug, Parser)]
#[command(about = "Benchmark garbage collection: time, files/s, statements per batch")]
struct Args {
    /// Expired batches to collect.
    #[arg(long, default_value_t = 100_000)]
    batches: usize,
    /// Partitions written per commit (each version of the table is one commit).
    #[arg(long, default_value_t = 1000)]
    partitions: usize,
    /// Storages to run: local, s3.
    #[arg(long, value_delimiter = ',', default_value = "local,s3")]
    storage: Vec<String>,
    /// The catalog database: sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(endpoint) = std::env::var(S3_CHILD) {
        let s3 = S3Server::attach(&endpoint, "gcbench");
        return runtime.block_on(run(&args, Some(&s3)));
    }
    for storage in &args.storage {
        match storage.as_str() {
            "local" => runtime.block_on(run(&args, None))?,
            "s3" => {
                // The client reads AWS_* from its environment: run again as a child with them.
                let s3 = S3Server::start("gcbench")?;
                let status = std::process::Command::new(std::env::current_exe()?)
                    .args(std::env::args().skip(1))
                    .envs(s3.env())
                    .env(S3_CHILD, &s3.endpoint)
                    .status()?;
                anyhow::ensure!(status.success(), "the S3 run failed");
            }
            other => anyhow::bail!("unknown storage {other}; use local or s3"),
        }
    }
    Ok(())
}

async fn run(args: &Args, s3: Option<&S3Server>) -> Result<()> {
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => anyhow::bail!("unknown backend {other}"),
    };
    let db = TestDatabase::create(backend)?;
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("metastore.log");
    let (warehouse, env) = match s3 {
        Some(s3) => ("s3://gcbench/wh".to_owned(), s3.env()),
        None => (dir.path().join("warehouse").display().to_string(), vec![]),
    };
    let mut env = env;
    // Every statement the metastore runs is logged, to be counted.
    env.push(("BATCHSTORE_LOG".into(), "warn,sqlx::query=debug".into()));
    let server = Metastore::start_logging(
        "127.0.0.1:0",
        &db.url,
        &warehouse,
        &["--no-gc"],
        &env,
        Some(&log),
    )?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    let table = TableName::new("gc", "bench");
    client.create_namespace("gc", true).await?;
    client
        .create_table(
            &table,
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    let versions = args.batches.div_ceil(args.partitions) + 1;
    let started = Instant::now();
    for version in 0..versions {
        let partitions = (0..args.partitions)
            .map(|p| {
                let batch = one_row(version as i64);
                PartitionData {
                    partition: PartitionSpec::named([("ds", format!("p{p:05}"))]),
                    expected: None,
                    data: Rows::Batches(batch.schema(), vec![batch.clone()]),
                }
            })
            .collect();
        client
            .write_partitions(
                WriteRequest {
                    table: table.clone(),
                    partitions,
                    message: String::new(),
                    inputs: vec![],
                },
                &WriteOptions::default(),
                None,
            )
            .await?;
        if version % 10 == 0 {
            eprintln!(
                "wrote version {}/{versions} of {} partitions ({:.0} s)",
                version + 1,
                args.partitions,
                started.elapsed().as_secs_f64()
            );
        }
    }
    client
        .set_retention(
            "gc",
            Some("bench"),
            &Retention {
                keep_versions: Some(1),
                keep_for: None,
            },
        )
        .await?;
    let dry_started = Instant::now();
    let dry = client
        .collect_garbage(&GcScope::All, true, |_| {})
        .await?
        .done;
    let dry_time = dry_started.elapsed().as_secs_f64();
    let before = statements(&log)?;
    let gc_started = Instant::now();
    let done = client
        .collect_garbage(&GcScope::All, false, |_| {})
        .await?
        .done;
    let elapsed = gc_started.elapsed().as_secs_f64();
    // The audit writer flushes within 100 ms: its statements count too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let ran = statements(&log)? - before;
    anyhow::ensure!(
        done.batches_deleted == dry.batches_expired && done.batches_deleted > 0,
        "the run deleted {} batches, the dry run counted {}",
        done.batches_deleted,
        dry.batches_expired
    );
    println!(
        "{:6} {:8} gc of {} expired batches: {:.2} s ({:.0} batches/s, {:.0} files/s, {:.1} MB), \
         {:.4} catalog statements per batch ({ran} in all); dry run {:.2} s",
        if s3.is_some() { "s3" } else { "local" },
        args.backend,
        done.batches_deleted,
        elapsed,
        done.batches_deleted as f64 / elapsed,
        done.files_deleted as f64 / elapsed,
        done.bytes_deleted as f64 / 1e6,
        ran as f64 / done.batches_deleted as f64,
        dry_time
    );
    Ok(())
}

fn one_row(value: i64) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value]))])
        .expect("a valid batch")
}

/// Statements the metastore has logged so far.
fn statements(log: &std::path::Path) -> Result<usize> {
    let text = std::fs::read_to_string(log).context("reading the metastore's log")?;
    Ok(text.lines().filter(|l| l.contains("sqlx::query")).count())
}
