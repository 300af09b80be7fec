//! Arrow schemas as the catalog sees them: decoded from IPC bytes and compared field by field.
//!
//! The metastore never reads Parquet, but it does own the table's schema: the first write (or
//! table creation) fixes it, and every later write must match it. A refusal names the column.

use crate::error::{CatalogError, CatalogResult};
use crate::model::PartitionKeyDef;
use arrow_schema::{DataType, Field, Schema};

/// The IPC continuation marker that prefixes an encapsulated message.
const CONTINUATION: [u8; 4] = [0xff; 4];

/// Decodes an Arrow IPC schema: either an encapsulated message (continuation marker and length
/// prefix, as `pyarrow.Schema.serialize()` writes) or bare flatbuffer `Message` bytes.
///
/// # Errors
/// `InvalidArgument` when the bytes are not an Arrow schema.
pub fn decode(bytes: &[u8]) -> CatalogResult<Schema> {
    if bytes.is_empty() {
        return Err(CatalogError::InvalidArgument(
            "the write carries no Arrow schema; send the schema of the data being committed".into(),
        ));
    }
    let decoded = if bytes.starts_with(&CONTINUATION) {
        arrow_ipc::convert::try_schema_from_ipc_buffer(bytes)
    } else {
        arrow_ipc::convert::try_schema_from_flatbuffer_bytes(bytes)
    };
    decoded.map_err(|e| {
        CatalogError::InvalidArgument(format!(
            "the Arrow schema sent with the request could not be decoded: {e}"
        ))
    })
}

/// Refuses schemas that could not be read back as a table: no columns, duplicate column names,
/// or a column named like a partition key (reads add the keys as columns).
///
/// # Errors
/// `InvalidArgument` naming the column.
pub fn validate_for_table(schema: &Schema, keys: &[PartitionKeyDef]) -> CatalogResult<()> {
    if schema.fields().is_empty() {
        return Err(CatalogError::InvalidArgument(
            "the schema has no columns; a batch needs at least one column".into(),
        ));
    }
    for (i, field) in schema.fields().iter().enumerate() {
        if schema.fields()[..i]
            .iter()
            .any(|f| f.name() == field.name())
        {
            return Err(CatalogError::InvalidArgument(format!(
                "column {:?} appears twice in the schema",
                field.name()
            )));
        }
        if keys.iter().any(|k| &k.name == field.name()) {
            return Err(CatalogError::InvalidArgument(format!(
                "column {:?} has the name of a partition key; partition keys are not stored as \
                 columns (reads add them), so drop or rename the column",
                field.name()
            )));
        }
    }
    Ok(())
}

/// Checks that a write's schema matches the table's.
///
/// Allowed: the same columns in any order with equal types; a non-nullable column written into
/// a nullable one; a dictionary column whose value type equals the table's (index types may
/// differ, since encoders choose them). Everything else is refused.
///
/// # Errors
/// `SchemaMismatch` naming the first column that differs and how.
pub fn check_compatible(table: &Schema, write: &Schema, table_name: &str) -> CatalogResult<()> {
    for field in table.fields() {
        let Ok(written) = write.field_with_name(field.name()) else {
            return Err(mismatch(
                table_name,
                field.name(),
                format!(
                    "the table has column {:?} ({}), but this write does not",
                    field.name(),
                    describe(field)
                ),
            ));
        };
        if !types_match(field.data_type(), written.data_type()) {
            return Err(mismatch(
                table_name,
                field.name(),
                format!(
                    "column {:?} is {} in the table, but {} in this write",
                    field.name(),
                    describe(field),
                    describe(written)
                ),
            ));
        }
        if written.is_nullable() && !field.is_nullable() {
            return Err(mismatch(
                table_name,
                field.name(),
                format!(
                    "column {:?} is not nullable in the table, but this write allows nulls in it",
                    field.name()
                ),
            ));
        }
    }
    if let Some(extra) = write
        .fields()
        .iter()
        .find(|f| table.field_with_name(f.name()).is_err())
    {
        return Err(mismatch(
            table_name,
            extra.name(),
            format!(
                "this write has column {:?} ({}), which the table does not have",
                extra.name(),
                describe(extra)
            ),
        ));
    }
    Ok(())
}

