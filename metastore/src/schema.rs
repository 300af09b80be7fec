//! Arrow schemas as the catalog sees them: decoded from IPC bytes and compared field by field.
//!
//! The metastore never reads Parquet, but it does own the table's schema: the first write (or
//! table creation) fixes it, and every later write must match it, or change it only as the
//! table's schema policy allows ([`evolve`]). A refusal names the column.

use crate::error::{CatalogError, CatalogResult};
use crate::limits;
use crate::model::{PartitionKeyDef, SchemaPolicy};
use crate::names::quote_for_message;
use arrow_schema::{DataType, Field, Schema};
use batchstore_proto::wire;
use std::collections::HashMap;

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
    limits::check_schema_bytes(bytes)?;
    let schema = wire::decode_schema(bytes).map_err(|e| {
        CatalogError::InvalidArgument(format!(
            "the Arrow schema sent with the request could not be decoded: {e}"
        ))
    })?;
    limits::check_schema(&schema)?;
    Ok(schema)
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
    let mut seen = std::collections::HashSet::with_capacity(schema.fields().len());
    for field in schema.fields() {
        if !seen.insert(field.name()) {
            return Err(CatalogError::InvalidArgument(format!(
                "column {} appears twice in the schema",
                quote_for_message(field.name())
            )));
        }
        if keys.iter().any(|k| &k.name == field.name()) {
            return Err(CatalogError::InvalidArgument(format!(
                "column {} has the name of a partition key; partition keys are not stored as \
                 columns (reads add them), so drop or rename the column",
                quote_for_message(field.name())
            )));
        }
    }
    Ok(())
}

/// Checks that a write's schema matches the table's under the `strict` policy (see
/// [`evolve`]).
///
/// # Errors
/// `SchemaMismatch` naming the first column that differs and how.
pub fn check_compatible(table: &Schema, write: &Schema, table_name: &str) -> CatalogResult<()> {
    evolve(table, write, SchemaPolicy::Strict, table_name).map(|_| ())
}

/// A table's schema after a write changed it, and what changed, in words.
#[derive(Debug, Clone)]
pub struct Evolution {
    pub schema: Schema,
    pub changes: Vec<String>,
}

