//! Test harness: real PostgreSQL databases, real metastore processes, gRPC clients.
//!
//! Nothing here mocks a part. `Backend` names where the catalog lives; `Metastore::start`
//! runs the `metastore` binary built by `cargo build` on a fresh database and a temporary
//! warehouse, and kills it when dropped. PostgreSQL is started if it is not running, and every
//! test gets a database of its own, dropped afterwards.

use anyhow::{Context, Result, bail};
use batchstore_proto::v1 as pb;
use batchstore_proto::v1::metastore_client::MetastoreClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tonic::transport::Channel;

pub use pb::metastore_client;

/// Stamps out one `#[tokio::test]` per backend for each scenario: `scenario(Backend)` runs
/// once on SQLite and once on a fresh PostgreSQL database.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() -> anyhow::Result<()> {
                super::$scenario($crate::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $scenario() -> anyhow::Result<()> {
                super::$scenario($crate::Backend::Postgres).await
            })*
        }
    };
}

pub mod credentials;
pub mod proxy;
pub mod s3;
pub mod tablectl;

/// Where a test's catalog lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A catalog database made for one test.
pub struct TestDatabase {
    pub url: String,
    postgres_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDatabase {
    /// A fresh, empty database on the backend.
    ///
    /// # Errors
    /// When PostgreSQL cannot be started or the database cannot be created.
    pub fn create(backend: Backend) -> Result<Self> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir()?;
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("catalog.db").display()
                );
                Ok(TestDatabase {
                    url,
                    postgres_name: None,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => {
                ensure_postgres()?;
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let name = format!(
                    "batchstore_test_{}_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst),
                    uuid::Uuid::now_v7().simple()
                );
                psql("postgres", &format!("CREATE DATABASE {name}"))?;
                Ok(TestDatabase {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    postgres_name: Some(name),
                    _dir: None,
                })
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = &self.postgres_name {
            let _ = psql(
                "postgres",
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

/// Runs one statement with `psql` against `database` and returns what it printed (unaligned,
/// tuples only).
fn psql(database: &str, sql: &str) -> Result<String> {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", database])
        .args(["-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .context("running psql (install postgresql-client)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs one query against a test's catalog database with the database's own command-line
/// client and returns what it printed (one value per line), for checks of stored facts that no
/// RPC exposes.
///
/// # Errors
/// When the client fails.
pub fn catalog_query(db: &TestDatabase, sql: &str) -> Result<String> {
    if let Some(name) = &db.postgres_name {
        return psql(name, sql);
    }
    let path = db
        .url
        .strip_prefix("sqlite://")
        .and_then(|u| u.split('?').next())
        .context("a sqlite URL")?;
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); \
             [print(*r, sep='|') for r in c.execute(sys.argv[2])]; c.commit()",
            path,
            sql,
        ])
        .output()
        .context("running python3 for sqlite3")?;
    if !out.status.success() {
        bail!(
            "query {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts the local PostgreSQL cluster when it is not accepting connections.
///
/// # Errors
/// When it is still not reachable after starting it.
pub fn ensure_postgres() -> Result<()> {
    let ready = || {
        std::net::TcpStream::connect_timeout(
            &"127.0.0.1:5432".parse().expect("address"),
            Duration::from_secs(1),
        )
        .is_ok()
    };
    if ready() {
        return Ok(());
    }
    let version = std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| "15".to_owned());
    let _ = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "start"])
        .status();
    for _ in 0..50 {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("PostgreSQL is not reachable on 127.0.0.1:5432 and could not be started")
}

/// The `metastore` binary next to this test executable (built by `cargo build`), or the one
/// named by `BATCHSTORE_METASTORE_BIN`.
///
/// # Errors
/// When it has not been built.
pub fn metastore_binary() -> Result<PathBuf> {
    workspace_binary("metastore", "BATCHSTORE_METASTORE_BIN")
}

/// The `tablectl` binary next to this test executable, or `BATCHSTORE_TABLECTL_BIN`.
///
/// # Errors
/// When it has not been built.
pub fn tablectl_binary() -> Result<PathBuf> {
    workspace_binary("tablectl", "BATCHSTORE_TABLECTL_BIN")
}

fn workspace_binary(name: &str, override_var: &str) -> Result<PathBuf> {
    if let Ok(path) = std::env::var(override_var) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "the {name} binary was not found next to {}; run `cargo build --workspace` first",
        exe.display()
    )
}

/// A running metastore process.
pub struct Metastore {
    child: Child,
    pub address: String,
    pub warehouse: PathBuf,
    _warehouse_dir: Option<tempfile::TempDir>,
}

impl Metastore {
    /// Starts a metastore on `database_url` with a fresh local warehouse.
    ///
    /// # Errors
    /// When the process fails to start or to announce its address.
    pub fn start(database_url: &str, extra_args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let warehouse = dir.path().join("warehouse");
        let mut server =
            Self::start_with_warehouse(database_url, &warehouse.display().to_string(), extra_args)?;
        server._warehouse_dir = Some(dir);
        Ok(server)
    }

    /// Starts a metastore on `database_url` and `warehouse` (a path or URL).
    ///
    /// # Errors
    /// When the process fails to start or to announce its address.
    pub fn start_with_warehouse(
        database_url: &str,
        warehouse: &str,
        extra_args: &[&str],
    ) -> Result<Self> {
        Self::start_with_env(database_url, warehouse, extra_args, &[])
    }

    /// Starts a metastore with extra environment variables (for example `AWS_*` for S3).
    ///
    /// # Errors
    /// When the process fails to start or to announce its address.
    pub fn start_with_env(
        database_url: &str,
        warehouse: &str,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Result<Self> {
        Self::start_at("127.0.0.1:0", database_url, warehouse, extra_args, env)
    }

    /// Starts a metastore listening on `listen` (a fixed address lets a restarted server take
    /// over from a killed one).
    ///
    /// # Errors
    /// When the process fails to start or to announce its address.
    pub fn start_at(
        listen: &str,
        database_url: &str,
        warehouse: &str,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Result<Self> {
        Self::start_logging(listen, database_url, warehouse, extra_args, env, None)
    }

    /// Like [`Metastore::start_at`], with the server's log (stderr) written to `log` instead of
    /// this process's stderr.
    ///
    /// # Errors
    /// When the process fails to start or to announce its address.
    pub fn start_logging(
        listen: &str,
        database_url: &str,
        warehouse: &str,
        extra_args: &[&str],
        env: &[(String, String)],
        log: Option<&Path>,
    ) -> Result<Self> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::inherit(),
        };
        let mut child = Command::new(metastore_binary()?)
            .args([
                "serve",
                "--listen",
                listen,
                "--database-url",
                database_url,
                "--warehouse",
                warehouse,
            ])
            .args(extra_args)
            .env("BATCHSTORE_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("starting the metastore")?;
        let stdout = child.stdout.take().context("metastore stdout")?;
        let mut first_line = String::new();
        BufReader::new(stdout).read_line(&mut first_line)?;
        let Some(address) = first_line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("the metastore did not announce its address (first line: {first_line:?})");
        };
        Ok(Metastore {
            address: address.to_owned(),
            warehouse: PathBuf::from(warehouse),
            child,
            _warehouse_dir: None,
        })
    }

    /// `http://HOST:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A new gRPC client (one connection).
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn client(&self) -> Result<MetastoreClient<Channel>> {
        let client = MetastoreClient::connect(self.endpoint()).await?;
        Ok(client.max_decoding_message_size(256 * 1024 * 1024))
    }

    /// Process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    ///
    /// # Errors
    /// When the signal cannot be sent or the process does not exit within 30 s.
    pub fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM failed");
        }
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the metastore did not exit within 30 s of SIGTERM")
    }
}

impl Drop for Metastore {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment of a metastore (a debug build) that holds every commit's transaction open
/// for `pause` before committing: fault injection, so that a test can act while a commit is
/// in flight.
pub fn pausing_commits(pause: Duration) -> [(String, String); 1] {
    [(
        "BATCHSTORE_FAULT_COMMIT_PAUSE_MS".to_owned(),
        pause.as_millis().to_string(),
    )]
}

/// A table reference.
pub fn table_ref(namespace: &str, table: &str) -> Option<pb::TableRef> {
    Some(pb::TableRef {
        namespace: namespace.into(),
        table: table.into(),
    })
}

/// A partition spec from `(key, value)` pairs.
pub fn spec(pairs: &[(&str, &str)]) -> pb::PartitionSpec {
    pb::PartitionSpec {
        values: pairs
            .iter()
            .map(|(k, v)| pb::PartitionValue {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

/// Arrow IPC bytes of a schema of `(name, type)` nullable columns.
pub fn schema_bytes(fields: &[(&str, arrow_schema::DataType)]) -> Vec<u8> {
    let schema = arrow_schema::Schema::new(
        fields
            .iter()
            .map(|(n, t)| arrow_schema::Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    );
    let generator = arrow_ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    generator
        .schema_to_bytes_with_dictionary_tracker(&schema, &mut tracker, &Default::default())
        .ipc_message
}

/// The default schema of these tests: one int64 column `x`.
pub fn int_schema() -> Vec<u8> {
    schema_bytes(&[("x", arrow_schema::DataType::Int64)])
}

/// The local directory of a `file://` batch location.
///
/// # Errors
/// For a location that is not on the local filesystem.
pub fn local_dir(location: &str) -> Result<PathBuf> {
    location
        .strip_prefix("file://")
        .map(PathBuf::from)
        .context("not a file:// location")
}

/// Writes a Parquet file of `rows` rows of the tests' schema (`x: int64`) into a local batch
/// location and returns its entry.
///
/// # Errors
/// I/O and encoding errors.
pub fn upload(location: &str, name: &str, rows: i64) -> Result<pb::DataFile> {
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "x",
        arrow_schema::DataType::Int64,
        true,
    )]));
    let column = arrow_array::Int64Array::from_iter_values(0..rows);
    let batch = arrow_array::RecordBatch::try_new(schema, vec![std::sync::Arc::new(column)])?;
    upload_batch(location, name, &batch)
}

/// Writes `batch` as a Parquet file into a local batch location and returns its entry.
///
/// # Errors
/// I/O and encoding errors.
pub fn upload_batch(
    location: &str,
    name: &str,
    batch: &arrow_array::RecordBatch,
) -> Result<pb::DataFile> {
    let dir = local_dir(location)?;
    std::fs::create_dir_all(&dir)?;
    let mut encoded = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut encoded, batch.schema(), None)?;
    writer.write(batch)?;
    writer.close()?;
    std::fs::write(dir.join(name), &encoded)?;
    Ok(pb::DataFile {
        path: name.into(),
        size_bytes: encoded.len() as i64,
        rows: batch.num_rows() as i64,
    })
}

/// Begins a write of `partition` (lease 0 = the server's default).
///
/// # Errors
/// Whatever the service answers.
pub async fn begin(
    client: &mut MetastoreClient<Channel>,
    namespace: &str,
    table: &str,
    partition: &pb::PartitionSpec,
    lease_seconds: i64,
) -> Result<pb::BeginWriteResponse, tonic::Status> {
    let request = pb::BeginWriteRequest {
        table: table_ref(namespace, table),
        partition: Some(partition.clone()),
        lease_seconds,
    };
    Ok(client.begin_write(request).await?.into_inner())
}

/// A commit of one batch with the tests' schema, optionally compare-and-swap.
pub fn commit_request(
    batch_id: String,
    files: Vec<pb::DataFile>,
    expected: Option<String>,
) -> pb::CommitRequest {
    pb::CommitRequest {
        updates: vec![pb::PartitionUpdate {
            batch_id,
            files,
            arrow_schema: int_schema(),
            expected_current_batch_id: expected,
            input_batch_ids: vec![],
        }],
        message: "test write".into(),
        actor: "tests".into(),
    }
}

/// Begins a write, uploads one file, commits; returns the committed partition.
///
/// # Errors
/// Whatever the service answers.
pub async fn write_once(
    client: &mut MetastoreClient<Channel>,
    namespace: &str,
    table: &str,
    partition: &pb::PartitionSpec,
    expected: Option<String>,
) -> Result<pb::CommittedPartition, tonic::Status> {
    let begun = begin(client, namespace, table, partition, 0).await?;
    let file = upload(&begun.location, "part-00000.parquet", 3)
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let committed = client
        .commit(commit_request(begun.batch_id, vec![file], expected))
        .await?
        .into_inner();
    committed
        .committed
        .into_iter()
        .next()
        .ok_or_else(|| tonic::Status::internal("commit returned nothing"))
}

/// The request creating `namespace.table`, partitioned by the string key `ds`.
pub fn ds_table(namespace: &str, table: &str) -> pb::CreateTableRequest {
    pb::CreateTableRequest {
        table: table_ref(namespace, table),
        partition_keys: vec![pb::PartitionKey {
            name: "ds".into(),
            r#type: pb::PartitionKeyType::String as i32,
        }],
        arrow_schema: vec![],
        if_not_exists: false,
        schema_policy: String::new(),
    }
}

/// Creates namespace `ns` and table `ns.table` partitioned by string key `ds`.
///
/// # Errors
/// Whatever the service answers.
pub async fn create_table(
    client: &mut MetastoreClient<Channel>,
    namespace: &str,
    table: &str,
) -> Result<(), tonic::Status> {
    client
        .create_namespace(pb::CreateNamespaceRequest {
            name: namespace.into(),
            if_not_exists: true,
        })
        .await?;
    client.create_table(ds_table(namespace, table)).await?;
    Ok(())
}

/// The full history of a partition, newest first, following pages.
///
/// # Errors
/// Whatever the service answers.
pub async fn full_history(
    client: &mut MetastoreClient<Channel>,
    namespace: &str,
    table: &str,
    partition: &pb::PartitionSpec,
) -> Result<Vec<pb::HistoryEntry>, tonic::Status> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .get_history(pb::GetHistoryRequest {
                table: table_ref(namespace, table),
                partition: Some(partition.clone()),
                page_size: 0,
                page_token: token,
            })
            .await?
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return Ok(entries);
        }
        token = page.next_page_token;
    }
}

/// True when `path` is inside `dir` after resolving `.` and `..` lexically.
pub fn is_within(path: &Path, dir: &Path) -> bool {
    let mut parts: Vec<std::path::Component> = Vec::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            other => parts.push(other),
        }
    }
    parts.iter().collect::<PathBuf>().starts_with(dir)
}

