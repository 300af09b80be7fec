//! The lifecycle scenarios, shared by the local (`lifecycle.rs`) and S3 (`lifecycle_s3.rs`)
//! test binaries.

use arrow_array::{Int64Array, RecordBatch, RecordBatchIterator};
use arrow_schema::{DataType, Field, Schema};
use batchstore_client::{
    Client, ClientError, CommitInfo, GcCounts, GcScope, KeyType, LeaseName, PartitionData,
    PartitionKey, PartitionSpec, ReadRequest, Retention, RollbackTo, Rows, Selector, TableName,
    TagTarget, WriteOptions,
};
use batchstore_proto::v1 as pb;
use batchstore_tests::s3::S3Server;
use batchstore_tests::tablectl::Tablectl;
use batchstore_tests::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn table() -> TableName {
    TableName::new("lc", "t")
}

pub fn ds(value: &str) -> PartitionSpec {
    PartitionSpec::named([("ds", value)])
}

/// Where the warehouse is: a local directory, or a bucket prefix on moto.
pub enum Storage {
    Local,
    S3(S3Server),
}

/// A metastore on a backend and a storage, with a client.
pub struct Env {
    pub server: Metastore,
    pub client: Client,
    pub storage: Storage,
    _db: TestDatabase,
}

impl Env {
    /// A metastore on `backend` with a local warehouse.
    pub async fn start(backend: Backend, extra: &[&str]) -> anyhow::Result<Self> {
        let db = TestDatabase::create(backend)?;
        let server = Metastore::start(&db.url, extra)?;
        Self::with(db, server, Storage::Local).await
    }

    /// A metastore on `backend` with its warehouse on moto. The client reads S3 through this
    /// process's `AWS_*` variables, which the caller has set.
    pub async fn start_on_s3(backend: Backend, s3: S3Server) -> anyhow::Result<Self> {
        let db = TestDatabase::create(backend)?;
        let server = Metastore::start_with_env(&db.url, "s3://lifecycle/wh", &[], &s3.env())?;
        Self::with(db, server, Storage::S3(s3)).await
    }

    async fn with(db: TestDatabase, server: Metastore, storage: Storage) -> anyhow::Result<Self> {
        let client = Client::connect(Some(&server.endpoint())).await?;
        client.create_namespace("lc", true).await?;
        client
            .create_table(
                &table(),
                &[PartitionKey {
                    name: "ds".into(),
                    key_type: KeyType::String,
                }],
                None,
                false,
            )
            .await?;
        Ok(Env {
            server,
            client,
            storage,
            _db: db,
        })
    }

    /// Every object under the warehouse, relative to its root.
    fn objects(&self) -> anyhow::Result<BTreeSet<String>> {
        match &self.storage {
            Storage::Local => {
                let mut out = BTreeSet::new();
                walk(&self.server.warehouse, &self.server.warehouse, &mut out)?;
                Ok(out)
            }
            Storage::S3(s3) => Ok(s3
                .list("wh/")?
                .into_iter()
                .filter_map(|k| k.strip_prefix("wh/").map(str::to_owned))
                .collect()),
        }
    }

    /// Stores a Parquet file of `n` rows holding `value` (the table's schema) in a batch
    /// location, as a writer would; returns its entry.
    pub fn put(
        &self,
        location: &str,
        name: &str,
        value: i64,
        n: usize,
    ) -> anyhow::Result<pb::DataFile> {
        let batch = rows(value, n);
        match &self.storage {
            Storage::Local => Ok(upload_batch(location, name, &batch)?),
            Storage::S3(s3) => {
                let dir = tempfile::tempdir()?;
                let local = format!("file://{}", dir.path().display());
                let file = upload_batch(&local, name, &batch)?;
                let key = location
                    .strip_prefix("s3://lifecycle/")
                    .ok_or_else(|| anyhow::anyhow!("unexpected location {location}"))?;
                s3.put(
                    &format!("{key}/{name}"),
                    &std::fs::read(dir.path().join(name))?,
                )?;
                Ok(file)
            }
        }
    }

    /// Stores a stray object at `relative` (to the warehouse root).
    fn stray(&self, relative: &str) -> anyhow::Result<()> {
        match &self.storage {
            Storage::Local => {
                let path = self.server.warehouse.join(relative);
                std::fs::create_dir_all(path.parent().expect("a parent"))?;
                std::fs::write(path, b"stray")?;
                Ok(())
            }
            Storage::S3(s3) => s3.put(&format!("wh/{relative}"), b"stray"),
        }
    }

    /// The objects of a batch directory (relative to the root).
    fn batch_objects(&self, location: &str) -> anyhow::Result<BTreeSet<String>> {
        let dir = relative(location);
        Ok(self
            .objects()?
            .into_iter()
            .filter(|o| o.starts_with(&format!("{dir}/")))
            .collect())
    }

    fn tablectl(&self) -> Tablectl {
        Tablectl {
            endpoint: self.server.endpoint(),
            env: match &self.storage {
                Storage::Local => vec![],
                Storage::S3(s3) => s3.env(),
            },
        }
    }
}

pub fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            out.insert(path.strip_prefix(root)?.display().to_string());
        }
    }
    Ok(())
}

/// A batch location relative to the warehouse root.
pub fn relative(location: &str) -> String {
    let after = location
        .strip_prefix("s3://lifecycle/wh/")
        .or_else(|| location.split_once("/warehouse/").map(|(_, r)| r))
        .unwrap_or(location);
    after.trim_end_matches('/').to_owned()
}

/// Rows all holding `value`.
pub fn rows(value: i64, n: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![value; n]))])
        .expect("a valid batch")
}

