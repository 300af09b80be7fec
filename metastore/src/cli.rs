//! The `metastore` command line: its arguments, their defaults and environment variables, and
//! what each command does. In the library so that the server a local home starts on demand
//! (`home`) is configured by exactly the same defaults as `metastore serve`.

use crate::access::Grantee;
use crate::access::jwt::{DEFAULT_ALGORITHMS, JwtConfig, parse_algorithms};
use crate::access::tokens::{new_token, token_hash};
use crate::catalog::{CatalogSettings, migrate_database, redact_url};
use crate::server::{Listener, ServeOptions, TlsOptions, serve, shutdown_signal};
use crate::service::guard::AccessConfig;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The batchstore metastore: maps each (table, partition) to an immutable batch of Parquet
/// files, with history, rollback, tags and lineage.
#[derive(Debug, Parser)]
#[command(name = "metastore", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (applies pending migrations first).
    Serve(Box<ServeArgs>),
    /// Serve a local home ($BATCHSTORE_HOME, else the user's data directory): a SQLite catalog
    /// and a warehouse there, on a Unix socket only this user can reach, until no client has
    /// been connected for $BATCHSTORE_IDLE_SECONDS (60). Clients start this themselves when
    /// no metastore is configured; the options of `serve` apply.
    ServeHome(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Tokens for the token file (`serve --token-file`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random token and the token-file entry that admits it. Give the token to
    /// the principal; put the entry (which holds only the token's hash) in the token file.
    New {
        /// The principal's name, as history and the audit trail will show it.
        name: String,
        /// Groups the principal belongs to (grants can be given to groups).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// Read a token from standard input and print its hash for the token file.
    Hash,
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
pub struct ServeArgs {
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

    #[command(flatten)]
    access: AccessArgs,

    /// Pending (begun, not yet committed) batches one table may have at once.
    #[arg(
        long,
        env = "BATCHSTORE_MAX_PENDING_PER_TABLE",
        default_value_t = 10_000
    )]
    max_pending_per_table: i64,

    /// Pending batches one principal may have at once, over all tables (with authentication
    /// on; without it the per-table bound alone applies).
    #[arg(
        long,
        env = "BATCHSTORE_MAX_PENDING_PER_PRINCIPAL",
        default_value_t = 10_000
    )]
    max_pending_per_principal: i64,

    /// Live named leases one holder (a principal, or without authentication the actor a client
    /// claims) may have at once; past it a new one is refused until some are released.
    #[arg(
        long,
        env = "BATCHSTORE_MAX_NAMED_LEASES_PER_HOLDER",
        default_value_t = 1_000
    )]
    max_named_leases_per_holder: i64,

    #[command(flatten)]
    lifecycle: LifecycleArgs,

    /// Serve Prometheus metrics at http://ADDRESS/metrics (RPC counts and latency by method
    /// and code, commits, rollbacks, database pool). Off by default; the page holds no table
    /// data, but keep it on a trusted network.
    #[arg(long, env = "BATCHSTORE_METRICS_LISTEN", value_name = "ADDRESS")]
    metrics_listen: Option<SocketAddr>,
}

/// Garbage collection, dropped tables and leases.
#[derive(Debug, Args)]
struct LifecycleArgs {
    /// How often garbage collection runs, in seconds. It deletes exactly the files of batches
    /// nobody may read any more: beyond a table's retention (none is set by default, so every
    /// version is kept), aborted or abandoned writes, and tables dropped longer ago than
    /// --drop-grace-seconds. Never a current, tagged or leased batch.
    #[arg(long, env = "BATCHSTORE_GC_INTERVAL_SECONDS", default_value_t = 3600)]
    gc_interval_seconds: u64,

    /// Do not run garbage collection on a schedule (`tablectl gc` still runs it on demand).
    #[arg(long, env = "BATCHSTORE_NO_GC")]
    no_gc: bool,

    /// How long a dropped table can be undropped (`tablectl table undrop`) before garbage
    /// collection may free its storage, in seconds.
    #[arg(long, env = "BATCHSTORE_DROP_GRACE_SECONDS", default_value_t = 7 * 24 * 3600)]
    drop_grace_seconds: u64,

    /// Time to live of a named lease when none is asked for, in seconds.
    #[arg(long, env = "BATCHSTORE_DEFAULT_LEASE_TTL_SECONDS", default_value_t = 24 * 3600)]
    default_lease_ttl_seconds: u64,