/// Every version of every partition of a single-key table whose batches each hold one number
/// in their first column (the write that made them), as `(partition value, batch id, version,
/// write)`: how the fault and kill suites trace the catalog back to acknowledged writes.
///
/// # Errors
/// When the catalog cannot be read, or a version is partial or mixes writes.
pub async fn trace_versions(
    client: &batchstore_client::Client,
    table: &batchstore_client::TableName,
) -> Result<Vec<(String, String, i64, i64)>> {
    use batchstore_client::{PartitionSpec, ReadRequest, Selector};
    let mut out = Vec::new();
    for p in client.partitions(table).await? {
        let spec = PartitionSpec::named(p.partition.clone());
        for entry in client.history(table, &spec).await? {
            let read = client
                .read(
                    &ReadRequest {
                        table: Some(table.clone()),
                        partitions: vec![spec.clone()],
                        selector: Selector::Version(entry.version),
                        ..ReadRequest::default()
                    },
                    None,
                )
                .await?;
            let writes: std::collections::BTreeSet<i64> = read
                .batches
                .iter()
                .filter_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<arrow_array::Int64Array>()
                        .cloned()
                })
                .flat_map(|a| a.values().to_vec())
                .collect();
            anyhow::ensure!(
                writes.len() == 1 && read.num_rows() as i64 == entry.rows,
                "version {} of {:?} is partial or mixes writes: {writes:?}",
                entry.version,
                p.partition
            );
            out.push((
                p.partition[0].1.clone(),
                entry.batch_id.clone(),
                entry.version,
                *writes.iter().next().unwrap_or(&-1),
            ));
        }
    }
    Ok(out)
}

/// The `p`th percentile (0-100) of `samples`, nearest rank; NaN when there are none. For the
/// benchmarks' latency figures.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank]
}
