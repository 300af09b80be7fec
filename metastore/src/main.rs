//! `metastore`: run the batchstore catalog service, or migrate its database (see `cli`).

use batchstore_metastore::cli::{Cli, init_logging};
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_logging();
    Cli::parse().run().await
}