/// Checks a write's schema against the table's under the table's policy, matching columns by
/// name. Returns the table's new schema when the write changes it, `None` when it fits as is.
///
/// Both policies allow the same columns in any order with equal types, a non-null column
/// written into a nullable one, and a dictionary of the same values with another index (the
/// table takes the wider index). `additive` also allows a write to add a column (the table
/// takes it as nullable), to leave out a nullable column (read as nulls), to widen a type
/// (int8→int16→int32→int64, likewise unsigned, an unsigned into a wider signed, float16→
/// float32→float64), to be narrower than the table (read widened), and to make a column
/// nullable. Never a drop of a non-null column, a rename, or a narrowing of the table.
///
/// # Errors
/// `SchemaMismatch` naming the first column that differs, how, and which policy would allow
/// it when one would.
pub fn evolve(
    table: &Schema,
    write: &Schema,
    policy: SchemaPolicy,
    table_name: &str,
) -> CatalogResult<Option<Evolution>> {
    let additive = policy == SchemaPolicy::Additive;
    let allow = |what: &str| {
        if additive {
            String::new()
        } else {
            format!(" (the additive schema policy would allow {what})")
        }
    };
    let mut fields: Vec<Field> = Vec::with_capacity(table.fields().len());
    let mut changes = Vec::new();
    for field in table.fields() {
        let name = quote_for_message(field.name());
        let Ok(written) = write.field_with_name(field.name()) else {
            if additive && field.is_nullable() {
                fields.push(field.as_ref().clone());
                continue;
            }
            let why = if field.is_nullable() {
                allow("leaving out this nullable column")
            } else {
                " (a write may leave out only nullable columns)".to_owned()
            };
            return Err(mismatch(
                table_name,
                field.name(),
                format!(
                    "the table has column {name} ({}), but this write does not{why}",
                    describe(field)
                ),
            ));
        };
        let mut merged = field.as_ref().clone();
        if types_match(field.data_type(), written.data_type()) {
            if let Some(wider) = wider_index(field.data_type(), written.data_type()) {
                changes.push(format!("widened the dictionary index of {name} to {wider}"));
                merged = merged.with_data_type(wider);
            }
        } else if widens(field.data_type(), written.data_type()) {
            if !additive {
                return Err(mismatch(
                    table_name,
                    field.name(),
                    format!(
                        "column {name} is {} in the table, but {} in this write{}",
                        describe(field),
                        describe(written),
                        allow("widening it")
                    ),
                ));
            }
            changes.push(format!(
                "widened {name} from {} to {}",
                field.data_type(),
                written.data_type()
            ));
            merged = merged.with_data_type(written.data_type().clone());
        } else if !(additive && widens(written.data_type(), field.data_type())) {
            let narrower = widens(written.data_type(), field.data_type());
            return Err(mismatch(
                table_name,
                field.name(),
                format!(
                    "column {name} is {} in the table, but {} in this write{}",
                    describe(field),
                    describe(written),
                    if narrower {
                        allow("writing a narrower type, read widened")
                    } else {
                        " (no schema policy changes a column's type other than by widening it)"
                            .to_owned()
                    }
                ),
            ));
        }
        if written.is_nullable() && !field.is_nullable() {
            if !additive {
                return Err(mismatch(
                    table_name,
                    field.name(),
                    format!(
                        "column {name} is not nullable in the table, but this write allows nulls \
                         in it{}",
                        allow("making it nullable")
                    ),
                ));
            }
            changes.push(format!("made {name} nullable"));
            merged = merged.with_nullable(true);
        }
        fields.push(merged);
    }
    for extra in write.fields() {
        if table.field_with_name(extra.name()).is_ok() {
            continue;
        }
        let name = quote_for_message(extra.name());
        if !additive {
            return Err(mismatch(
                table_name,
                extra.name(),
                format!(
                    "this write has column {name} ({}), which the table does not have{}",
                    describe(extra),
                    allow("adding it, as a nullable column")
                ),
            ));
        }
        changes.push(format!("added column {name} ({})", extra.data_type()));
        fields.push(extra.as_ref().clone().with_nullable(true));
    }
    Ok((!changes.is_empty()).then(|| Evolution {
        schema: Schema::new_with_metadata(fields, table.metadata().clone()),
        changes,
    }))
}

/// True when every value of `from` is a value of `to` (and they differ): a wider integer of
/// the same signedness, an unsigned integer into a wider signed one, a wider float.
fn widens(from: &DataType, to: &DataType) -> bool {
    // (family, width): 0 signed, 1 unsigned, 2 float.
    let rank = |t: &DataType| -> Option<(u8, u8)> {
        Some(match t {
            DataType::Int8 => (0, 1),
            DataType::Int16 => (0, 2),
            DataType::Int32 => (0, 3),
            DataType::Int64 => (0, 4),
            DataType::UInt8 => (1, 1),
            DataType::UInt16 => (1, 2),
            DataType::UInt32 => (1, 3),
            DataType::UInt64 => (1, 4),
            DataType::Float16 => (2, 1),
            DataType::Float32 => (2, 2),
            DataType::Float64 => (2, 3),
            _ => return None,
        })
    };
    match (rank(from), rank(to)) {
        (Some((a, x)), Some((b, y))) if a == b => y > x,
        (Some((1, x)), Some((0, y))) => y > x,
        _ => false,
    }
}

/// Checks that a file's own schema (from its footer) is the schema its write declared: the
/// same columns by name, types equal up to dictionary index width, and no nulls allowed in
/// the file where the write declares a column not null.
///
/// # Errors
/// `FailedPrecondition` naming the file and the first column that differs.
pub fn check_file(declared: &Schema, file: &Schema, name: &str) -> CatalogResult<()> {
    let differs = |column: &str, how: String| {
        CatalogError::FailedPrecondition(format!(
            "file {name} does not hold what the commit declares: column {} {how}; commit the \
             schema of the data that was written",
            quote_for_message(column)
        ))
    };
    let in_file: HashMap<&str, &Field> = file
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.as_ref()))
        .collect();
    for field in declared.fields() {
        let Some(found) = in_file.get(field.name().as_str()) else {
            return Err(differs(field.name(), "is not in the file".into()));
        };
        if !types_match(field.data_type(), found.data_type()) {
            return Err(differs(
                field.name(),
                format!(
                    "is {} in the file but declared {}",
                    found.data_type(),
                    field.data_type()
                ),
            ));
        }
        if found.is_nullable() && !field.is_nullable() {
            return Err(differs(
                field.name(),
                "allows nulls in the file but is declared not null".into(),
            ));
        }
    }
    if declared.fields().len() != file.fields().len()
        && let Some(extra) = file
            .fields()
            .iter()
            .find(|f| declared.field_with_name(f.name()).is_err())
    {
        return Err(differs(
            extra.name(),
            "is in the file but not declared".into(),
        ));
    }
    Ok(())
}

