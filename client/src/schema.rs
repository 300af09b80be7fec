//! Arrow schemas on the wire: encapsulated Arrow IPC schema messages (what
//! `pyarrow.Schema.serialize()` produces), so any Arrow implementation can read them.

use crate::error::{ClientError, Result};
use arrow_schema::Schema;
use batchstore_proto::wire::IPC_CONTINUATION;

/// Encodes a schema (with its metadata) as an encapsulated IPC message.
pub fn encode(schema: &Schema) -> Vec<u8> {
    let generator = arrow_ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
    let encoded = generator.schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &Default::default(),
    );
    let message = encoded.ipc_message;
    let padded = message.len().div_ceil(8) * 8;
    let mut out = Vec::with_capacity(8 + padded);
    out.extend_from_slice(&IPC_CONTINUATION);
    out.extend_from_slice(&(padded as i32).to_le_bytes());
    out.extend_from_slice(&message);
    out.resize(8 + padded, 0);
    out
}

/// Decodes what `encode` (or any Arrow IPC writer) produced.
///
/// # Errors
/// `Data` when the bytes are not an Arrow schema.
pub fn decode(bytes: &[u8]) -> Result<Schema> {
    let decoded = if bytes.starts_with(&IPC_CONTINUATION) {
        arrow_ipc::convert::try_schema_from_ipc_buffer(bytes)
    } else {
        arrow_ipc::convert::try_schema_from_flatbuffer_bytes(bytes)
    };
    decoded.map_err(|e| ClientError::Data(format!("the stored schema could not be decoded: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, TimeUnit};
    use std::collections::HashMap;

    #[test]
    fn round_trips_types_and_metadata() {
        let schema = Schema::new_with_metadata(
            vec![
                Field::new("a", DataType::Int64, false),
                Field::new(
                    "t",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into())),
                    true,
                ),
                Field::new("d", DataType::Decimal128(12, 3), true),
                Field::new_dictionary("c", DataType::Int32, DataType::Utf8, true),
            ],
            HashMap::from([("pandas".to_owned(), "{}".to_owned())]),
        );
        assert_eq!(decode(&encode(&schema)).expect("decodes"), schema);
    }
}