    /// Longest time to live a lease (named, or a read's) may ask for, in seconds.
    #[arg(long, env = "BATCHSTORE_MAX_LEASE_TTL_SECONDS", default_value_t = 90 * 24 * 3600)]
    max_lease_ttl_seconds: u64,
}

/// Logs to standard error, filtered by `BATCHSTORE_LOG` (default `info`); a no-op when the
/// process already logs.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BATCHSTORE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

impl Cli {
    /// Runs the command.
    ///
    /// # Errors
    /// Whatever the command fails with.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Token(command) => token_command(command),
            Command::Serve(args) => {
                let options = args.options()?;
                let listener = Listener::Tcp(options.listen);
                serve(options, listener, shutdown_signal()).await
            }
            Command::ServeHome(args) => crate::home::serve_home_with(*args).await,
            Command::Migrate(args) => {
                migrate_database(&args.database_url).await?;
                eprintln!("migrated {}", redact_url(&args.database_url));
                Ok(())
            }
        }
    }
}

impl ServeArgs {
    /// The arguments `metastore serve` would take with `args` (and the environment).
    ///
    /// # Errors
    /// When they do not parse.
    pub fn parse_with(args: &[&str]) -> anyhow::Result<Self> {
        #[derive(Debug, Parser)]
        struct Wrapper {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut all = vec!["metastore"];
        all.extend_from_slice(args);
        Ok(Wrapper::try_parse_from(all)?.serve)
    }

    /// The settings of a local home's server: its catalog and warehouse, and no
    /// authentication or TLS, whatever the environment says (the home's socket is reachable
    /// by its user only, and its clients send no credentials).
    pub fn for_home(&mut self, database_url: String, warehouse: String) {
        self.database.database_url = database_url;
        self.warehouse = warehouse;
        let access = &mut self.access;
        access.token_file = None;
        access.jwks_file = None;
        access.jwks_url = None;
        access.admins.clear();
        access.tls_cert = None;
        access.tls_key = None;
        access.tls_client_ca = None;
    }

    /// The server's options.
    ///
    /// # Errors
    /// Bad access settings.
    pub fn options(&self) -> anyhow::Result<ServeOptions> {
        let args = self;
        Ok(ServeOptions {
            access: args.access.access()?,
            tls: args.access.tls(),
            insecure_no_auth: args.access.insecure_no_auth,
            audit_retention: (args.access.audit_retention_days > 0)
                .then(|| Duration::from_secs(args.access.audit_retention_days * 86_400)),
            listen: args.listen,
            database_url: args.database.database_url.clone(),
            warehouse: args.warehouse.clone(),
            lease_sweep_interval: Duration::from_secs(args.lease_sweep_seconds.max(1)),
            max_concurrent_requests: args.max_concurrent_requests.max(1),
            request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
            settings: CatalogSettings {
                default_lease: Duration::from_secs(args.default_lease_seconds.max(1)),
                max_lease: Duration::from_secs(args.max_lease_seconds.max(1)),
                max_connections: args.max_connections.max(1),
                max_pending_per_table: args.max_pending_per_table.max(1),
                max_pending_per_principal: args.max_pending_per_principal.max(1),
                max_named_leases_per_holder: args.max_named_leases_per_holder.max(1),
                drop_grace: Duration::from_secs(args.lifecycle.drop_grace_seconds),
                default_lease_ttl: Duration::from_secs(
                    args.lifecycle.default_lease_ttl_seconds.max(1),
                ),
                max_lease_ttl: Duration::from_secs(args.lifecycle.max_lease_ttl_seconds.max(1)),
            },
            gc_interval: (!args.lifecycle.no_gc)
                .then(|| Duration::from_secs(args.lifecycle.gc_interval_seconds.max(1))),
            metrics_listen: args.metrics_listen,
        })
    }
}

/// Who may call: tokens, JWTs, admins, TLS.
#[derive(Debug, Args)]
struct AccessArgs {
    /// A TOML file of principals and the SHA-256 of their tokens (`metastore token new`
    /// prints entries). Reloaded when it changes, without a restart.
    #[arg(long, env = "BATCHSTORE_SERVER_TOKEN_FILE")]
    token_file: Option<PathBuf>,

    /// A JWKS file of the identity provider's public keys, to accept its JWTs. Reloaded when
    /// it changes (key rotation by `kid`).
    #[arg(long, env = "BATCHSTORE_JWKS_FILE")]
    jwks_file: Option<PathBuf>,

