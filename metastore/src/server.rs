//! Running the service: bind, announce the address, serve gRPC (with health and reflection),
//! sweep expired leases, and shut down gracefully.
//!
//! The bound address is printed as the first line of stdout (`listening on HOST:PORT`) only
//! after the catalog is migrated and the socket is bound, so whoever started the process can
//! connect as soon as it reads that line. On SIGTERM or Ctrl-C the server stops accepting,
//! lets in-flight requests (a commit included) finish, then exits.

use crate::catalog::{Catalog, CatalogSettings};
use crate::service::MetastoreService;
use crate::warehouse::Warehouse;
use anyhow::Context;
use batchstore_proto::v1::metastore_server::MetastoreServer;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;
use tonic::transport::server::TcpIncoming;

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
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
///
/// # Errors
/// When the database, the warehouse or the address cannot be used.
pub async fn serve(
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let warehouse = Warehouse::open(&options.warehouse)
        .with_context(|| format!("opening the warehouse {}", options.warehouse))?;
    let catalog = Catalog::connect(&options.database_url, warehouse, options.settings.clone())
        .await
        .context("opening the catalog")?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("binding {}", options.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MetastoreServer<MetastoreService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(batchstore_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let sweeper = tokio::spawn(sweep_leases(catalog.clone(), options.lease_sweep_interval));
    let service = MetastoreServer::new(MetastoreService::new(catalog.clone()))
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024);

    announce(address)?;
    tracing::info!(%address, warehouse = catalog.warehouse().root_url(), "metastore serving");
    let served = tonic::transport::Server::builder()
        .timeout(options.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            options.max_concurrent_requests,
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    sweeper.abort();
    catalog.close().await;
    tracing::info!("metastore stopped");
    served.context("serving gRPC")
}

fn announce(address: SocketAddr) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {address}").context("writing to stdout")?;
    stdout.flush().context("flushing stdout")
}

async fn sweep_leases(catalog: Catalog, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
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