/// Two writes' schemas as one table schema: the same columns with the same types (up to
/// dictionary index width), nullable where either is, each dictionary with the wider index;
/// `first`'s column order and metadata.
///
/// # Errors
/// `SchemaMismatch` naming the first column that differs otherwise.
pub fn merge(first: &Schema, other: &Schema, table_name: &str) -> CatalogResult<Schema> {
    let relaxed = Schema::new_with_metadata(
        first
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
        first.metadata().clone(),
    );
    check_compatible(&relaxed, other, table_name)?;
    let fields: Vec<Field> = first
        .fields()
        .iter()
        .map(|field| {
            let mut merged = field.as_ref().clone();
            if let Ok(o) = other.field_with_name(field.name()) {
                merged = merged.with_nullable(field.is_nullable() || o.is_nullable());
                if let Some(wider) = wider_index(field.data_type(), o.data_type()) {
                    merged = merged.with_data_type(wider);
                }
            }
            merged
        })
        .collect();
    Ok(Schema::new_with_metadata(fields, first.metadata().clone()))
}

/// `table`'s dictionary type with `write`'s index, when both are dictionaries of the same
/// values and `write`'s index holds more values.
fn wider_index(table: &DataType, write: &DataType) -> Option<DataType> {
    match (table, write) {
        (DataType::Dictionary(key, value), DataType::Dictionary(write_key, write_value))
            if value == write_value && index_capacity(write_key) > index_capacity(key) =>
        {
            Some(DataType::Dictionary(write_key.clone(), value.clone()))
        }
        _ => None,
    }
}

/// How many values a dictionary index type can address, as an order.
fn index_capacity(key: &DataType) -> u8 {
    match key {
        DataType::Int8 => 1,
        DataType::UInt8 => 2,
        DataType::Int16 => 3,
        DataType::UInt16 => 4,
        DataType::Int32 => 5,
        DataType::UInt32 => 6,
        _ => 7,
    }
}

/// Encodes a schema in the wire framing.
pub fn encode(schema: &Schema) -> Vec<u8> {
    wire::encode_schema(schema)
}

fn mismatch(table_name: &str, column: &str, detail: String) -> CatalogError {
    CatalogError::SchemaMismatch(format!(
        "schema mismatch in {table_name} on column {}: {detail}; \
         write data with the table's schema, or write to a new table",
        quote_for_message(column)
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

/// Equal types, up to the physical layout of the same values: dictionary index width, string
/// and binary offset width or views (R writes `Utf8`, pandas `LargeUtf8`), list offset width.
fn types_match(table: &DataType, write: &DataType) -> bool {
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let bytes = |t: &DataType| {
        matches!(
            t,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        )
    };
    if (text(table) && text(write)) || (bytes(table) && bytes(write)) {
        return true;
    }
    match (table, write) {
        (DataType::Dictionary(_, a), DataType::Dictionary(_, b)) => types_match(a, b),
        (
            DataType::List(a) | DataType::LargeList(a),
            DataType::List(b) | DataType::LargeList(b),
        ) => types_match(a.data_type(), b.data_type()),
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
    fn string_offsets_do_not_matter() {
        let table = schema(vec![Field::new("s", DataType::Utf8, true)]);
        let write = schema(vec![Field::new("s", DataType::LargeUtf8, true)]);
        check_compatible(&table, &write, "t").expect("utf8 and large utf8 hold the same values");
        let other = schema(vec![Field::new("s", DataType::Binary, true)]);
        assert!(check_compatible(&table, &other, "t").is_err());
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
