//! The batchstore client library (issue: client and tablectl). For now it re-exports the wire
//! contract so front ends have one crate to depend on.

pub use batchstore_proto as proto;