fn mismatch(table_name: &str, column: &str, detail: String) -> CatalogError {
    CatalogError::SchemaMismatch(format!(
        "schema mismatch in {table_name} on column {column:?}: {detail}; \
         write data with the table's schema, or write to a new table"
    ))
}

fn describe(field: &Field) -> String {
    let nullable = if field.is_nullable() {
        "nullable"
    } else {
        "not null"
    };
    format!("{}, {nullable}", field.data_type())
}

fn types_match(table: &DataType, write: &DataType) -> bool {
    match (table, write) {
        (DataType::Dictionary(_, a), DataType::Dictionary(_, b)) => types_match(a, b),
        (DataType::List(a), DataType::List(b))
        | (DataType::LargeList(a), DataType::LargeList(b)) => {
            types_match(a.data_type(), b.data_type())
        }
        (DataType::Struct(a), DataType::Struct(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.name() == y.name() && types_match(x.data_type(), y.data_type()))
        }
        _ => table == write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::TimeUnit;

    fn schema(fields: Vec<Field>) -> Schema {
        Schema::new(fields)
    }

    #[test]
    fn equal_schemas_match_in_any_order() {
        let a = schema(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
        ]);
        let b = schema(vec![
            Field::new("b", DataType::Utf8, false),
            Field::new("a", DataType::Int64, true),
        ]);
        assert!(check_compatible(&a, &b, "t").is_ok());
    }

    #[test]
    fn a_changed_type_names_the_column() {
        let a = schema(vec![Field::new("price", DataType::Float64, true)]);
        let b = schema(vec![Field::new("price", DataType::Utf8, true)]);
        let err = check_compatible(&a, &b, "sales.items").expect_err("mismatch");
        assert!(matches!(err, CatalogError::SchemaMismatch(_)));
        assert!(err.to_string().contains("\"price\""), "{err}");
    }

    #[test]
    fn missing_extra_and_nullability() {
        let table = schema(vec![Field::new("a", DataType::Int64, false)]);
        let extra = schema(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("z", DataType::Int64, true),
        ]);
        assert!(
            check_compatible(&table, &extra, "t")
                .expect_err("extra")
                .to_string()
                .contains("\"z\"")
        );
        let nullable = schema(vec![Field::new("a", DataType::Int64, true)]);
        assert!(check_compatible(&table, &nullable, "t").is_err());
        let ts = schema(vec![Field::new(
            "a",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        )]);
        assert!(check_compatible(&table, &ts, "t").is_err());
    }

    #[test]
    fn dictionary_index_width_does_not_matter() {
        let a = schema(vec![Field::new(
            "c",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            true,
        )]);
        let b = schema(vec![Field::new(
            "c",
            DataType::Dictionary(Box::new(DataType::Int8), Box::new(DataType::Utf8)),
            true,
        )]);
        assert!(check_compatible(&a, &b, "t").is_ok());
    }

    #[test]
    fn schema_bytes_round_trip_and_garbage_is_refused() {
        let s = schema(vec![Field::new("a", DataType::Int64, true)]);
        let bytes = encode_for_test(&s);
        assert_eq!(decode(&bytes).expect("decodes"), s);
        assert!(decode(b"not a schema at all").is_err());
        assert!(decode(b"").is_err());
    }

    fn encode_for_test(schema: &Schema) -> Vec<u8> {
        let generator = arrow_ipc::writer::IpcDataGenerator::default();
        let mut tracker = arrow_ipc::writer::DictionaryTracker::new(false);
        generator
            .schema_to_bytes_with_dictionary_tracker(schema, &mut tracker, &Default::default())
            .ipc_message
    }
}
