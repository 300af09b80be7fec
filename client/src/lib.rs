//! The batchstore client: the one library every front end (tablectl, Python, R) uses.
//!
//! It talks gRPC to the metastore for everything about *what* a partition is, and reads and
//! writes Parquet straight to storage (local disk or S3) for the data itself:
//! - [`Client::write`] / [`Client::write_partitions`]: Arrow → Parquet (zstd) → a fresh batch →
//!   one atomic commit, with optional compare-and-swap;
//! - [`Client::manifest`]: the exact files of a selection, pinned, for query engines;
//! - [`Client::read`]: a selection (current, version, batch, tag, as-of; projection; many
//!   partitions with their keys as columns) → Arrow;
//! - history, rollback, tags, tables and namespaces;
//! - retention, leases, garbage collection and dropped tables (`lifecycle`).

mod access;
pub mod client;
mod commit;
pub mod error;
pub mod home;
mod lifecycle;
pub mod manifest;
pub mod partition;
pub mod read;
pub mod runtime;
pub mod schema;
pub mod storage;
mod tables;
pub mod types;
mod versions;
mod wire;
pub mod write;

pub use access::{AuditEntry, AuditQuery, GrantInfo, Grantee, Identity, Permission};
pub use client::{Client, ConnectOptions, DEFAULT_ENDPOINT};
pub use error::{ClientError, Missing, Result};
pub use home::LocalHome;
pub use lifecycle::{GcCounts, GcProgress, GcScope, LeaseInfo, LeaseName, Orphan, OrphanReport};
pub use manifest::{Manifest, ManifestFile};
pub use partition::{KeyPredicate, PartitionSpec, PartitionValue, PredicateOp, describe_partition};
pub use read::{PartitionColumns, ReadRequest, ReadResult};
pub use storage::EngineStorage;
pub use tokio_util::sync::CancellationToken;
pub use types::*;
pub use versions::{RollbackTo, TagTarget};
pub use write::{EarlyBegin, PartitionData, Progress, Rows, WriteOptions, WriteRequest};
