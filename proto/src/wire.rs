//! The hand-written half of the wire contract: the names and sentinel values that the
//! `.proto` file cannot express, shared by the metastore and every client. Nothing else may
//! spell these strings.

/// Response metadata naming the condition of an error (`schema_mismatch`, `conflict`, …), so
/// a client can tell conditions apart that share a gRPC code.
pub const ERROR_KIND_KEY: &str = "batchstore-error-kind";

/// Request metadata naming who acts (until authentication replaces it).
pub const ACTOR_KEY: &str = "batchstore-actor";

/// An `expected_current_batch_id` meaning "the partition must never have been written". The
/// empty string means the same, since `BeginWrite` reports `""` as the current batch of such
/// a partition; an unset field means no expectation.
pub const EXPECT_NEW: &str = "-";

/// True when an `expected_current_batch_id` value asks for a partition never written.
pub fn expects_new(value: &str) -> bool {
    value == EXPECT_NEW || value.is_empty()
}

/// The framing of the Arrow schemas on the wire: an encapsulated Arrow IPC `Schema` message
/// (continuation marker `0xFFFFFFFF`, little-endian length, flatbuffer, padding to 8 bytes),
/// as `pyarrow.Schema.serialize()` writes it. Bare flatbuffer bytes are accepted too.
pub const IPC_CONTINUATION: [u8; 4] = [0xff; 4];
