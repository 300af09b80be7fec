//! The batchstore metastore: the catalog service that maps each (table, partition) to an
//! immutable batch of files, with history, rollback, tags and lineage.
//!
//! Layers, outside in: `server` (process, sockets, signals) → `service` (gRPC, conversions,
//! status mapping) → `catalog` (SQL, transactions, the commit protocol) → `model`, `names`,
//! `layout`, `schema`, `warehouse` (domain rules, free of transport and SQL).

pub mod access;
pub mod catalog;
pub mod error;
pub mod footer;
pub mod layout;
pub mod limits;
pub mod model;
pub mod names;
pub mod schema;
pub mod server;
pub mod service;
pub mod warehouse;
