//! Prometheus metrics, named in one place: every RPC by method and code (count and latency
//! histogram), commits, rollbacks and the database pool. Served as text at `/metrics` on the
//! optional `--metrics-listen` address; without it nothing is recorded (the calls below
//! return at once).

use crate::catalog::Catalog;
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;

const RPC_REQUESTS: &str = "batchstore_rpc_requests_total";
const RPC_DURATION: &str = "batchstore_rpc_duration_seconds";
const COMMITS: &str = "batchstore_commits_total";
const COMMITTED_PARTITIONS: &str = "batchstore_committed_partitions_total";
const ROLLBACKS: &str = "batchstore_rollbacks_total";
const POOL_CONNECTIONS: &str = "batchstore_db_pool_connections";
const POOL_IDLE: &str = "batchstore_db_pool_idle_connections";

/// Latency buckets, in seconds: from a cached metadata call to a commit of many files.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Set once `/metrics` is served: until then nothing is recorded, and an RPC pays nothing.
static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How often the pool gauges are sampled.
const POOL_SAMPLE: Duration = Duration::from_secs(1);

/// Serves `/metrics` on `listen` and starts sampling the pool of `catalog`.
///
/// # Errors
/// When the exporter cannot be installed (for example the address is taken).
pub fn install(listen: SocketAddr, catalog: Catalog) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), BUCKETS)
        .context("configuring the latency buckets")?
        .install()
        .with_context(|| format!("serving metrics on {listen}"))?;
    INSTALLED.store(true, std::sync::atomic::Ordering::Relaxed);
    for (name, help) in [
        (
            RPC_REQUESTS,
            "gRPC requests answered, by method and status code",
        ),
        (COMMITS, "Commits that created versions"),
        (
            COMMITTED_PARTITIONS,
            "Partition versions created by commits",
        ),
        (
            ROLLBACKS,
            "Rollbacks answered (a retried rollback is counted again)",
        ),
    ] {
        metrics::describe_counter!(name, help);
    }
    metrics::describe_histogram!(
        RPC_DURATION,
        metrics::Unit::Seconds,
        "gRPC request latency, by method and status code"
    );
    metrics::describe_gauge!(POOL_CONNECTIONS, "Open catalog database connections");
    metrics::describe_gauge!(POOL_IDLE, "Idle catalog database connections");
    tokio::spawn(async move {
        loop {
            let (size, idle) = catalog.pool_stats();
            metrics::gauge!(POOL_CONNECTIONS).set(f64::from(size));
            metrics::gauge!(POOL_IDLE).set(idle as f64);
            tokio::time::sleep(POOL_SAMPLE).await;
        }
    });
    tracing::info!(%listen, "serving metrics at /metrics");
    Ok(())
}

/// One answered RPC. A method the service does not have (a path a client made up) is
/// counted as `unknown`, so clients cannot grow the label set.
pub fn rpc(method: &str, code: tonic::Code, elapsed: Duration) {
    if !INSTALLED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let code = code_name(code);
    let method = if known_method(method) {
        method
    } else {
        "unknown"
    };
    let labels = [
        ("grpc_method", method.to_owned()),
        ("grpc_code", code.to_owned()),
    ];
    metrics::counter!(RPC_REQUESTS, &labels).increment(1);
    metrics::histogram!(RPC_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// A commit that created `partitions` versions (a retry of a committed batch creates none).
pub fn committed(partitions: usize) {
    if partitions > 0 {
        metrics::counter!(COMMITS).increment(1);
        metrics::counter!(COMMITTED_PARTITIONS).increment(partitions as u64);
    }
}

/// A rollback that created a version.
pub fn rolled_back() {
    metrics::counter!(ROLLBACKS).increment(1);
}

/// Whether `method` is a method of the service, as the wire contract declares it.
fn known_method(method: &str) -> bool {
    use prost::Message;
    static KNOWN: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            prost_types::FileDescriptorSet::decode(batchstore_proto::FILE_DESCRIPTOR_SET)
                .map(|set| {
                    set.file
                        .iter()
                        .flat_map(|f| &f.service)
                        .flat_map(|s| &s.method)
                        .filter_map(|m| m.name.clone())
                        .collect()
                })
                .unwrap_or_default()
        })
        .contains(method)
}

/// The gRPC name of a code, as gRPC's own tools write it (`OK`, `NotFound`, ...).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::known_method;

    #[test]
    fn only_the_services_methods_are_labels() {
        for method in ["Commit", "ResolvePartitions", "BeginWrite", "WhoAmI"] {
            assert!(known_method(method), "{method}");
        }
        for made_up in ["", "commit", "Commit2", "unknown", &"x".repeat(300)] {
            assert!(!known_method(made_up), "{made_up}");
        }
    }
}
