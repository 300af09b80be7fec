//! `metastore`: run the batchstore catalog service, or migrate its database.

use batchstore_metastore::catalog::{CatalogSettings, migrate_database, redact_url};
use batchstore_metastore::server::{ServeOptions, serve, shutdown_signal};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

/// The batchstore metastore: maps each (table, partition) to an immutable batch of Parquet
/// files, with history, rollback, tags and lineage.
#[derive(Debug, Parser)]
#[command(name = "metastore", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
}

#[derive(Debug, Args)]
struct DatabaseArgs {
    /// Catalog database: `sqlite://FILE?mode=rwc` (embedded default) or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` for production.
    #[arg(
        long,
        env = "BATCHSTORE_DATABASE_URL",
        default_value = "sqlite://batchstore.db?mode=rwc"
    )]
    database_url: String,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on. Port 0 picks a free port; the bound address is printed on the
    /// first line of stdout as `listening on HOST:PORT`.
    #[arg(long, env = "BATCHSTORE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,

    #[command(flatten)]
    database: DatabaseArgs,

    /// Where batches are stored: a local directory (created if missing), `file:///DIR`, or
    /// `s3://BUCKET/PREFIX` with the standard AWS_* variables (AWS_ENDPOINT_URL for an
    /// S3-compatible server; plain `http://` endpoints are allowed).
    #[arg(long, env = "BATCHSTORE_WAREHOUSE", default_value = "./warehouse")]
    warehouse: String,

    /// Lease of a pending batch when the client asks for none, in seconds.
    #[arg(long, env = "BATCHSTORE_DEFAULT_LEASE_SECONDS", default_value_t = 3600)]
    default_lease_seconds: u64,

    /// Longest lease a client may ask for, in seconds.
    #[arg(long, env = "BATCHSTORE_MAX_LEASE_SECONDS", default_value_t = 7 * 24 * 3600)]
    max_lease_seconds: u64,

    /// How often pending batches with expired leases are marked abandoned, in seconds.
    #[arg(long, env = "BATCHSTORE_LEASE_SWEEP_SECONDS", default_value_t = 30)]
    lease_sweep_seconds: u64,

    /// Database connections per process (PostgreSQL; SQLite always uses one).
    #[arg(long, env = "BATCHSTORE_MAX_CONNECTIONS", default_value_t = 16)]
    max_connections: u32,

    /// Requests served at once; more wait their turn.
    #[arg(
        long,
        env = "BATCHSTORE_MAX_CONCURRENT_REQUESTS",
        default_value_t = 256
    )]
    max_concurrent_requests: usize,

    /// Longest a request may run before it is cancelled (DEADLINE_EXCEEDED), in seconds.
    #[arg(
        long,
        env = "BATCHSTORE_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 600
    )]
    request_timeout_seconds: u64,

    /// Pending (begun, not yet committed) batches one table may have at once.
    #[arg(
        long,
        env = "BATCHSTORE_MAX_PENDING_PER_TABLE",
        default_value_t = 10_000
    )]
    max_pending_per_table: i64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCHSTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let options = ServeOptions {
                listen: args.listen,
                database_url: args.database.database_url,
                warehouse: args.warehouse,
                lease_sweep_interval: Duration::from_secs(args.lease_sweep_seconds.max(1)),
                max_concurrent_requests: args.max_concurrent_requests.max(1),
                request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
                settings: CatalogSettings {
                    default_lease: Duration::from_secs(args.default_lease_seconds.max(1)),
                    max_lease: Duration::from_secs(args.max_lease_seconds.max(1)),
                    max_connections: args.max_connections.max(1),
                    max_pending_per_table: args.max_pending_per_table.max(1),
                },
            };
            serve(options, shutdown_signal()).await
        }
        Command::Migrate(args) => {
            migrate_database(&args.database_url).await?;
            eprintln!("migrated {}", redact_url(&args.database_url));
            Ok(())
        }
    }
}
