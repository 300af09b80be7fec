//! The hand-written half of the wire contract: the names and sentinel values that the
//! `.proto` file cannot express, shared by the metastore and every client. Nothing else may
//! spell these strings.

/// Response metadata naming the condition of an error (`schema_mismatch`, `conflict`, …), so
/// a client can tell conditions apart that share a gRPC code.
pub const ERROR_KIND_KEY: &str = "batchstore-error-kind";

/// Response metadata of a `NOT_FOUND` error: what is missing ([`Missing::as_str`]), so a client
/// can tell a missing table (which a write may create) from a missing partition or file.
pub const MISSING_KEY: &str = "batchstore-missing";

/// Binary response metadata of a `NOT_FOUND` error: the missing thing's name, UTF-8 (a
/// namespace, `ns.table`, `key=value/...`, a version's number or as-of time, a batch id, a
/// tag's or lease's name). Binary (`-bin`), since names need not be ASCII.
pub const MISSING_NAME_KEY: &str = "batchstore-missing-name-bin";

/// Response metadata of an `ABORTED` conflict: the partition's current batch, the one the
/// failed compare-and-swap did not expect (`-` when the partition was never written).
pub const CURRENT_BATCH_KEY: &str = "batchstore-current-batch";

/// What a `NOT_FOUND` error found missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Namespace,
    Table,
    Partition,
    Version,
    Batch,
    Tag,
    Lease,
}

impl Missing {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Namespace => "namespace",
            Missing::Table => "table",
            Missing::Partition => "partition",
            Missing::Version => "version",
            Missing::Batch => "batch",
            Missing::Tag => "tag",
            Missing::Lease => "lease",
        }
    }

    /// Reads a metadata value; `None` for an unknown one (a newer metastore).
    pub fn parse(text: &str) -> Option<Self> {
        [
            Missing::Namespace,
            Missing::Table,
            Missing::Partition,
            Missing::Version,
            Missing::Batch,
            Missing::Tag,
            Missing::Lease,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

/// Request metadata naming who acts. With authentication on, the metastore records the
/// authenticated principal instead and keeps this claim only beside it in the audit trail.
pub const ACTOR_KEY: &str = "batchstore-actor";

/// Request metadata carrying the credentials: `Bearer TOKEN`.
pub const AUTHORIZATION_KEY: &str = "authorization";

/// The scheme of [`AUTHORIZATION_KEY`]'s value, with its separating space.
pub const BEARER_PREFIX: &str = "Bearer ";

/// The namespace name in a grant that means every namespace.
pub const ALL_NAMESPACES: &str = "*";

/// An `expected_current_batch_id` meaning "the partition must never have been written". The
/// empty string means the same, since `BeginWrite` reports `""` as the current batch of such
/// a partition; an unset field means no expectation.
pub const EXPECT_NEW: &str = "-";

/// True when an `expected_current_batch_id` value asks for a partition never written.
pub fn expects_new(value: &str) -> bool {
    value == EXPECT_NEW || value.is_empty()
}

/// A partition spec as `(key, value)` pairs (an unset spec: none).
pub fn partition_pairs(spec: Option<&crate::v1::PartitionSpec>) -> Vec<(String, String)> {
    spec.map(|s| {
        s.values
            .iter()
            .map(|v| (v.key.clone(), v.value.clone()))
            .collect()
    })
    .unwrap_or_default()
}

/// The framing of the Arrow schemas on the wire: an encapsulated Arrow IPC `Schema` message
/// (continuation marker `0xFFFFFFFF`, little-endian length, flatbuffer, padding to 8 bytes),
/// as `pyarrow.Schema.serialize()` writes it. Bare flatbuffer bytes are accepted too.
const IPC_CONTINUATION: [u8; 4] = [0xff; 4];

/// Encodes a schema (with its metadata) in the wire framing.
pub fn encode_schema(schema: &arrow_schema::Schema) -> Vec<u8> {
    let generator = arrow_ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    let message = generator
        .schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &Default::default())
        .ipc_message;
    let padded = message.len().div_ceil(8) * 8;
    let mut out = Vec::with_capacity(8 + padded);
    out.extend_from_slice(&IPC_CONTINUATION);
    out.extend_from_slice(&(padded as i32).to_le_bytes());
    out.extend_from_slice(&message);
    out.resize(8 + padded, 0);
    out
}

/// Decodes a schema in the wire framing (or bare flatbuffer bytes).
///
/// # Errors
/// When the bytes are not an Arrow schema.
pub fn decode_schema(bytes: &[u8]) -> Result<arrow_schema::Schema, arrow_schema::ArrowError> {
    if bytes.starts_with(&IPC_CONTINUATION) {
        arrow_ipc::convert::try_schema_from_ipc_buffer(bytes)
    } else {
        arrow_ipc::convert::try_schema_from_flatbuffer_bytes(bytes)
    }
}

/// The layout of a local home: the directory where a metastore started on demand keeps its
/// catalog and warehouse, and where clients of the same user find it. Clients choose the
/// directory and start the server; the server serves the socket in it and exits when idle.
pub mod home {
    /// The home directory, when set (else the user's data directory, `…/batchstore`).
    pub const HOME_ENV: &str = "BATCHSTORE_HOME";
    /// Seconds without a connected client after which the home's server exits.
    pub const IDLE_ENV: &str = "BATCHSTORE_IDLE_SECONDS";
    /// The Unix socket the home's server listens on (only its user can reach it).
    pub const SOCKET: &str = "metastore.sock";
    /// Held (an exclusive file lock) by the home's server for as long as it runs.
    pub const SERVER_LOCK: &str = "metastore.lock";
    /// Held by a client while it starts the home's server, so one starts at a time.
    pub const START_LOCK: &str = "start.lock";
    /// The SQLite catalog.
    pub const CATALOG: &str = "catalog.db";
    /// The warehouse directory.
    pub const WAREHOUSE: &str = "warehouse";
    /// The server's log (its standard error).
    pub const LOG: &str = "metastore.log";
}