pub async fn write(client: &Client, partition: &str, value: i64) -> anyhow::Result<CommitInfo> {
    let batch = rows(value, 50);
    Ok(client
        .write(
            &table(),
            PartitionData {
                partition: ds(partition),
                expected: None,
                data: Rows::stream(RecordBatchIterator::new(
                    [Ok(batch.clone())],
                    batch.schema(),
                )),
            },
            &format!("value {value}"),
            &WriteOptions::default(),
            None,
        )
        .await?)
}

/// The values a read returns (every row of column x), or its error.
pub async fn read(
    client: &Client,
    partition: &str,
    selector: Selector,
) -> Result<Vec<i64>, ClientError> {
    let result = client
        .read(
            &ReadRequest {
                table: Some(table()),
                partitions: vec![ds(partition)],
                selector,
                ..Default::default()
            },
            None,
        )
        .await?;
    let mut values = Vec::new();
    for batch in &result.batches {
        let column = batch
            .column_by_name("x")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .expect("an int64 column x");
        values.extend(column.values().iter().copied());
    }
    Ok(values)
}

pub async fn gc(client: &Client, dry_run: bool) -> anyhow::Result<GcCounts> {
    Ok(client
        .collect_garbage(&GcScope::Table(table()), dry_run, |_| {})
        .await?
        .done)
}

pub async fn batch_location(client: &Client, batch_id: &str) -> anyhow::Result<String> {
    let mut rpc =
        pb::metastore_client::MetastoreClient::connect(client.endpoint().to_owned()).await?;
    let batch = rpc
        .get_batch(pb::GetBatchRequest {
            batch_id: batch_id.into(),
        })
        .await?
        .into_inner()
        .batch
        .ok_or_else(|| anyhow::anyhow!("no batch"))?;
    Ok(batch.location)
}

/// Retention, tags, leases and pending batches against GC: exactly what may go goes.
pub async fn gc_deletes_exactly_what_retention_allows(backend: Backend) -> anyhow::Result<()> {
    retention_scenario(Env::start(backend, &[]).await?).await
}

