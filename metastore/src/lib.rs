//! The batchstore metastore: the catalog service that maps each (table, partition) to an
//! immutable batch of files, with history, rollback, tags and lineage.
//!
//! Layers, outside in: `cli` and `home` (how a process is told what to serve), `server` (process, sockets, signals) → `service` (gRPC, conversions,
//! status mapping) → `catalog` (SQL, transactions, the commit protocol) → `model`, `names`,
//! `layout`, `schema`, `warehouse` (domain rules, free of transport and SQL).

pub mod access;
pub mod catalog;
pub mod cli;
pub mod error;
pub mod footer;
pub mod home;
pub mod layout;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod names;
pub mod schema;
pub mod server;
pub mod service;
pub mod warehouse;
