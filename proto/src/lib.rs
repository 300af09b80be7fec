//! The batchstore wire contract, `batchstore.v1`: the only thing clients and the metastore share.
//!
//! Code is generated from `proto/batchstore/v1/metastore.proto` at build time; nothing here is
//! edited by hand.

#![allow(clippy::all, missing_docs)]

/// Generated messages, client and server for `batchstore.v1`.
pub mod v1 {
    tonic::include_proto!("batchstore.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/batchstore_descriptor.bin"));