pub async fn retention_scenario(env: Env) -> anyhow::Result<()> {
    let client = &env.client;
    let mut p1 = Vec::new();
    for v in 1..=5 {
        p1.push(write(client, "p1", v).await?);
    }
    let mut p2 = Vec::new();
    for v in 11..=13 {
        p2.push(write(client, "p2", v).await?);
    }
    client
        .create_tag(&table(), "keep", TagTarget::Version(ds("p1"), 2))
        .await?;
    client
        .acquire_lease(
            &table(),
            &[ds("p2")],
            &Selector::Version(1),
            "job",
            Some(Duration::from_secs(3600)),
        )
        .await?;
    // Three batches never committed: pending within its lease, abandoned, aborted.
    let mut rpc = env.server.client().await?;
    let spec = spec(&[("ds", "p1")]);
    let pending = begin(&mut rpc, "lc", "t", &spec, 3600).await?;
    let pending_file = env.put(&pending.location, "part-00000.parquet", 7, 50)?;
    let abandoned = begin(&mut rpc, "lc", "t", &spec, 1).await?;
    env.put(&abandoned.location, "part-00000.parquet", 8, 50)?;
    let aborted = begin(&mut rpc, "lc", "t", &spec, 3600).await?;
    env.put(&aborted.location, "part-00000.parquet", 9, 50)?;
    rpc.abort_write(pb::AbortWriteRequest {
        batch_id: aborted.batch_id.clone(),
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Without retention, only what was never committed may go.
    let before = env.objects()?;
    let none = gc(client, true).await?;
    anyhow::ensure!(none.batches_expired == 2, "without retention: {none:?}");
    client
        .set_retention(
            "lc",
            Some("t"),
            &Retention {
                keep_versions: Some(1),
                keep_for: None,
            },
        )
        .await?;

    // A dry run counts and changes nothing.
    let dry = gc(client, true).await?;
    anyhow::ensure!(
        dry.batches_expired == 6 && dry.files_deleted == 4,
        "dry run: {dry:?}"
    );
    anyhow::ensure!(env.objects()? == before, "a dry run changed the warehouse");

    let done = gc(client, false).await?;
    anyhow::ensure!(
        done.batches_expired == 6 && done.batches_deleted == 6 && done.files_deleted == 6,
        "run: {done:?}"
    );
    // Gone: p1 v1, v3, v4; p2 v2; the abandoned and the aborted batch. Kept: the rest.
    let gone = [
        p1[0].batch_id.clone(),
        p1[2].batch_id.clone(),
        p1[3].batch_id.clone(),
        p2[1].batch_id.clone(),
        abandoned.batch_id.clone(),
        aborted.batch_id.clone(),
    ];
    for batch_id in gone {
        let location = batch_location(client, &batch_id).await?;
        let left = env.batch_objects(&location)?;
        anyhow::ensure!(left.is_empty(), "batch {batch_id} kept {left:?}");
    }
    for kept in [&p1[1], &p1[4], &p2[0], &p2[2]] {
        let location = batch_location(client, &kept.batch_id).await?;
        anyhow::ensure!(
            !env.batch_objects(&location)?.is_empty(),
            "batch {} lost its files",
            kept.batch_id
        );
    }
    anyhow::ensure!(
        env.batch_objects(&pending.location)?.len() == 1,
        "the pending batch lost its file"
    );

    // Reads: kept versions exactly; expired ones refused with when and why.
    anyhow::ensure!(read(client, "p1", Selector::Current).await? == vec![5; 50]);
    anyhow::ensure!(read(client, "p1", Selector::Version(2)).await? == vec![2; 50]);
    anyhow::ensure!(read(client, "p1", Selector::Tag("keep".into())).await? == vec![2; 50]);
    anyhow::ensure!(read(client, "p2", Selector::Version(1)).await? == vec![11; 50]);
    let refused = read(client, "p1", Selector::Version(3)).await;
    match &refused {
        Err(ClientError::NotFound { message, .. })
            if message.contains("expired by garbage collection")
                && message.contains("keep only the current version") => {}
        other => anyhow::bail!("reading an expired version: {other:?}"),
    }
    let history = client.history(&table(), &ds("p1")).await?;
    let expired: Vec<i64> = history
        .iter()
        .filter(|h| h.expired.is_some())
        .map(|h| h.version)
        .collect();
    anyhow::ensure!(
        expired == vec![4, 3, 1],
        "history marks {expired:?} expired"
    );

    // Rollback to an expired version is refused; to a kept one works.
    let back = client
        .rollback(&table(), &ds("p1"), RollbackTo::Version(3), None, "")
        .await;
    anyhow::ensure!(
        matches!(&back, Err(e) if e.to_string().contains("expired")),
        "rollback to an expired version: {back:?}"
    );
    client
        .rollback(&table(), &ds("p1"), RollbackTo::Version(2), None, "")
        .await?;
    anyhow::ensure!(read(client, "p1", Selector::Current).await? == vec![2; 50]);

    // v5 is no longer current: the next run expires it, and only it; then nothing is left.
    let again = gc(client, false).await?;
    anyhow::ensure!(again.batches_expired == 1, "after rollback: {again:?}");
    let idle = gc(client, false).await?;
    anyhow::ensure!(idle == GcCounts::default(), "an idle run did {idle:?}");

    // Released, the leased version goes too.
    client
        .release_lease(&LeaseName::Named(table(), "job".into()))
        .await?;
    let released = gc(client, false).await?;
    anyhow::ensure!(released.batches_expired == 1, "after release: {released:?}");

    // The pending batch, untouched all along, still commits.
    let mut commit = commit_request(pending.batch_id, vec![pending_file], None);
    commit.updates[0].arrow_schema = batchstore_client::schema::encode(&rows(7, 1).schema());
    let committed = rpc.commit(commit).await?.into_inner();
    anyhow::ensure!(committed.committed[0].version == 7);
    anyhow::ensure!(read(client, "p1", Selector::Current).await? == vec![7; 50]);
    Ok(())
}

/// Orphans are found exactly (never a file of a known batch, pending ones included) and
/// deleted only when asked.
pub async fn orphans_are_found_exactly(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    orphans_scenario(&env).await
}

pub async fn orphans_scenario(env: &Env) -> anyhow::Result<()> {
    let client = &env.client;
    let committed = write(client, "o1", 1).await?;
    let mut rpc = env.server.client().await?;
    let pending = begin(&mut rpc, "lc", "t", &spec(&[("ds", "o1")]), 3600).await?;
    env.put(&pending.location, "part-00000.parquet", 3, 5)?;
    let committed_dir = relative(&batch_location(client, &committed.batch_id).await?);
    let strays = [
        "stray-at-root.txt".to_owned(),
        "lc/t/ds=o1/loose.parquet".to_owned(),
        format!("{committed_dir}/extra.parquet"),
        "lc/t/ds=o1/_batch=0190aaaa-0000-7000-8000-000000000000/part-00000.parquet".to_owned(),
    ];
    for stray in &strays {
        env.stray(stray)?;
    }
    let before = env.objects()?;
    let report = client.find_orphans(0).await?;
    let found: BTreeSet<String> = report.orphans.iter().map(|o| o.path.clone()).collect();
    let expected: BTreeSet<String> = strays.iter().cloned().collect();
    anyhow::ensure!(
        found == expected,
        "orphans {found:?}, expected {expected:?}"
    );
    anyhow::ensure!(
        env.objects()? == before,
        "listing orphans deleted something"
    );
    let tablectl = env.tablectl();
    let listed = tablectl.ok(&["gc", "--orphans"])?;
    anyhow::ensure!(
        listed.contains("4 orphans") && listed.contains("nothing was deleted"),
        "{listed}"
    );
    anyhow::ensure!(
        env.objects()? == before,
        "tablectl gc --orphans deleted something"
    );

    let deleted = tablectl.json(&["gc", "--orphans", "--delete"])?;
    anyhow::ensure!(
        deleted["deleted"].as_array().map(Vec::len) == Some(4),
        "{deleted}"
    );
    let after = env.objects()?;
    let expected_after: BTreeSet<String> = before.difference(&expected).cloned().collect();
    anyhow::ensure!(after == expected_after, "after deleting: {after:?}");
    anyhow::ensure!(read(client, "o1", Selector::Current).await? == vec![1; 50]);
    anyhow::ensure!(client.find_orphans(0).await?.total == 0);
    Ok(())
}

/// A read in progress pins what it resolved: GC with retention 1 runs while `tablectl read` of
/// an old version is between resolving and fetching, and the read still returns it exactly.
pub async fn a_read_in_progress_is_never_collected(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    for v in 1..=3 {
        write(client, "r", v).await?;
    }
    client
        .set_retention(
            "lc",
            Some("t"),
            &Retention {
                keep_versions: Some(1),
                keep_for: None,
            },
        )
        .await?;
    let mut tablectl = env.tablectl();
    tablectl
        .env
        .push(("BATCHSTORE_DEBUG_READ_PAUSE_MS".into(), "2500".into()));
    let reader = tablectl
        .command(&[
            "--json",
            "read",
            "lc.t",
            "-p",
            "ds=r",
            "--version",
            "1",
            "--limit",
            "100",
        ])?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let leases = client.leases(Some("lc"), Some("t"), true).await?;
    anyhow::ensure!(
        leases.iter().any(|l| l.name.is_empty()),
        "the read holds no lease: {leases:?}"
    );
    let during = gc(client, false).await?;
    // Version 2 goes; version 1 is under the read's lease.
    anyhow::ensure!(during.batches_expired == 1, "during the read: {during:?}");
    let out = reader.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the read failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout)?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let values: Vec<i64> = doc["rows"]
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("no rows in {text}"))?
        .iter()
        .filter_map(|r| r["x"].as_str().and_then(|x| x.parse().ok()))
        .collect();
    anyhow::ensure!(values == vec![1; 50], "the read returned {values:?}");
    Ok(())
}

