//! Kills: writers and the metastore killed with SIGKILL at random moments, and PostgreSQL
//! restarted under load. Whatever the moment, no acknowledged commit is lost, no commit is
//! recorded twice, and no partial batch is ever visible. One test runs every scenario in turn,
//! since restarting PostgreSQL would disturb other tests running beside it.

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use batchstore_client::{
    Client, ClientError, KeyType, PartitionData, PartitionKey, PartitionSpec, Rows, TableName,
    WriteOptions, WriteRequest,
};
use batchstore_tests::tablectl::Tablectl;
use batchstore_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A small seeded generator of kill moments (xorshift).
struct Moments(u64);

impl Moments {
    fn next_ms(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn table() -> TableName {
    TableName::new("sales", "kills")
}

async fn create(client: &Client) -> anyhow::Result<()> {
    client.create_namespace("sales", true).await?;
    client
        .create_table(
            &table(),
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            true,
        )
        .await?;
    Ok(())
}

/// `rows` rows holding the write's number, and a column of scattered values that makes the
/// data take a while to encode and upload.
fn values(write: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("write", DataType::Int64, false),
        Field::new("noise", DataType::Int64, false),
    ]));
    let noise = Int64Array::from_iter_values(
        (0..rows as i64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64)),
    );
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![write; rows])),
            Arc::new(noise),
        ],
    )
    .expect("a valid batch")
}

async fn catalog(client: &Client) -> anyhow::Result<Vec<(String, String, i64, i64)>> {
    trace_versions(client, &table()).await
}

/// `tablectl write` killed at a random moment: the partition holds either the old or the new
/// data, whole.
async fn writer_kills(backend: Backend, moments: &mut Moments) -> anyhow::Result<(usize, usize)> {
    let db = TestDatabase::create(backend)?;
    let server = Metastore::start(&db.url, &[])?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    create(&client).await?;
    let tablectl = Tablectl {
        endpoint: server.endpoint(),
        env: vec![],
    };
    let dir = tempfile::tempdir()?;
    let (mut committed, mut killed) = (0, 0);
    for round in 0..12i64 {
        let path = dir.path().join(format!("round-{round}.parquet"));
        let batch = values(round, 3_000_000);
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            std::fs::File::create(&path)?,
            batch.schema(),
            None,
        )?;
        writer.write(&batch)?;
        writer.close()?;
        let before = catalog(&client).await?;
        let mut child = tablectl
            .command(&[
                "write",
                "sales.kills",
                "-p",
                "ds=x",
                &path.display().to_string(),
            ])?
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        tokio::time::sleep(Duration::from_millis(moments.next_ms(1500))).await;
        if child.try_wait()?.is_none() {
            killed += 1;
        }
        child.kill()?;
        child.wait()?;
        let after = catalog(&client).await?;
        let new: Vec<_> = after.iter().filter(|e| !before.contains(e)).collect();
        match new.as_slice() {
            [] => {}
            [(_, _, version, write)] => {
                anyhow::ensure!(
                    *write == round,
                    "round {round}: version {version} holds write {write}"
                );
                committed += 1;
            }
            more => anyhow::bail!("round {round}: one write made several versions: {more:?}"),
        }
    }
    Ok((committed, killed))
}

