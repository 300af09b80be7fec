//! Arrow schemas on the wire: encapsulated Arrow IPC schema messages (what
//! `pyarrow.Schema.serialize()` produces), so any Arrow implementation can read them.

use crate::error::{ClientError, Result};
use arrow_schema::Schema;
use batchstore_proto::wire;

/// Encodes a schema (with its metadata) in the wire framing.
pub fn encode(schema: &Schema) -> Vec<u8> {
    wire::encode_schema(schema)
}

/// Decodes what `encode` (or any Arrow IPC writer) produced.
///
/// # Errors
/// `Data` when the bytes are not an Arrow schema.
pub fn decode(bytes: &[u8]) -> Result<Schema> {
    wire::decode_schema(bytes)
        .map_err(|e| ClientError::Data(format!("the stored schema could not be decoded: {e}")))
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
