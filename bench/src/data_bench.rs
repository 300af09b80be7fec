//! `data-bench`: the data path against its floor. Writes and reads a table (int64, float64,
//! low-cardinality string, timestamp) through the batchstore client (store → commit, resolve →
//! load) and, in the same run, as one plain Parquet file with the same compression (zstd
//! level 1) through parquet-rs directly. Reports MB/s of Arrow data and the ratio to the floor.
//!
//! A benchmark, not a test: it prints figures. Run with `make bench-data`.

use anyhow::{Context, Result};
use arrow_array::{
    ArrayRef, Float64Array, Int64Array, RecordBatch, RecordBatchIterator, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::ArrowError;
use batchstore_client::{
    Client, PartitionData, PartitionSpec, ReadRequest, Rows, TableName, WriteOptions,
};
use batchstore_tests::{Backend, Metastore, TestDatabase};
use clap::Parser;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Benchmark store/load through batchstore against plain Parquet files")]
struct Args {
    /// Rows in the table.
    #[arg(long, default_value_t = 2_000_000)]
    rows: usize,
    /// Repetitions; the best time of each is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let batches = make_table(args.rows)?;
    let megabytes = batches
        .iter()
        .map(RecordBatch::get_array_memory_size)
        .sum::<usize>() as f64
        / 1e6;
    let dir = tempfile::tempdir()?;
    let db = TestDatabase::create(Backend::Sqlite)?;
    let server = Metastore::start_with_warehouse(
        &db.url,
        &dir.path().join("warehouse").display().to_string(),
        &[],
    )?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    client.create_namespace("bench", true).await?;
    let table = TableName::new("bench", "data");
    client.create_table(&table, &[], None, false).await?;

    let (mut floor_write, mut floor_read, mut store, mut load) =
        (f64::MAX, f64::MAX, f64::MAX, f64::MAX);
    for round in 0..args.repeat {
        let path = dir.path().join(format!("plain-{round}.parquet"));
        let t = Instant::now();
        plain_write(&path, &batches)?;
        floor_write = floor_write.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let rows = plain_read(&path)?;
        floor_read = floor_read.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(rows == args.rows, "plain read returned {rows} rows");

        let data = Box::new(RecordBatchIterator::new(
            batches.clone().into_iter().map(Ok::<_, ArrowError>),
            batches[0].schema(),
        ));
        let t = Instant::now();
        let committed = client
            .write(
                &table,
                PartitionData {
                    partition: PartitionSpec::default(),
                    expected: None,
                    data: Rows::Stream(data),
                },
                "bench",
                &WriteOptions::default(),
                None,
            )
            .await?;
        store = store.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            committed.rows as usize == args.rows,
            "stored {} rows",
            committed.rows
        );
        let request = ReadRequest {
            table: Some(table.clone()),
            partitions: vec![PartitionSpec::default()],
            ..ReadRequest::default()
        };
        let t = Instant::now();
        let read = client.read(&request, None).await?;
        load = load.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            read.num_rows() == args.rows,
            "loaded {} rows",
            read.num_rows()
        );
    }
    println!(
        "table: {} rows, {megabytes:.1} MB of Arrow data (int64, float64, low-cardinality string, timestamp)",
        args.rows
    );
    println!(
        "plain parquet write  {:8.1} MB/s  ({:.3} s)",
        megabytes / floor_write,
        floor_write
    );
    println!(
        "batchstore store     {:8.1} MB/s  ({:.3} s)  ratio {:.2}x",
        megabytes / store,
        store,
        floor_write / store
    );
    println!(
        "plain parquet read   {:8.1} MB/s  ({:.3} s)",
        megabytes / floor_read,
        floor_read
    );
    println!(
        "batchstore load      {:8.1} MB/s  ({:.3} s)  ratio {:.2}x",
        megabytes / load,
        load,
        floor_read / load
    );
    Ok(())
}

/// The benchmark table, in batches of 64k rows as a data frame library would hand them over.
fn make_table(rows: usize) -> Result<Vec<RecordBatch>> {
    let labels: Vec<String> = (0..100).map(|i| format!("category-{i:03}")).collect();
    let mut batches = Vec::new();
    let mut start = 0usize;
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    while start < rows {
        let n = (rows - start).min(65_536);
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let ids: Vec<i64> = (start..start + n).map(|i| i as i64).collect();
        let values: Vec<f64> = (0..n)
            .map(|_| (next() % 1_000_000) as f64 / 100.0)
            .collect();
        let names: Vec<&str> = (0..n)
            .map(|_| labels[(next() % 100) as usize].as_str())
            .collect();
        let times: Vec<i64> = (start..start + n)
            .map(|i| 1_477_915_200_000_000 + i as i64 * 1_000_000)
            .collect();
        batches.push(RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("value", Arc::new(Float64Array::from(values)) as ArrayRef),
            ("label", Arc::new(StringArray::from(names)) as ArrayRef),
            (
                "at",
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")) as ArrayRef,
            ),
        ])?);
        start += n;
    }
    Ok(batches)
}

fn plain_write(path: &std::path::Path, batches: &[RecordBatch]) -> Result<()> {
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
        .build();
    let file = std::fs::File::create(path)?;
    let mut writer = ArrowWriter::try_new(file, batches[0].schema(), Some(properties))?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.close()?;
    Ok(())
}

fn plain_read(path: &std::path::Path) -> Result<usize> {
    let file = std::fs::File::open(path).context("open")?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut rows = 0;
    for batch in reader {
        rows += batch?.num_rows();
    }
    Ok(rows)
}