/// Sequential two-partition writes while the metastore is killed and restarted (or, with
/// `restart_postgres`, while PostgreSQL is restarted): every acknowledged write is in the
/// catalog exactly as acknowledged, and nothing else is but writes whose outcome was unknown.
async fn server_kills(
    backend: Backend,
    moments: &mut Moments,
    restart_postgres: bool,
) -> anyhow::Result<String> {
    let db = TestDatabase::create(backend)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let warehouse = tempfile::tempdir()?;
    let warehouse = warehouse.path().display().to_string();
    let mut server = Metastore::start_at(&listen, &db.url, &warehouse, &[], &[])?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    create(&client).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = client.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acknowledged: BTreeMap<i64, Vec<(String, String, i64)>> = BTreeMap::new();
            let (mut unknown, mut refused) = (BTreeSet::new(), BTreeMap::new());
            let mut write = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let partitions = ["p", "q"]
                    .iter()
                    .map(|ds| {
                        let batch = values(write, 10);
                        PartitionData {
                            partition: PartitionSpec::named([("ds", *ds)]),
                            expected: None,
                            data: Rows::Batches(batch.schema(), vec![batch.clone()]),
                        }
                    })
                    .collect();
                let request = WriteRequest {
                    table: table(),
                    partitions,
                    message: format!("write {write}"),
                    inputs: vec![],
                };
                match client
                    .write_partitions(request, &WriteOptions::default(), None)
                    .await
                {
                    Ok(done) => {
                        acknowledged.insert(
                            write,
                            done.into_iter()
                                .map(|c| (c.partition[0].1.clone(), c.batch_id, c.version))
                                .collect(),
                        );
                    }
                    Err(ClientError::OutcomeUnknown(_)) => {
                        unknown.insert(write);
                    }
                    Err(error) => {
                        refused.insert(write, error);
                    }
                }
                write += 1;
            }
            (acknowledged, unknown, refused, write)
        })
    };
    let mut disruptions = 0;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150 + moments.next_ms(300))).await;
        if restart_postgres {
            let version = std::fs::read_dir("/etc/postgresql")?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .max()
                .unwrap_or_else(|| "15".into());
            let restarted = std::process::Command::new("pg_ctlcluster")
                .args([
                    "--skip-systemctl-redirect",
                    &version,
                    "main",
                    "restart",
                    "-m",
                    "immediate",
                ])
                .status()?;
            anyhow::ensure!(restarted.success(), "pg_ctlcluster restart failed");
        } else {
            drop(server);
            server = Metastore::start_at(&listen, &db.url, &warehouse, &[], &[])?;
        }
        disruptions += 1;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (acknowledged, unknown, refused, writes) = writer.await?;
    ensure_postgres()?;

    let recorded = catalog(&client).await?;
    let mut by_write: BTreeMap<i64, Vec<(String, String, i64)>> = BTreeMap::new();
    let mut batches = BTreeSet::new();
    for (ds, batch, version, write) in recorded {
        anyhow::ensure!(
            batches.insert(batch.clone()),
            "batch {batch} recorded twice"
        );
        by_write
            .entry(write)
            .or_default()
            .push((ds, batch, version));
    }
    for (write, mut made) in by_write.clone() {
        made.sort();
        anyhow::ensure!(made.len() == 2, "write {write} is partial: {made:?}");
        match acknowledged.get(&write) {
            Some(ack) => {
                let mut ack = ack.clone();
                ack.sort();
                anyhow::ensure!(
                    made == ack,
                    "write {write}: {made:?} != acknowledged {ack:?}"
                );
            }
            None => anyhow::ensure!(
                unknown.contains(&write),
                "write {write} was reported failed, yet it is in the catalog: {:?}",
                refused.get(&write)
            ),
        }
    }
    for write in acknowledged.keys() {
        anyhow::ensure!(
            by_write.contains_key(write),
            "acknowledged write {write} was lost"
        );
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for error in refused.values() {
        *kinds.entry(error.kind()).or_default() += 1;
    }
    for (write, error) in &refused {
        println!("write {write} refused: {error}");
    }
    Ok(format!(
        "{writes} writes, {disruptions} {} restarts: {} acknowledged (0 lost), {} refused \
         truthfully {kinds:?}, {} outcome unknown",
        if restart_postgres {
            "PostgreSQL"
        } else {
            "metastore SIGKILL +"
        },
        acknowledged.len(),
        refused.len(),
        unknown.len()
    ))
}

/// How many times every scenario runs (`BATCHSTORE_KILL_ROUNDS`, 1 in `make test`).
fn rounds() -> usize {
    std::env::var("BATCHSTORE_KILL_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_lose_nothing_and_show_nothing_partial() -> anyhow::Result<()> {
    let mut moments = Moments(0x5eed_2026_1202);
    for round in 1..=rounds() {
        println!("round {round}");
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let (committed, killed) = writer_kills(backend, &mut moments).await?;
            println!(
                "writer kills ({backend:?}): 12 writes, {killed} killed in flight, {committed} committed, 0 partial"
            );
            let summary = server_kills(backend, &mut moments, false).await?;
            println!("metastore kills ({backend:?}): {summary}");
        }
        let summary = server_kills(Backend::Postgres, &mut moments, true).await?;
        println!("PostgreSQL restarts: {summary}");
    }
    Ok(())
}