    /// A URL serving the identity provider's JWKS (fetched at start, every 5 minutes and when a
    /// token names an unknown key).
    #[arg(long, env = "BATCHSTORE_JWKS_URL")]
    jwks_url: Option<String>,

    /// The `iss` every JWT must carry.
    #[arg(long, env = "BATCHSTORE_JWT_ISSUER")]
    jwt_issuer: Option<String>,

    /// The `aud` every JWT must carry.
    #[arg(long, env = "BATCHSTORE_JWT_AUDIENCE")]
    jwt_audience: Option<String>,

    /// JWT algorithms accepted (public-key ones only).
    #[arg(long, env = "BATCHSTORE_JWT_ALGORITHMS", default_value = DEFAULT_ALGORITHMS)]
    jwt_algorithms: String,

    /// The claim naming a JWT's principal.
    #[arg(long, env = "BATCHSTORE_JWT_PRINCIPAL_CLAIM", default_value = "sub")]
    jwt_principal_claim: String,

    /// The claim listing a JWT principal's groups.
    #[arg(long, env = "BATCHSTORE_JWT_GROUPS_CLAIM", default_value = "groups")]
    jwt_groups_claim: String,

    /// Clock skew allowed on a JWT's `exp` and `nbf`, in seconds.
    #[arg(long, env = "BATCHSTORE_JWT_LEEWAY_SECONDS", default_value_t = 30)]
    jwt_leeway_seconds: u64,

    /// A principal (or `group:NAME`) that is admin of every namespace whatever the grants say;
    /// repeatable. Name at least one to give the first grants.
    #[arg(long = "admin", env = "BATCHSTORE_ADMINS", value_delimiter = ',')]
    admins: Vec<String>,

    /// Longest a grant changed through another replica takes to be seen by this one, in
    /// seconds (changes made through this one are seen at once).
    #[arg(long, env = "BATCHSTORE_GRANTS_CACHE_SECONDS", default_value_t = 2)]
    grants_cache_seconds: u64,

    /// Serve without authentication on an address beyond loopback (only on a network that is
    /// itself trusted).
    #[arg(long)]
    insecure_no_auth: bool,

    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "BATCHSTORE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "BATCHSTORE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "BATCHSTORE_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,

    /// Days audit events are kept (0: for ever).
    #[arg(long, env = "BATCHSTORE_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    audit_retention_days: u64,
}

impl AccessArgs {
    fn access(&self) -> anyhow::Result<AccessConfig> {
        let jwt = if self.jwks_file.is_some() || self.jwks_url.is_some() {
            let (Some(issuer), Some(audience)) = (&self.jwt_issuer, &self.jwt_audience) else {
                anyhow::bail!(
                    "JWTs are checked against an issuer and an audience: give --jwt-issuer and --jwt-audience"
                );
            };
            Some(JwtConfig {
                issuer: issuer.clone(),
                audience: audience.clone(),
                jwks_file: self.jwks_file.clone(),
                jwks_url: self.jwks_url.clone(),
                algorithms: parse_algorithms(&self.jwt_algorithms).map_err(anyhow::Error::msg)?,
                principal_claim: self.jwt_principal_claim.clone(),
                groups_claim: self.jwt_groups_claim.clone(),
                leeway: Duration::from_secs(self.jwt_leeway_seconds),
            })
        } else {
            None
        };
        Ok(AccessConfig {
            token_file: self.token_file.clone(),
            jwt,
            admins: self
                .admins
                .iter()
                .filter(|a| !a.trim().is_empty())
                .map(|a| Grantee::from_flag(a))
                .collect(),
            grants_ttl: Duration::from_secs(self.grants_cache_seconds),
        })
    }

    fn tls(&self) -> Option<TlsOptions> {
        Some(TlsOptions {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

fn token_command(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::New { name, groups } => {
            let token = new_token()?;
            let groups = groups
                .iter()
                .map(|g| format!("{g:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!("token: {token}");
            println!();
            println!("# the token-file entry (it holds only the token's hash):");
            println!("[[principal]]");
            println!("name = {name:?}");
            println!("groups = [{groups}]");
            println!("token_sha256 = \"{}\"", token_hash(&token));
            Ok(())
        }
        TokenCommand::Hash => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            println!("{}", token_hash(token.trim()));
            Ok(())
        }
    }
}
