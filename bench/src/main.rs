//! `metastore-bench`: commit throughput and latency, and resolve latency, of the real metastore
//! on SQLite and PostgreSQL, next to `pgbench` doing a comparable single-row update transaction.
//!
//! A benchmark, not a test: it prints figures and asserts nothing. Run it with
//! `make bench-metastore` (release build).

use anyhow::{Context, Result};
use batchstore_proto::v1 as pb;
use batchstore_tests::{
    Backend, Metastore, TestDatabase, int_schema, percentile, spec, table_ref, upload,
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
    /// Commits per client-count run (0: no commit runs).
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
    /// Versions of the one partition whose version and as-of reads are measured (0: skip).
    #[arg(long, default_value_t = 10_000)]
    versions: usize,
    /// Seconds for each pgbench run.
    #[arg(long, default_value_t = 10)]
    pgbench_seconds: u32,
    /// An existing catalog database (sqlite://… or postgres://…) to run on instead of a fresh
    /// one per backend; it is kept, and a resolve table it already holds is not written again,
    /// so the resolve figures of a large table can be taken again without populating it anew.
    #[arg(long)]
    database_url: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backends = match &args.database_url {
        Some(url) if url.starts_with("postgres") => vec!["postgres".to_owned()],
        Some(_) => vec!["sqlite".to_owned()],
        None => args.backends.clone(),
    };
    for name in &backends {
        let backend = match name.as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" => Backend::Postgres,
            other => anyhow::bail!("unknown backend {other}; use sqlite or postgres"),
        };
        let (url, _fresh) = match &args.database_url {
            Some(url) => (url.clone(), None),
            None => {
                let db = TestDatabase::create(backend)?;
                (db.url.clone(), Some(db))
            }
        };
        let server = Metastore::start(&url, &[])?;
        let mut client = server.client().await?;
        client
            .create_namespace(pb::CreateNamespaceRequest {
                name: "bench".into(),
                if_not_exists: true,
            })
            .await?;
        // `--commits 0` skips the commit runs (as on a reused database, whose tables exist).
        for &clients in args.clients.iter().filter(|_| args.commits > 0) {
            for spread in [Spread::Partitions, Spread::Tables] {
                if clients == 1 && spread == Spread::Tables {
                    continue;
                }
                let (rate, latencies) = commits(&server, clients, args.commits, spread).await?;
                println!(
                    "{name:8} commit   clients={clients:2} {:>21}  {rate:8.0} commits/s  p50 {:6.2} ms  p99 {:6.2} ms",
                    spread.describe(),
                    percentile(&latencies, 50.0),
                    percentile(&latencies, 99.0)
                );
            }
        }
        if args.versions > 0 {
            let (version, as_of) = deep_history(&server, args.versions, args.resolves).await?;
            println!(
                "{name:8} resolve  versions={:7}  by version p50 {:6.3} ms  p99 {:6.3} ms; as of p50 {:6.3} ms  p99 {:6.3} ms",
                args.versions,
                percentile(&version, 50.0),
                percentile(&version, 99.0),
                percentile(&as_of, 50.0),
                percentile(&as_of, 99.0)
            );
        }
        for &n in &args.partitions {
            let table = format!("resolve_{n}");
            populate(&server, &table, n).await?;
            if backend == Backend::Postgres {
                at_rest(&url)?;
            }
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

/// Where concurrent committers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spread {
    /// Each client its own partition of one table.
    Partitions,
    /// Each client its own table.
    Tables,
}

impl Spread {
    fn describe(self) -> &'static str {
        match self {
            Spread::Partitions => "partitions of 1 table",
            Spread::Tables => "tables",
        }
    }
}

