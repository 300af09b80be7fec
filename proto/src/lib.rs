//! The batchstore wire contract, `batchstore.v1`: the only thing clients and the metastore share.
//!
//! Code is generated from `proto/batchstore/v1/metastore.proto` at build time (`v1`); the
//! constants the `.proto` cannot express are in [`wire`], the only hand-written module.

pub mod wire;

/// Generated messages, client and server for `batchstore.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("batchstore.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/batchstore_descriptor.bin"));
