//! `metastore-bench`: commit throughput and latency, and resolve latency, of the real metastore
//! on SQLite and PostgreSQL, next to `pgbench` doing a comparable single-row update transaction.
//!
//! A benchmark, not a test: it prints figures and asserts nothing. Run it with
//! `make bench-metastore` (release build).

use anyhow::{Context, Result};
use batchstore_proto::v1 as pb;
use batchstore_tests::{
    Backend, Metastore, TestDatabase, create_table, int_schema, percentile, spec, table_ref, upload,
};
use clap::Parser;
use std::process::Command;
use std::time::Instant;

#[derive(Debug, Parser)]
#[command(about = "Benchmark the metastore: commits/s, commit latency, resolve latency")]
struct Args {
    /// Backends to run: sqlite, postgres.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    /// Commits per client-count run.
    #[arg(long, default_value_t = 2000)]
    commits: usize,
    /// Concurrent clients of the commit runs.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Table sizes (partitions) for the resolve benchmark.
    #[arg(long, value_delimiter = ',', default_value = "1000,100000")]
    partitions: Vec<usize>,
    /// Resolve calls measured per table size.
    #[arg(long, default_value_t = 5000)]
    resolves: usize,
    /// Seconds for each pgbench run.
    #[arg(long, default_value_t = 10)]
    pgbench_seconds: u32,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    for name in &args.backends {
        let backend = match name.as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => anyhow::bail!("unknown backend {other}; use sqlite or postgres"),
        };
        let db = TestDatabase::create(backend)?;
        let server = Metastore::start(&db.url, &[])?;
        let mut client = server.client().await?;
        create_table(&mut client, "bench", "commits").await?;
        for &clients in &args.clients {
            let (rate, latencies) = commits(&server, clients, args.commits).await?;
            println!(
                "{name:8} commit   clients={clients:2}  {rate:8.0} commits/s  p50 {:6.2} ms  p99 {:6.2} ms",
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0)
            );
        }
        for &n in &args.partitions {
            let table = format!("resolve_{n}");
            populate(&server, &table, n).await?;
            let latencies = resolves(&server, &table, n, args.resolves).await?;
            println!(
                "{name:8} resolve  partitions={n:6}  p50 {:6.3} ms  p99 {:6.3} ms",
                percentile(&latencies, 50.0),
                percentile(&latencies, 99.0)
            );
        }
        if backend == Backend::Postgres {
            for &clients in &args.clients {
                let tps = pgbench(clients, args.pgbench_seconds)?;
                println!(
                    "postgres pgbench  clients={clients:2}  {tps:8.0} tx/s (BEGIN; UPDATE one row; COMMIT)"
                );
            }
        }
    }
    Ok(())
}

/// `clients` tasks, each committing to its own partition, `total` commits in all. Batches are
/// begun and their files uploaded first, so the figures are of Commit alone: commits/s and the
/// latency of each Commit call in ms.
async fn commits(server: &Metastore, clients: usize, total: usize) -> Result<(f64, Vec<f64>)> {
    let per_client = total / clients;
    let mut prepared = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = server.client().await?;
        let partition = spec(&[("ds", &format!("c{clients}-{c}"))]);
        let mut batches = Vec::with_capacity(per_client);
        for _ in 0..per_client {
            let begun = client
                .begin_write(pb::BeginWriteRequest {
                    table: table_ref("bench", "commits"),
                    partition: Some(partition.clone()),
                    lease_seconds: 0,
                })
                .await?
                .into_inner();
            let file = upload(&begun.location, "part-00000.parquet", 1)?;
            batches.push(pb::CommitRequest {
                updates: vec![pb::PartitionUpdate {
                    batch_id: begun.batch_id,
                    files: vec![file],
                    arrow_schema: int_schema(),
                    expected_current_batch_id: None,
                    input_batch_ids: vec![],
                }],
                message: String::new(),
                actor: "bench".into(),
            });
        }
        prepared.push((client, batches));
    }
    eprintln!("committing with {clients} clients");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (mut client, batches) in prepared {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(batches.len());
            for request in batches {
                let t = Instant::now();
                client.commit(request).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
    Ok((rate, latencies))
}

/// A table of `n` partitions, each with one committed batch, written through the API in
/// multi-partition commits of 1,000.
async fn populate(server: &Metastore, table: &str, n: usize) -> Result<()> {
    let mut client = server.client().await?;
    client
        .create_table(batchstore_tests::ds_table("bench", table))
        .await?;
    let started = Instant::now();
    let chunks: Vec<Vec<usize>> = (0..n)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(<[usize]>::to_vec)
        .collect();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let mut client = server.client().await?;
        let mine: Vec<Vec<usize>> = chunks.iter().skip(worker).step_by(8).cloned().collect();
        let table = table.to_owned();
        tasks.push(tokio::spawn(async move {
            for chunk in mine {
                let mut updates = Vec::with_capacity(chunk.len());
                for i in chunk {
                    let begun = client
                        .begin_write(pb::BeginWriteRequest {
                            table: table_ref("bench", &table),
                            partition: Some(spec(&[("ds", &format!("p{i:07}"))])),
                            lease_seconds: 0,
                        })
                        .await?
                        .into_inner();
                    updates.push(pb::PartitionUpdate {
                        batch_id: begun.batch_id,
                        files: vec![],
                        arrow_schema: int_schema(),
                        expected_current_batch_id: None,
                        input_batch_ids: vec![],
                    });
                }
                client
                    .commit(pb::CommitRequest {
                        updates,
                        message: String::new(),
                        actor: "bench".into(),
                    })
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    eprintln!(
        "populated {n} partitions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Latency in ms of resolving one random partition's current batch, `count` times.
async fn resolves(server: &Metastore, table: &str, n: usize, count: usize) -> Result<Vec<f64>> {
    let mut client = server.client().await?;
    let mut latencies = Vec::with_capacity(count);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % n as u64) as usize;
        let t = Instant::now();
        let resolved = client
            .resolve_partitions(pb::ResolvePartitionsRequest {
                table: table_ref("bench", table),
                partitions: vec![spec(&[("ds", &format!("p{i:07}"))])],
                selector: None,
                ..Default::default()
            })
            .await?
            .into_inner();
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            resolved.partitions.len() == 1,
            "partition p{i:07} did not resolve"
        );
    }
    Ok(latencies)
}

/// pgbench on a fresh database: BEGIN; UPDATE one random row of 100,000; COMMIT.
fn pgbench(clients: usize, seconds: u32) -> Result<f64> {
    let db = TestDatabase::create(Backend::Postgres)?;
    let name = db
        .url
        .rsplit('/')
        .next()
        .context("database name")?
        .to_owned();
    let setup = "CREATE TABLE p (id INT PRIMARY KEY, v BIGINT NOT NULL); \
                 INSERT INTO p SELECT g, 0 FROM generate_series(1, 100000) g;";
    let ok = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            &name,
            "-qc",
            setup,
        ])
        .status()?;
    anyhow::ensure!(ok.success(), "pgbench setup failed");
    let script = tempfile_script(
        "\\set id random(1, 100000)\nBEGIN;\nUPDATE p SET v = v + 1 WHERE id = :id;\nCOMMIT;\n",
    )?;
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(&name)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .with_context(|| format!("no tps in pgbench output: {text}"))
}

fn tempfile_script(body: &str) -> Result<std::path::PathBuf> {
    let path = std::env::temp_dir().join(format!("batchstore-pgbench-{}.sql", std::process::id()));
    std::fs::write(&path, body)?;
    Ok(path)
}