/// `clients` tasks, each committing to its own partition (of one table, or of a table of its
/// own), `total` commits in all. Batches are begun and their files uploaded first (before any
/// commit fixes the tables' schemas), so the figures are of Commit alone: commits/s and the
/// latency of each Commit call in ms.
async fn commits(
    server: &Metastore,
    clients: usize,
    total: usize,
    spread: Spread,
) -> Result<(f64, Vec<f64>)> {
    let per_client = total / clients;
    let mut prepared = Vec::with_capacity(clients);
    for c in 0..clients {
        let mut client = server.client().await?;
        let partition = spec(&[("ds", &format!("c{clients}-{c}"))]);
        let table = match spread {
            Spread::Partitions => format!("commits_{clients}"),
            Spread::Tables => format!("commits_{clients}_{c}"),
        };
        if c == 0 || spread == Spread::Tables {
            client
                .create_table(batchstore_tests::ds_table("bench", &table))
                .await?;
        }
        let mut batches = Vec::with_capacity(per_client);
        for _ in 0..per_client {
            let begun = client
                .begin_write(pb::BeginWriteRequest {
                    table: table_ref("bench", &table),
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
/// multi-partition commits of 1,000. A table that exists already (`--database-url`) is
/// completed: only the commits whose partitions it lacks are made.
async fn populate(server: &Metastore, table: &str, n: usize) -> Result<()> {
    let mut client = server.client().await?;
    let created = client
        .create_table(batchstore_tests::ds_table("bench", table))
        .await;
    let resume = match created {
        Err(status) if status.code() == tonic::Code::AlreadyExists => {
            eprintln!("{table} exists: writing only what it lacks");
            true
        }
        other => {
            other?;
            false
        }
    };
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
                // A commit is all or nothing: its first partition says whether it was made.
                if resume && is_written(&mut client, &table, chunk[0]).await? {
                    continue;
                }
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

/// Whether partition `i` of the populated table has a version.
async fn is_written(
    client: &mut pb::metastore_client::MetastoreClient<tonic::transport::Channel>,
    table: &str,
    i: usize,
) -> Result<bool> {
    let resolved = client
        .resolve_partitions(pb::ResolvePartitionsRequest {
            table: table_ref("bench", table),
            partitions: vec![spec(&[("ds", &format!("p{i:07}"))])],
            ..Default::default()
        })
        .await;
    match resolved {
        Ok(_) => Ok(true),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(false),
        Err(status) => Err(status.into()),
    }
}

/// Resolves made first and not measured: a fresh metastore prepares its statements on each
/// pooled connection at first use, which is start-up, not the latency of a running service.
const WARM_UP: usize = 500;

/// Latency in ms of resolving one random partition's current batch, `count` times (after
/// [`WARM_UP`] unmeasured ones).
async fn resolves(server: &Metastore, table: &str, n: usize, count: usize) -> Result<Vec<f64>> {
    let mut client = server.client().await?;
    let mut latencies = Vec::with_capacity(count + WARM_UP);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..count + WARM_UP {
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
    Ok(latencies.split_off(WARM_UP))
}

/// One partition with `versions` versions, then the latency in ms of resolving a random
/// version of it, and of an as-of read at a random one of its commit times, `count` times each.
async fn deep_history(
    server: &Metastore,
    versions: usize,
    count: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let mut client = server.client().await?;
    client
        .create_table(batchstore_tests::ds_table("bench", "deep"))
        .await?;
    let partition = spec(&[("ds", "deep")]);
    let started = Instant::now();
    let mut stamps = Vec::with_capacity(versions);
    for _ in 0..versions {
        let begun = client
            .begin_write(pb::BeginWriteRequest {
                table: table_ref("bench", "deep"),
                partition: Some(partition.clone()),
                lease_seconds: 0,
            })
            .await?
            .into_inner();
        let committed = client
            .commit(pb::CommitRequest {
                updates: vec![pb::PartitionUpdate {
                    batch_id: begun.batch_id,
                    files: vec![],
                    arrow_schema: int_schema(),
                    expected_current_batch_id: None,
                    input_batch_ids: vec![],
                }],
                message: String::new(),
                actor: "bench".into(),
            })
            .await?
            .into_inner();
        stamps.push(committed.committed[0].committed_at_micros);
    }
    eprintln!(
        "wrote {versions} versions of one partition in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut by_version = Vec::with_capacity(count);
    let mut as_of = Vec::with_capacity(count);
    for _ in 0..count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let i = (state % versions as u64) as usize;
        for (kind, out) in [
            (pb::selector::Kind::Version(i as i64 + 1), &mut by_version),
            (pb::selector::Kind::AsOfMicros(stamps[i]), &mut as_of),
        ] {
            let t = Instant::now();
            let resolved = client
                .resolve_partitions(pb::ResolvePartitionsRequest {
                    table: table_ref("bench", "deep"),
                    partitions: vec![partition.clone()],
                    selector: Some(pb::Selector { kind: Some(kind) }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            out.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(resolved.partitions[0].version == i as i64 + 1);
        }
    }
    Ok((by_version, as_of))
}

/// Lets PostgreSQL settle after a bulk load, as a catalog in service would be: a checkpoint
/// (so that the load's writeback does not run under the measurement) and the statistics
/// autovacuum would gather soon after a load.
fn at_rest(url: &str) -> Result<()> {
    let name = url.rsplit('/').next().context("database name")?;
    let ok = psql(name)
        .args(["-qc", "VACUUM ANALYZE", "-c", "CHECKPOINT"])
        .status()?;
    anyhow::ensure!(ok.success(), "VACUUM ANALYZE / CHECKPOINT failed");
    Ok(())
}

/// `psql` on database `name` of the local PostgreSQL, as the tests use it.
fn psql(name: &str) -> Command {
    let mut command = Command::new("psql");
    command.args(["-h", "127.0.0.1", "-U", "postgres", "-d", name]);
    command
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
    let ok = psql(&name).args(["-qc", setup]).status()?;
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