/// A named lease's times come from the catalog clock: a client whose clock is ten minutes
/// ahead or behind gets the same expiry, and GC keeps what it pins.
pub async fn client_clock_skew_changes_nothing(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    write(client, "s", 1).await?;
    write(client, "s", 2).await?;
    client
        .set_retention(
            "lc",
            Some("t"),
            &Retention {
                keep_versions: Some(1),
                keep_for: None,
            },
        )
        .await?;
    for (skew, name) in [("+10m", "ahead"), ("-10m", "behind")] {
        let command = env.tablectl().command(&[
            "--json",
            "lease",
            "acquire",
            "lc.t",
            name,
            "-p",
            "ds=s",
            "--version",
            "1",
            "--ttl",
            "60s",
        ])?;
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        let out = std::process::Command::new("faketime")
            .arg("-f")
            .arg(skew)
            .arg(program)
            .args(args)
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "faketime {skew}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lease: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let expires =
            chrono::DateTime::parse_from_rfc3339(lease["expires_at"].as_str().unwrap_or_default())?;
        let left = expires
            .signed_duration_since(chrono::Utc::now())
            .num_seconds();
        anyhow::ensure!(
            (50..=61).contains(&left),
            "with the clock {skew}: {left} s left"
        );
    }
    let counts = gc(client, false).await?;
    anyhow::ensure!(
        counts.batches_expired == 0,
        "GC took a leased batch: {counts:?}"
    );
    anyhow::ensure!(read(client, "s", Selector::Version(1)).await? == vec![1; 50]);
    Ok(())
}

/// GC killed with SIGKILL at random points, then run again: it converges, nothing current,
/// tagged or leased is lost, and every expired batch ends with no files.
pub async fn gc_killed_at_random_converges(backend: Backend) -> anyhow::Result<()> {
    killed_scenario(backend, None).await
}

/// [`gc_killed_at_random_converges`] with the warehouse on a local disk or on `s3`.
pub async fn killed_scenario(backend: Backend, s3: Option<&S3Server>) -> anyhow::Result<()> {
    let db = TestDatabase::create(backend)?;
    let listen = format!(
        "127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port()
    );
    let dir = tempfile::tempdir()?;
    let (warehouse, env) = match s3 {
        Some(s3) => ("s3://lifecycle/killed".to_owned(), s3.env()),
        None => (dir.path().join("warehouse").display().to_string(), vec![]),
    };
    let mut server = Metastore::start_at(&listen, &db.url, &warehouse, &[], &env)?;
    let client = Client::connect(Some(&server.endpoint())).await?;
    client.create_namespace("lc", true).await?;
    client
        .create_table(
            &table(),
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    client
        .set_retention(
            "lc",
            Some("t"),
            &Retention {
                keep_versions: Some(2),
                keep_for: None,
            },
        )
        .await?;
    let tagged = write(&client, "k", 0).await?;
    client
        .create_tag(
            &table(),
            "pinned",
            TagTarget::Batch(tagged.batch_id.clone()),
        )
        .await?;
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ u64::from(std::process::id());
    let mut written: std::collections::BTreeMap<&str, Vec<i64>> =
        [("k", vec![0]), ("m", vec![])].into_iter().collect();
    let mut value = 1;
    for round in 0..5 {
        for _ in 0..25 {
            let partition = if value % 2 == 0 { "k" } else { "m" };
            write(&client, partition, value).await?;
            written.entry(partition).or_default().push(value);
            value += 1;
        }
        let run = {
            let client = client.clone();
            tokio::spawn(async move { gc(&client, false).await })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 120)).await;
        drop(server);
        server = Metastore::start_at(&listen, &db.url, &warehouse, &[], &env)?;
        // The interrupted run either finished, resumed after the restart, or failed.
        let outcome = run.await?;
        eprintln!("round {round}: {outcome:?}");
    }
    gc(&client, false).await?;
    anyhow::ensure!(gc(&client, true).await? == GcCounts::default());
    anyhow::ensure!(read(&client, "k", Selector::Tag("pinned".into())).await? == vec![0; 50]);
    for (partition, values) in &written {
        // The current version and the one before it read exactly; older ones are expired.
        let last = values[values.len() - 1];
        let before = values[values.len() - 2];
        anyhow::ensure!(read(&client, partition, Selector::Current).await? == vec![last; 50]);
        let history = client.history(&table(), &ds(partition)).await?;
        anyhow::ensure!(
            read(&client, partition, Selector::Version(history[1].version)).await?
                == vec![before; 50]
        );
        anyhow::ensure!(
            history.iter().take(2).all(|h| h.expired.is_none()),
            "a kept version of {partition} expired"
        );
        anyhow::ensure!(
            history
                .iter()
                .skip(2)
                .all(|h| h.expired.is_some() || h.batch_id == tagged.batch_id),
            "an old version of {partition} was not expired"
        );
    }
    // Every expired batch is recorded deleted, and has no files left.
    let undeleted = catalog_query(
        &db,
        "SELECT COUNT(*) FROM batches WHERE expired_at_us IS NOT NULL AND deleted_at_us IS NULL",
    )?;
    anyhow::ensure!(undeleted.trim() == "0", "expired, not deleted: {undeleted}");
    let expired_dirs = catalog_query(
        &db,
        "SELECT location FROM batches WHERE expired_at_us IS NOT NULL",
    )?;
    for location in expired_dirs.lines().filter(|l| !l.trim().is_empty()) {
        let location = location.trim();
        let left = match s3 {
            Some(s3) => {
                let key = location
                    .strip_prefix("s3://lifecycle/")
                    .ok_or_else(|| anyhow::anyhow!("unexpected location {location}"))?;
                s3.list(&format!("{key}/"))?.len()
            }
            None => {
                let dir = local_dir(location)?;
                if dir.exists() {
                    std::fs::read_dir(&dir)?.count()
                } else {
                    0
                }
            }
        };
        anyhow::ensure!(left == 0, "{location} still holds {left} files");
    }
    Ok(())
}

