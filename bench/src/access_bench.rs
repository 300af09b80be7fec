//! `access-bench`: what authentication and TLS cost. Tiny commits (ten rows to a new partition,
//! through the client library: begin, upload, commit) and single-partition resolves (one gRPC
//! call) against three metastores started alike: access off, bearer tokens, and bearer tokens
//! over TLS. Rounds alternate between the three so that drift on a busy machine hits all alike.
//!
//! A benchmark, not a test: it prints figures and asserts nothing. `make bench-access`.

use anyhow::Result;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use batchstore_client::{
    Client, ConnectOptions, PartitionData, PartitionSpec, Rows, TableName, WriteOptions,
};
use batchstore_proto::v1 as pb;
use batchstore_tests::credentials::{TlsFiles, token_entry};
use batchstore_tests::{Backend, Metastore, TestDatabase, percentile, spec, table_ref};
use clap::Parser;
use std::sync::Arc;
use std::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

#[derive(Debug, Parser)]
#[command(about = "Tiny-commit and resolve latency with authentication and TLS off and on")]
struct Args {
    /// Backend of the catalog: sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Rounds; each runs every configuration once, in turn.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Tiny commits per configuration and round.
    #[arg(long, default_value_t = 200)]
    commits: usize,
    /// Resolves per configuration and round.
    #[arg(long, default_value_t = 1000)]
    resolves: usize,
}

const TOKEN: &str = "bench-token-0123456789abcdef";

struct Setup {
    name: &'static str,
    _server: Metastore,
    client: Client,
    rpc: pb::metastore_client::MetastoreClient<Channel>,
    authorization: Option<String>,
    commits: Vec<f64>,
    resolves: Vec<f64>,
    written: usize,
}

async fn start(
    name: &'static str,
    db: &TestDatabase,
    tls: Option<&TlsFiles>,
    tokens: Option<&std::path::Path>,
) -> Result<Setup> {
    let mut args: Vec<String> = Vec::new();
    if let Some(tokens) = tokens {
        args.extend([
            "--token-file".into(),
            tokens.display().to_string(),
            "--admin".into(),
            "bench".into(),
        ]);
    }
    if let Some(tls) = tls {
        args.extend(tls.server_args(false));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Metastore::start(&db.url, &args)?;
    let port = server
        .address
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let endpoint = match tls {
        Some(_) => format!("https://localhost:{port}"),
        None => server.endpoint(),
    };
    let token = tokens.map(|_| TOKEN.to_owned());
    let client = Client::connect_with(ConnectOptions {
        endpoint: Some(endpoint.clone()),
        token: token.clone(),
        ca_file: tls.map(|t| t.ca.clone()),
        ..ConnectOptions::default()
    })
    .await?;
    let mut channel = Endpoint::from_shared(endpoint)?.tcp_nodelay(true);
    if let Some(tls) = tls {
        channel = channel.tls_config(
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&tls.ca)?)),
        )?;
    }
    let rpc = pb::metastore_client::MetastoreClient::new(channel.connect().await?);
    client.create_namespace("bench", true).await?;
    client
        .create_table(
            &TableName::new("bench", "tiny"),
            &[batchstore_client::PartitionKey {
                name: "ds".into(),
                key_type: batchstore_client::KeyType::String,
            }],
            None,
            false,
        )
        .await?;
    Ok(Setup {
        name,
        _server: server,
        client,
        rpc,
        authorization: token.map(|t| format!("Bearer {t}")),
        commits: Vec::new(),
        resolves: Vec::new(),
        written: 0,
    })
}

fn tiny() -> Result<RecordBatch> {
    Ok(RecordBatch::try_from_iter([(
        "x",
        Arc::new(Int64Array::from_iter_values(0..10)) as ArrayRef,
    )])?)
}

impl Setup {
    async fn commit_round(&mut self, n: usize) -> Result<()> {
        let table = TableName::new("bench", "tiny");
        let batch = tiny()?;
        for _ in 0..n {
            let data = Rows::Batches(batch.schema(), vec![batch.clone()]);
            let partition = PartitionSpec::named([("ds", format!("p{:07}", self.written))]);
            let t = Instant::now();
            self.client
                .write(
                    &table,
                    PartitionData {
                        partition,
                        expected: None,
                        data,
                    },
                    "",
                    &WriteOptions::default(),
                    None,
                )
                .await?;
            self.commits.push(t.elapsed().as_secs_f64() * 1e3);
            self.written += 1;
        }
        Ok(())
    }

    async fn resolve_round(&mut self, n: usize, state: &mut u64) -> Result<()> {
        for _ in 0..n {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            let i = (*state % self.written.max(1) as u64) as usize;
            let mut request = tonic::Request::new(pb::ResolvePartitionsRequest {
                table: table_ref("bench", "tiny"),
                partitions: vec![spec(&[("ds", &format!("p{i:07}"))])],
                ..Default::default()
            });
            if let Some(authorization) = &self.authorization {
                request
                    .metadata_mut()
                    .insert("authorization", authorization.parse()?);
            }
            let t = Instant::now();
            let resolved = self.rpc.resolve_partitions(request).await?.into_inner();
            self.resolves.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(resolved.partitions.len() == 1, "p{i:07} did not resolve");
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let backend = match args.backend.as_str() {
        "sqlite" => Backend::Sqlite,
        "postgres" => Backend::Postgres,
        other => anyhow::bail!("unknown backend {other}; use sqlite or postgres"),
    };
    let dir = tempfile::tempdir()?;
    let tls = TlsFiles::write(&dir.path().join("tls"))?;
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, token_entry("bench", &[], TOKEN))?;
    let dbs = [
        TestDatabase::create(backend)?,
        TestDatabase::create(backend)?,
        TestDatabase::create(backend)?,
    ];
    let mut setups = vec![
        start("off", &dbs[0], None, None).await?,
        start("tokens", &dbs[1], None, Some(&tokens)).await?,
        start("tokens+TLS", &dbs[2], Some(&tls), Some(&tokens)).await?,
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for round in 0..args.rounds {
        // Each round starts with another configuration, so none always runs first.
        let count = setups.len();
        for i in 0..count {
            let setup = &mut setups[(round + i) % count];
            setup.commit_round(args.commits).await?;
            setup.resolve_round(args.resolves, &mut state).await?;
        }
        eprintln!("round {} of {} done", round + 1, args.rounds);
    }
    let base = percentile(&setups[0].commits, 50.0);
    println!(
        "{} catalog, {} rounds x {} tiny commits and {} resolves per configuration",
        args.backend, args.rounds, args.commits, args.resolves
    );
    for setup in &setups {
        let p50 = percentile(&setup.commits, 50.0);
        println!(
            "{:11} tiny commit p50 {p50:6.2} ms  p99 {:6.2} ms ({:+5.1}% p50)   resolve p50 {:6.3} ms  p99 {:6.3} ms",
            setup.name,
            percentile(&setup.commits, 99.0),
            (p50 / base - 1.0) * 100.0,
            percentile(&setup.resolves, 50.0),
            percentile(&setup.resolves, 99.0),
        );
    }
    Ok(())
}
