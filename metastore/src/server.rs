//! Running the service: bind, announce the address, serve gRPC (with health and reflection),
//! sweep expired leases, and shut down gracefully.
//!
//! The bound address is printed as the first line of stdout (`listening on HOST:PORT`) only
//! after the catalog is migrated and the socket is bound, so whoever started the process can
//! connect as soon as it reads that line. On SIGTERM or Ctrl-C the server stops accepting,
//! lets in-flight requests (a commit included) finish, then exits.
//!
//! Without authentication the server refuses to listen beyond loopback unless told
//! `insecure_no_auth`: anyone who can reach the port could otherwise change any table.

use crate::catalog::{Catalog, CatalogSettings};
use crate::service::MetastoreService;
use crate::service::gate::GateLayer;
use crate::service::guard::{AccessConfig, Guard};
use crate::service::malformed::MalformedLayer;
use crate::warehouse::Warehouse;
use anyhow::Context;
use batchstore_proto::v1::metastore_server::MetastoreServer;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Everything `metastore serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub database_url: String,
    pub warehouse: String,
    pub lease_sweep_interval: Duration,
    /// Requests served at once, over all connections; more wait their turn.
    pub max_concurrent_requests: usize,
    /// Longest a request may run.
    pub request_timeout: Duration,
    pub settings: CatalogSettings,
    /// Authentication and grants.
    pub access: AccessConfig,
    /// Serve without authentication on a non-loopback address.
    pub insecure_no_auth: bool,
    /// TLS, and optionally client certificates.
    pub tls: Option<TlsOptions>,
    /// How long audit events are kept (`None`: for ever).
    pub audit_retention: Option<Duration>,
    /// How often garbage collection runs (`None`: only on demand).
    pub gc_interval: Option<Duration>,
    /// Where `/metrics` is served (Prometheus text), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
}

/// The server's certificate and key (PEM), and a CA whose client certificates it requires.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsOptions {
    fn config(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read(path)
                .with_context(|| format!("reading the TLS {what} {}", path.display()))
        };
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
            read(&self.cert, "certificate")?,
            read(&self.key, "key")?,
        ));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        Ok(config)
    }
}

/// Refuses to serve without authentication beyond loopback, unless told to.
fn check_exposure(options: &ServeOptions) -> anyhow::Result<()> {
    if options.access.authenticates() || options.listen.ip().is_loopback() {
        return Ok(());
    }
    if options.insecure_no_auth {
        tracing::warn!(listen = %options.listen,
            "serving WITHOUT authentication beyond loopback: anyone who reaches this port can \
             change or drop any table");
        return Ok(());
    }
    anyhow::bail!(
        "refusing to listen on {} without authentication: anyone reaching it could change any \
         table. Give --token-file or --jwks-file (see `metastore serve --help`), listen on \
         127.0.0.1, or pass --insecure-no-auth if the network itself is trusted",
        options.listen
    )
}

/// Where the server takes connections.
pub enum Listener {
    /// A TCP address (`options.listen`), announced on stdout once bound.
    Tcp(SocketAddr),
    /// A local home's Unix socket, already bound (see `home`).
    Home(crate::home::Incoming),
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// When the database, the warehouse or the address cannot be used.
pub async fn serve(
    options: ServeOptions,
    listener: Listener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if matches!(listener, Listener::Tcp(_)) {
        check_exposure(&options)?;
    }
    let tls = options.tls.as_ref().map(TlsOptions::config).transpose()?;
    let warehouse = Warehouse::open(&options.warehouse)
        .with_context(|| format!("opening the warehouse {}", options.warehouse))?;
    let catalog = Catalog::connect(&options.database_url, warehouse, options.settings.clone())
        .await
        .context("opening the catalog")?;
    let listener = match listener {
        Listener::Tcp(address) => {
            let tcp = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding {address}"))?;
            let bound = tcp.local_addr().context("reading the bound address")?;
            announce(bound)?;
            tracing::info!(address = %bound, warehouse = catalog.warehouse().root_url(), "metastore serving");
            Ok(tcp)
        }
        Listener::Home(incoming) => {
            tracing::info!(
                warehouse = catalog.warehouse().root_url(),
                "metastore serving a local home"
            );
            Err(incoming)
        }
    };

    if let Some(listen) = options.metrics_listen {
        crate::metrics::install(listen, catalog.clone())?;
    }
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MetastoreServer<MetastoreService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(batchstore_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let (guard, audit_writer) =
        Guard::new(catalog.clone(), options.access.clone()).map_err(anyhow::Error::msg)?;
    let sweeper = tokio::spawn(sweep(
        catalog.clone(),
        options.lease_sweep_interval,
        options.audit_retention,
    ));
    let collector = options
        .gc_interval
        .map(|every| tokio::spawn(collect_garbage(catalog.clone(), every)));
    let guard = Arc::new(guard);
    let gate = GateLayer::new(guard.clone());
    let service = MetastoreServer::new(MetastoreService::new(catalog.clone(), guard))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("configuring TLS")?;
    }
    let router = builder
        .timeout(options.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // A request that cannot be decoded is the caller's INVALID_ARGUMENT.
        .layer(MalformedLayer)
        // Credentials are checked before the concurrency limit and before a body is read.
        .layer(gate)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            options.max_concurrent_requests,
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service);
    let served = match listener {
        Ok(tcp) => {
            router
                .serve_with_incoming_shutdown(
                    TcpIncoming::from(tcp).with_nodelay(Some(true)),
                    shutdown,
                )
                .await
        }
        Err(home) => router.serve_with_incoming_shutdown(home, shutdown).await,
    };
    sweeper.abort();
    if let Some(collector) = collector {
        collector.abort();
    }
    // Every service handle is gone now: the audit writer drains its queue and stops.
    let _ = audit_writer.await;
    catalog.close().await;
    tracing::info!("metastore stopped");
    served.context("serving gRPC")
}

fn announce(address: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {address}").context("writing to stdout")?;
    stdout.flush().context("flushing stdout")
}

/// Marks expired leases abandoned, and deletes audit events past their retention.
async fn sweep(catalog: Catalog, every: Duration, audit_retention: Option<Duration>) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        if let Some(keep) = audit_retention {
            let expired = async {
                let before = catalog.now().await? - keep.as_micros() as i64;
                catalog.expire_audit(before).await
            };
            match expired.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "deleted audit events past their retention"),
                Err(error) => tracing::warn!(%error, "expiring audit events failed"),
            }
        }
        match catalog.sweep_expired_leases().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                batches = n,
                "marked batches with expired leases as abandoned"
            ),
            Err(error) => tracing::warn!(%error, "sweeping expired leases failed"),
        }
    }
}

/// Runs garbage collection over the whole catalog every `every` (the first run after one
/// interval). A run another replica holds is skipped; a failed run resumes at the next.
async fn collect_garbage(catalog: Catalog, every: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        let mut total = crate::model::GcCounts::default();
        let mut token = String::new();
        let outcome = loop {
            match catalog
                .collect_garbage(&crate::model::GcScope::All, false, &token)
                .await
            {
                Ok(step) => {
                    total += step.counts;
                    if step.resume_token.is_empty() {
                        break Ok(());
                    }
                    token = step.resume_token;
                }
                Err(error) => break Err(error),
            }
        };
        match outcome {
            Ok(()) if total == crate::model::GcCounts::default() => {}
            Ok(()) => tracing::info!(
                batches_expired = total.batches_expired,
                batches_deleted = total.batches_deleted,
                files = total.files_deleted,
                bytes = total.bytes_deleted,
                tables_purged = total.tables_purged,
                "garbage collection finished"
            ),
            Err(crate::error::CatalogError::FailedPrecondition(message)) => {
                tracing::info!(%message, "garbage collection skipped");
            }
            Err(error) => tracing::warn!(%error, "garbage collection failed; it resumes next time"),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