/// Dropped tables: listed, undropped as they were, and after the grace period purged by GC
/// (then no longer undroppable).
pub async fn dropped_tables_come_back_until_purged(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &["--drop-grace-seconds", "2"]).await?;
    let client = &env.client;
    write(client, "d", 1).await?;
    write(client, "d", 2).await?;
    let files = env.objects()?;
    client.drop_table(&table()).await?;
    let dropped = client.list_dropped_tables(Some("lc")).await?;
    anyhow::ensure!(
        dropped.len() == 1 && dropped[0].purge_after.is_some(),
        "{dropped:?}"
    );
    // Within the grace period GC leaves it alone, even with nothing to keep it.
    anyhow::ensure!(gc_all(client).await? == GcCounts::default());
    let back = client.undrop_table(&table()).await?;
    anyhow::ensure!(back.partition_count == 1);
    anyhow::ensure!(read(client, "d", Selector::Version(1)).await? == vec![1; 50]);

    // A new table took the name: the old one cannot come back over it.
    client.drop_table(&table()).await?;
    client
        .create_table(
            &table(),
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    let over = client.undrop_table(&table()).await;
    anyhow::ensure!(
        matches!(over, Err(ClientError::AlreadyExists(_))),
        "undrop over a live table: {over:?}"
    );
    client.drop_table(&table()).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let purged = gc_all(client).await?;
    anyhow::ensure!(
        purged.tables_purged == 2 && purged.batches_deleted == 2,
        "purge: {purged:?}"
    );
    let left: BTreeSet<String> = env.objects()?.intersection(&files).cloned().collect();
    anyhow::ensure!(left.is_empty(), "purged files remain: {left:?}");
    let late = client.undrop_table(&table()).await;
    anyhow::ensure!(
        matches!(&late, Err(ClientError::NotFound { message, .. }) if message.contains("can no longer be undropped")),
        "undrop after purge: {late:?}"
    );
    Ok(())
}

pub async fn gc_all(client: &Client) -> anyhow::Result<GcCounts> {
    Ok(client
        .collect_garbage(&GcScope::Namespace("lc".into()), false, |_| {})
        .await?
        .done)
}

/// The metastore collects garbage on its own schedule.
pub async fn gc_runs_on_a_schedule(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &["--gc-interval-seconds", "1"]).await?;
    let client = &env.client;
    for v in 1..=3 {
        write(client, "g", v).await?;
    }
    client
        .set_retention(
            "lc",
            None,
            &Retention {
                keep_versions: Some(1),
                keep_for: None,
            },
        )
        .await?;
    for _ in 0..100 {
        let history = client.history(&table(), &ds("g")).await?;
        if history.iter().filter(|h| h.expired.is_some()).count() == 2 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the scheduled GC did not expire the namespace's old versions within 10 s")
}

/// Keep-for: versions current within the window stay (as-of reads of it keep working); older
/// ones go.
pub async fn keep_for_keeps_the_as_of_window(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    write(client, "w", 1).await?;
    write(client, "w", 2).await?;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let recent = write(client, "w", 3).await?;
    write(client, "w", 4).await?;
    client
        .set_retention(
            "lc",
            Some("t"),
            &Retention {
                keep_versions: None,
                keep_for: Some(Duration::from_secs(2)),
            },
        )
        .await?;
    let done = gc(client, false).await?;
    // Version 1 stopped being current over 2 s ago; version 2 stopped when 3 was written,
    // just now; 3 and 4 are recent.
    anyhow::ensure!(done.batches_expired == 1, "{done:?}");
    let as_of = recent.committed_at + chrono::Duration::microseconds(1);
    anyhow::ensure!(read(client, "w", Selector::AsOf(as_of)).await? == vec![3; 50]);
    anyhow::ensure!(read(client, "w", Selector::Version(2)).await? == vec![2; 50]);
    anyhow::ensure!(read(client, "w", Selector::Version(1)).await.is_err());
    Ok(())
}

