//! Lifecycle on S3 (moto): garbage collection (killed at random points too), retention, leases
//! and orphans with the warehouse in a bucket, on SQLite and PostgreSQL. The client in the test
//! process reads S3 through `AWS_*` variables, so for each backend the test starts moto and
//! runs itself again as a child process with them set.

#[allow(dead_code)]
#[path = "lifecycle/scenarios.rs"]
mod scenarios;

use anyhow::{Context, ensure};
use batchstore_tests::Backend;
use batchstore_tests::s3::S3Server;
use scenarios::{Env, killed_scenario, orphans_scenario, retention_scenario};

/// Set in the child run: the moto endpoint the parent started, and the backend.
const CHILD: &str = "BATCHSTORE_TEST_S3_ENDPOINT";
const BACKEND: &str = "BATCHSTORE_TEST_S3_BACKEND";

#[test]
fn gc_and_orphans_on_s3() -> anyhow::Result<()> {
    if let Ok(endpoint) = std::env::var(CHILD) {
        let backend = match std::env::var(BACKEND).as_deref() {
            Ok("postgres") => Backend::Postgres,
            _ => Backend::Sqlite,
        };
        let s3 = S3Server::attach(&endpoint, "lifecycle");
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()?
            .block_on(async {
                // GC killed at random points converges on S3 too.
                killed_scenario(backend, Some(&s3)).await?;
                let env = Env::start_on_s3(backend, s3).await?;
                orphans_scenario(&env).await?;
                retention_scenario(env).await
            });
    }
    for backend in ["sqlite", "postgres"] {
        let s3 = S3Server::start("lifecycle")?;
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["--exact", "gc_and_orphans_on_s3", "--nocapture"])
            .envs(s3.env())
            .env(CHILD, &s3.endpoint)
            .env(BACKEND, backend)
            .status()
            .context("running the S3 scenario")?;
        ensure!(
            status.success(),
            "the S3 scenario on {backend} failed ({status})"
        );
    }
    Ok(())
}