/// tablectl: retention, leases and GC from the shell, with summaries and JSON.
pub async fn tablectl_runs_the_lifecycle(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    for v in 1..=4 {
        write(client, "c", v).await?;
    }
    let t = env.tablectl();
    let set = t.ok(&["table", "set-retention", "lc.t", "--keep-versions", "2"])?;
    anyhow::ensure!(set.contains("keep the last 2 versions"), "{set}");
    let described = t.ok(&["table", "describe", "lc.t"])?;
    anyhow::ensure!(
        described.contains("keep the last 2 versions"),
        "{described}"
    );
    let none = t.run(&["table", "set-retention", "lc.t"])?;
    anyhow::ensure!(
        !none.status.success(),
        "set-retention without a rule succeeded"
    );
    let lease = t.ok(&[
        "lease",
        "acquire",
        "lc.t",
        "run-42",
        "-p",
        "ds=c",
        "--version",
        "1",
        "--ttl",
        "1h",
    ])?;
    anyhow::ensure!(lease.contains("run-42"), "{lease}");
    let leases = t.ok(&["leases", "lc"])?;
    anyhow::ensure!(
        leases.contains("run-42") && leases.contains("version 1"),
        "{leases}"
    );
    let renewed = t.ok(&["lease", "renew", "lc.t", "run-42", "--ttl", "2h"])?;
    anyhow::ensure!(renewed.contains("now lasts until"), "{renewed}");
    let dry = t.ok(&["gc", "--table", "lc.t", "--dry-run"])?;
    anyhow::ensure!(dry.contains("would expire 1 batches"), "{dry}");
    let run = t.json(&["gc", "--table", "lc.t"])?;
    anyhow::ensure!(run["counts"]["batches_deleted"] == 1, "{run}");
    let released = t.ok(&["lease", "release", "lc.t", "run-42"])?;
    anyhow::ensure!(released.contains("released"), "{released}");
    let run = t.ok(&["gc", "--table", "lc"])?;
    anyhow::ensure!(run.contains("expired 1 batches"), "{run}");
    let history = t.ok(&["history", "lc.t", "-p", "ds=c"])?;
    anyhow::ensure!(history.matches("(expired)").count() == 2, "{history}");
    let cleared = t.ok(&["table", "set-retention", "lc", "--clear"])?;
    anyhow::ensure!(cleared.contains("keep every version"), "{cleared}");
    t.ok(&["table", "drop", "lc.t"])?;
    let dropped = t.ok(&["table", "list", "--dropped"])?;
    anyhow::ensure!(dropped.contains("lc.t"), "{dropped}");
    t.ok(&["table", "undrop", "lc.t"])?;
    anyhow::ensure!(read(client, "c", Selector::Current).await? == vec![4; 50]);
    Ok(())
}

/// Writes one batch of `columns` (name, array) into partition `ds` of `lc.e`.
async fn write_columns(
    client: &Client,
    partition: &str,
    columns: Vec<(&str, arrow_array::ArrayRef, bool)>,
) -> Result<CommitInfo, ClientError> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array, nullable)| Field::new(*name, array.data_type().clone(), *nullable))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema, columns.into_iter().map(|(_, a, _)| a).collect())
        .expect("a valid batch");
    client
        .write(
            &TableName::new("lc", "e"),
            PartitionData {
                partition: ds(partition),
                expected: None,
                data: Rows::stream(RecordBatchIterator::new(
                    [Ok(batch.clone())],
                    batch.schema(),
                )),
            },
            "",
            &WriteOptions::default(),
            None,
        )
        .await
}

fn int32(v: i32) -> arrow_array::ArrayRef {
    Arc::new(arrow_array::Int32Array::from(vec![v; 2]))
}

fn int64(v: i64) -> arrow_array::ArrayRef {
    Arc::new(Int64Array::from(vec![v; 2]))
}

fn text(v: &str) -> arrow_array::ArrayRef {
    Arc::new(arrow_array::StringArray::from(vec![v; 2]))
}

fn float(v: f64) -> arrow_array::ArrayRef {
    Arc::new(arrow_array::Float64Array::from(vec![v; 2]))
}

/// `(ds, a, b, c)` of every row of `lc.e`, sorted.
async fn read_e(client: &Client) -> anyhow::Result<Vec<(String, i64, String, Option<f64>)>> {
    let result = client
        .read(
            &ReadRequest {
                table: Some(TableName::new("lc", "e")),
                ..Default::default()
            },
            None,
        )
        .await?;
    let mut rows = Vec::new();
    for batch in &result.batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| anyhow::anyhow!("no column {name}"))
        };
        let ds = column("ds")?
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .ok_or_else(|| anyhow::anyhow!("ds is not text"))?;
        let a = column("a")?
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "a is {}",
                    column("a")
                        .map(|c| c.data_type().to_string())
                        .unwrap_or_default()
                )
            })?;
        let b = column("b")?
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .ok_or_else(|| anyhow::anyhow!("b is not text"))?;
        let c = column("c")?
            .as_any()
            .downcast_ref::<arrow_array::Float64Array>()
            .ok_or_else(|| anyhow::anyhow!("c is not float64"))?;
        for i in 0..batch.num_rows() {
            use arrow_array::Array;
            rows.push((
                ds.value(i).to_owned(),
                a.value(i),
                b.value(i).to_owned(),
                (!c.is_null(i)).then(|| c.value(i)),
            ));
        }
    }
    rows.sort_by(|x, y| x.partial_cmp(y).expect("comparable"));
    Ok(rows)
}

/// Schema evolution: a column added in partition 2, a column widened in partition 3; the
/// whole table reads in the current schema (absent columns null) from the client and tablectl;
/// partition 3 rolled back to a batch of the older schema reads the same way. Strict refuses,
/// naming the column and the policy that would allow it; additive never drops or narrows.
pub async fn schema_evolves_additively(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    let e = TableName::new("lc", "e");
    client
        .create_table(
            &e,
            &[PartitionKey {
                name: "ds".into(),
                key_type: KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    write_columns(
        client,
        "1",
        vec![("a", int32(1), false), ("b", text("one"), true)],
    )
    .await?;
    let strict = write_columns(
        client,
        "2",
        vec![
            ("a", int32(2), false),
            ("b", text("two"), true),
            ("c", float(2.5), true),
        ],
    )
    .await;
    match &strict {
        Err(ClientError::SchemaMismatch(message))
            if message.contains("\"c\"")
                && message.contains("additive schema policy would allow") => {}
        other => anyhow::bail!("strict took an added column: {other:?}"),
    }
    client.set_schema_policy(&e, "additive").await?;
    write_columns(
        client,
        "2",
        vec![
            ("a", int32(2), false),
            ("b", text("two"), true),
            ("c", float(2.5), true),
        ],
    )
    .await?;
    write_columns(
        client,
        "3",
        vec![("a", int32(3), false), ("b", text("three"), true)],
    )
    .await?;
    write_columns(
        client,
        "3",
        vec![
            ("a", int64(4), false),
            ("b", text("four"), true),
            ("c", float(4.5), true),
        ],
    )
    .await?;
    // Never a narrowing of the table, a changed type, or a non-null column left out.
    let changed = write_columns(
        client,
        "4",
        vec![("a", text("x"), false), ("b", text("x"), true)],
    )
    .await;
    anyhow::ensure!(
        matches!(&changed, Err(ClientError::SchemaMismatch(m)) if m.contains("\"a\"")),
        "a changed type: {changed:?}"
    );
    let dropped = write_columns(client, "4", vec![("b", text("x"), true)]).await;
    anyhow::ensure!(
        matches!(&dropped, Err(ClientError::SchemaMismatch(m)) if m.contains("only nullable")),
        "a dropped non-null column: {dropped:?}"
    );
    // Two rows of each partition.
    let twice = |rows: Vec<(String, i64, String, Option<f64>)>| {
        rows.into_iter()
            .flat_map(|r| [r.clone(), r])
            .collect::<Vec<_>>()
    };
    let expected = twice(vec![
        ("1".to_owned(), 1, "one".to_owned(), None),
        ("2".to_owned(), 2, "two".to_owned(), Some(2.5)),
        ("3".to_owned(), 4, "four".to_owned(), Some(4.5)),
    ]);
    anyhow::ensure!(
        read_e(client).await? == expected,
        "read {:?}",
        read_e(client).await?
    );
    let history = client.schema_history(&e).await?;
    let changes: Vec<&str> = history.iter().map(|v| v.change.as_str()).collect();
    anyhow::ensure!(
        changes.len() == 3
            && changes[1].contains("added column \"c\"")
            && changes[2].contains("widened \"a\" from Int32 to Int64"),
        "schema history {changes:?}"
    );
    let shown = env
        .tablectl()
        .ok(&["table", "schema", "lc.e", "--history"])?;
    anyhow::ensure!(
        shown.contains("added column") && shown.contains("widened"),
        "{shown}"
    );

    // Partition 3 back to its batch of the older schema: read in the current one.
    client
        .rollback(&e, &ds("3"), RollbackTo::Version(1), None, "")
        .await?;
    let mut expected = expected;
    expected[4] = ("3".to_owned(), 3, "three".to_owned(), None);
    expected[5] = expected[4].clone();
    anyhow::ensure!(
        read_e(client).await? == expected,
        "after rollback: {:?}",
        read_e(client).await?
    );
    let read = env.tablectl().json(&["read", "lc.e", "--limit", "100"])?;
    let rows = read["rows"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(rows.len() == 6, "tablectl read {read}");
    anyhow::ensure!(
        rows.iter().filter(|r| r["c"].is_null()).count() == 4,
        "tablectl read {read}"
    );
    Ok(())
}

/// A batch GC cannot delete is reported and skipped; the rest of the run goes on, and the next
/// run tries it again. Here the abandoned batch's directory was swapped for a link to the
/// current batch's directory (holding files of the same names): GC never deletes through it,
/// and the current data stays whole. A name no object listing can read (not UTF-8) in another
/// abandoned batch is no obstacle: its directory goes whole.
pub async fn gc_goes_on_past_a_batch_it_cannot_delete(backend: Backend) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::start(backend, &[]).await?;
    let client = &env.client;
    let mut rpc = env.server.client().await?;
    let current = write(client, "x", 7).await?;
    let current_dir = local_dir(&batch_location(client, &current.batch_id).await?)?;
    let spec = spec(&[("ds", "x")]);
    let linked = begin(&mut rpc, "lc", "t", &spec, 3600).await?;
    env.put(&linked.location, "part-00000.parquet", 1, 5)?;
    let fine = begin(&mut rpc, "lc", "t", &spec, 3600).await?;
    env.put(&fine.location, "part-00000.parquet", 2, 5)?;
    let fine_dir = local_dir(&fine.location)?;
    std::fs::write(
        fine_dir.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name")),
        b"x",
    )?;
    for batch_id in [&linked.batch_id, &fine.batch_id] {
        rpc.abort_write(pb::AbortWriteRequest {
            batch_id: batch_id.clone(),
        })
        .await?;
    }
    let linked_dir = local_dir(&linked.location)?;
    std::fs::remove_dir_all(&linked_dir)?;
    std::os::unix::fs::symlink(&current_dir, &linked_dir)?;
    let current_files = std::fs::read_dir(&current_dir)?.count();
    let run = client
        .collect_garbage(&GcScope::Table(table()), false, |_| {})
        .await?;
    anyhow::ensure!(
        run.done.batches_expired == 2
            && run.done.batches_deleted == 1
            && run.done.batches_failed == 1
            && run
                .errors
                .iter()
                .any(|e| e.contains(&linked.batch_id) && e.contains("link")),
        "run: {run:?}"
    );
    anyhow::ensure!(!fine_dir.exists(), "the fine batch was kept");
    anyhow::ensure!(
        std::fs::read_dir(&current_dir)?.count() == current_files
            && read(client, "x", Selector::Current).await? == vec![7; 50],
        "GC deleted through the link"
    );
    std::fs::remove_file(&linked_dir)?;
    std::fs::create_dir(&linked_dir)?;
    std::fs::write(linked_dir.join("part-00000.parquet"), b"x")?;
    let again = gc(client, false).await?;
    anyhow::ensure!(again.batches_deleted == 1, "the next run: {again:?}");
    anyhow::ensure!(!linked_dir.exists(), "the next run left {linked_dir:?}");
    anyhow::ensure!(read(client, "x", Selector::Current).await? == vec![7; 50]);
    Ok(())
}

/// Named leases are bounded per holder: past the bound a new one is refused, naming the
/// holder; other holders are not affected; releasing one makes room; reads (whose own leases
/// are short-lived and not counted) go on.
pub async fn named_leases_are_bounded_per_holder(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &["--max-named-leases-per-holder", "2"]).await?;
    write(&env.client, "x", 1).await?;
    let mut rpc = env.server.client().await?;
    let acquire = |holder: &str, name: &str| {
        let mut request = tonic::Request::new(pb::AcquireLeaseRequest {
            table: table_ref("lc", "t"),
            name: name.into(),
            ttl_seconds: 3600,
            ..Default::default()
        });
        request.metadata_mut().insert(
            batchstore_proto::wire::ACTOR_KEY,
            holder.parse().expect("an ASCII holder"),
        );
        request
    };
    for name in ["a", "b"] {
        rpc.acquire_lease(acquire("alice", name)).await?;
    }
    let refused = rpc
        .acquire_lease(acquire("alice", "c"))
        .await
        .expect_err("a third named lease of one holder");
    anyhow::ensure!(
        refused.code() == tonic::Code::FailedPrecondition
            && refused.message().contains("alice")
            && refused.message().contains("2 live named leases"),
        "refusal: {refused:?}"
    );
    rpc.acquire_lease(acquire("bob", "c")).await?;
    anyhow::ensure!(
        read(&env.client, "x", Selector::Current).await? == vec![1; 50],
        "a read past the holder's bound"
    );
    let mut release = tonic::Request::new(pb::ReleaseLeaseRequest {
        table: table_ref("lc", "t"),
        name: "a".into(),
        ..Default::default()
    });
    release.metadata_mut().insert(
        batchstore_proto::wire::ACTOR_KEY,
        "alice".parse().expect("ASCII"),
    );
    anyhow::ensure!(rpc.release_lease(release).await?.into_inner().released);
    rpc.acquire_lease(acquire("alice", "d")).await?;
    Ok(())
}

/// Lease listings are paged by lease id: every live lease is listed exactly once across the
/// pages, also when a lease is renewed between them (renewal moves its expiry, not its place);
/// a bad token is refused; the client reads every page and sorts by expiry.
pub async fn lease_listings_are_paged(backend: Backend) -> anyhow::Result<()> {
    let env = Env::start(backend, &[]).await?;
    write(&env.client, "x", 1).await?;
    let mut rpc = env.server.client().await?;
    let acquire = |name: &str, ttl_seconds: i64| pb::AcquireLeaseRequest {
        table: table_ref("lc", "t"),
        name: name.into(),
        ttl_seconds,
        ..Default::default()
    };
    let names = ["e", "d", "c", "b", "a"];
    for (i, name) in names.iter().enumerate() {
        // Taken in this order, expiring in the reverse one.
        rpc.acquire_lease(acquire(name, 3600 * (10 - i as i64)))
            .await?;
    }
    let page = |token: &str| pb::ListLeasesRequest {
        namespace: "lc".into(),
        page_size: 2,
        page_token: token.into(),
        ..Default::default()
    };
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut sizes = Vec::new();
    loop {
        let reply = rpc.list_leases(page(&token)).await?.into_inner();
        sizes.push(reply.leases.len());
        listed.extend(reply.leases.into_iter().map(|l| l.name));
        if listed.len() == 2 {
            // Renewed between pages: neither listed twice nor skipped.
            for name in ["e", "a"] {
                rpc.extend_lease(pb::ExtendLeaseRequest {
                    table: table_ref("lc", "t"),
                    name: name.into(),
                    ttl_seconds: 99 * 3600,
                    ..Default::default()
                })
                .await?;
            }
        }
        if reply.next_page_token.is_empty() {
            break;
        }
        token = reply.next_page_token;
    }
    anyhow::ensure!(sizes == vec![2, 2, 1], "page sizes {sizes:?}");
    anyhow::ensure!(listed == names, "listed {listed:?}");
    let refused = rpc
        .list_leases(page("not-a-token"))
        .await
        .expect_err("a bad token");
    anyhow::ensure!(
        refused.code() == tonic::Code::InvalidArgument,
        "{refused:?}"
    );
    let all = env.client.leases(Some("lc"), None, false).await?;
    let by_expiry: Vec<&str> = all.iter().map(|l| l.name.as_str()).collect();
    anyhow::ensure!(by_expiry == ["b", "c", "d", "e", "a"], "{by_expiry:?}");
    Ok(())
}
